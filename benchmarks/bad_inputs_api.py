"""API cases of ``bad_inputs_probe.py``: the optimizer, every method family's
``load_state_dict``, :class:`RunConfig`, :func:`train`, the report and the sweep, called in the
probe's process.

Each case is a function of the case's directory.  An ``"error"`` case must raise an
:class:`~autobalance.errors.AutoBalanceError` (or an ``OSError`` naming a path); a ``"handled"``
case must return ``None``.  A returned string says what went silently wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

ApiCase = tuple[str, Callable[[Path], Any], str]


# ------------------------------------------------------------------------------- optimizer
def _param(n: int = 2) -> Any:
    import torch

    return torch.nn.Parameter(torch.linspace(0.5, 1.5, n))


def _losses(p: Any) -> dict[str, Any]:
    """Two losses whose gradients agree in sign (per-loss Adam updates do not cancel)."""
    return {"residual": (p**2).sum(), "boundary": (p + 3).pow(2).sum()}


def _autobalance(**kwargs: Any) -> Callable[[Path], Any]:
    def case(w: Path) -> Any:
        from autobalance import AutoBalance

        return AutoBalance([_param()], **kwargs)

    return case


def _step_with(make_losses: Callable[[Any], Any]) -> Callable[[Path], Any]:
    def case(w: Path) -> Any:
        from autobalance import AutoBalance

        p = _param()
        opt = AutoBalance([p], base="adam", lr=0.1)
        return opt.step(make_losses(p))

    return case


def _names_change(w: Path) -> Any:
    from autobalance import AutoBalance

    p = _param()
    opt = AutoBalance([p], base="adam", lr=0.1)
    opt.step(_losses(p))
    return opt.step({"residual": (p**2).sum(), "initial": p.sum()})


def _nonfinite(w: Path) -> Any:
    import torch

    from autobalance import AutoBalance

    p = _param()
    opt = AutoBalance([p], base="adam", lr=0.1)
    before = p.detach().clone()
    try:
        opt.step({"residual": (p**2).sum() * torch.tensor(math.nan), "boundary": p.sum()})
    except Exception:
        if not torch.equal(before, p.detach()):
            return "the parameters moved on a NaN loss"
        raise
    return "a NaN loss was stepped without a word"


def _leaves(state: Any) -> str:
    import torch

    def walk(x: Any) -> list[Any]:
        if isinstance(x, torch.Tensor):
            return [str(x.dtype), list(x.shape), x.tolist()]
        if isinstance(x, dict):
            return [v for k in sorted(x, key=str) for v in [str(k), *walk(x[k])]]
        if isinstance(x, (list, tuple)):
            return [v for item in x for v in walk(item)]
        return [x]

    return json.dumps(walk(state), default=str)


def _method(name: str, n: int) -> tuple[Any, Any]:
    from autobalance import methods

    p = _param(n)
    method = methods.create(name, [p], lr=0.1, **methods.spec(name).example_params)
    for _ in range(2):
        method.step(_losses(p))
    return method, p


def _load_refused(name: str, damage: Callable[[dict[str, Any]], Any]) -> Callable[[Path], Any]:
    """Load a damaged state into a trained method: refused, state unchanged, still steps."""

    def case(w: Path) -> Any:
        import torch

        target, p = _method(name, 3)
        other = damage(target.state_dict())
        before = _leaves(target.state_dict())
        try:
            target.load_state_dict(other)
        except Exception:
            if _leaves(target.state_dict()) != before:
                return "the failed load changed the method's state"
            moved = p.detach().clone()
            target.step(_losses(p))
            if torch.equal(moved, p.detach()):
                return "the method no longer moves the parameters after the failed load"
            raise
        return "loaded a state that does not fit"

    return case


def _other_shapes(name: str) -> Callable[[dict[str, Any]], Any]:
    def damage(state: dict[str, Any]) -> Any:
        return _method(name, 2)[0].state_dict()

    return damage


def _as_float64(state: dict[str, Any]) -> Any:
    import torch

    def cast(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.numel() > 1:
            return x.double()
        if isinstance(x, dict):
            return {k: cast(v) for k, v in x.items()}
        if isinstance(x, list):
            return [cast(v) for v in x]
        return x

    return cast(state)


def _other_loss_names(name: str) -> Callable[[Path], Any]:
    """A state of other loss names replaces the names (as a first step fixes them): the next
    step with the old names is a clear error, with the state's names it steps."""

    def case(w: Path) -> Any:
        from autobalance import methods
        from autobalance.errors import LossNameError

        target, p = _method(name, 3)
        q = _param(3)
        source = methods.create(name, [q], lr=0.1)
        for _ in range(2):
            source.step({"pde": (q**2).sum(), "data": (q + 3).pow(2).sum()})
        target.load_state_dict(source.state_dict())
        try:
            target.step(_losses(p))
        except LossNameError as exc:
            if "pde" not in str(exc):
                return f"the error does not name the loaded names: {exc}"
        else:
            return "stepped with names the loaded state does not have"
        target.step({"pde": (p**2).sum(), "data": (p + 3).pow(2).sum()})
        return None

    return case


def _float64_state(name: str) -> Callable[[Path], Any]:
    """A state saved in float64 loads cast to the parameters' dtype (as torch.optim does) and
    steps bit-identically to the float32 state it came from."""

    def case(w: Path) -> Any:
        import torch

        a, pa = _method(name, 3)
        b, pb = _method(name, 3)
        with torch.no_grad():
            pb.copy_(pa)
        b.load_state_dict(_as_float64(a.state_dict()))
        wrong = [
            t.dtype
            for t in _tensors(b.state_dict())
            if t.is_floating_point() and t.numel() > 1 and t.dtype != torch.float32
        ]
        if wrong:
            return f"loaded states kept dtypes {sorted(set(map(str, wrong)))}"
        a.step(_losses(pa))
        b.step(_losses(pb))
        return None if torch.equal(pa, pb) else "the float64 state steps differently"

    return case


def _tensors(state: Any) -> list[Any]:
    import torch

    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in _tensors(v)]
    return []


def _without_state(state: dict[str, Any]) -> Any:
    """The per-parameter states removed (torch's part, wherever it sits)."""
    inner = state.get("optimizer", state)
    cut = {k: v for k, v in inner.items() if k != "state"}
    return {**state, "optimizer": cut} if "optimizer" in state else cut


def _round_trip(name: str) -> Callable[[Path], Any]:
    """A fitting state loads, and the twin's next step equals the original's bit for bit."""

    def case(w: Path) -> Any:
        import torch

        a, pa = _method(name, 3)
        b, pb = _method(name, 3)
        with torch.no_grad():
            pb.copy_(pa)
        b.load_state_dict(a.state_dict())
        a.step(_losses(pa))
        b.step(_losses(pb))
        return None if torch.equal(pa, pb) else "the loaded state steps differently"

    return case


#: One or two methods of every family of the catalog.
FAMILY_METHODS = ("adam", "adamw", "upgrad", "pcgrad", "dwa", "relobralo", "fixed", "lr-annealing",
                  "autobalance", "autobalance-consensus", "multiadam", "mtadam")  # fmt: skip


# --------------------------------------------------------------------------- configurations
def _tiny(**kw: Any) -> Any:
    from autobalance.experiments import RunConfig

    fields: dict[str, Any] = {
        "problem_params": {"a2": 1, "n_residual": 32, "n_boundary": 16, "n_eval": 11},
        "net_params": {"width": 8, "depth": 1},
        "method": "adam",
        "steps": 5,
        "device": "cpu",
    }
    return RunConfig(**{**fields, **kw})


def _train(config: Any, out: Path, **kw: Any) -> Any:
    from autobalance.experiments import train

    return train(config, out, progress=False, **kw)


def _config(**kw: Any) -> Callable[[Path], Any]:
    return lambda w: _tiny(**kw)


def _from_dict(data: dict[str, Any]) -> Callable[[Path], Any]:
    def case(w: Path) -> Any:
        from autobalance.experiments import RunConfig

        return RunConfig.from_dict(data)

    return case


def _train_dict(w: Path) -> Any:
    return _train({"problem": "helmholtz", "steps": 3}, w / "r")  # type: ignore[arg-type]


def _train_unknown(field: str, value: Any) -> Callable[[Path], Any]:
    return lambda w: _train(_tiny(**{field: value}), w / "r")


def _resume_fewer_steps(w: Path) -> Any:
    _train(_tiny(steps=6), w / "r")
    return _train(_tiny(steps=3), w / "r", resume=True)


def _resume_more_steps(w: Path) -> Any:
    _train(_tiny(steps=4), w / "r")
    metrics = _train(_tiny(steps=8), w / "r", resume=True)
    return None if metrics["steps"] == 8 and metrics["status"] == "ok" else f"got {metrics}"


def _resume_and_overwrite(w: Path) -> Any:
    return _train(_tiny(), w / "r", resume=True, overwrite=True)


def _same_seed_twice(w: Path) -> Any:
    a = _train(_tiny(steps=6), w / "a")
    b = _train(_tiny(steps=6), w / "b")
    same = all(a[k] == b[k] for k in ("rel_l2", "final_losses", "config_sha256"))
    same = same and (w / "a" / "history.csv").read_bytes() == (w / "b" / "history.csv").read_bytes()
    return None if same else "two runs of one seed differ"


def _report(path: str, setup: Callable[[Path], None] | None = None) -> Callable[[Path], Any]:
    def case(w: Path) -> Any:
        from autobalance.experiments.report import build_report

        if setup is not None:
            setup(w)
        return build_report(w / path, w / "report", figures=False)

    return case


def _make_dir(name: str) -> Callable[[Path], None]:
    return lambda w: (w / name).mkdir()


def _sweep_no_runs(w: Path) -> Any:
    from autobalance.experiments.sweep import run_sweep

    result = run_sweep([], w / "s", stream=None)
    return None if not result.specs and not result.errors else f"got {result}"


def _load_run_of_garbage(w: Path) -> Any:
    from autobalance.experiments.runs import load_run

    (w / "r").mkdir()
    (w / "r" / "config.json").write_text("{")
    (w / "r" / "metrics.json").write_text('{"status": "ok", "rel_l2": "abc"}')
    record = load_run(w / "r")
    return None if record.status == "incomplete" and record.reason else f"got {record}"


def cases() -> list[ApiCase]:
    """``(name, function, expect)`` of every API case of this module."""
    import torch

    out: list[ApiCase] = [
        ("AutoBalance(lr=-1)", _autobalance(lr=-1.0), "error"),
        ("AutoBalance(lr=nan)", _autobalance(lr=math.nan), "error"),
        ("AutoBalance(betas=(1.2, 0.9))", _autobalance(base="adam", betas=(1.2, 0.9)), "error"),
        ("AutoBalance(eps=-1)", _autobalance(base="adam", eps=-1.0), "error"),
        ("AutoBalance(weight_decay=-1)", _autobalance(weight_decay=-1.0), "error"),
        ("AutoBalance(base='nosuch')", _autobalance(base="nosuch"), "error"),
        ("AutoBalance(base=int)", _autobalance(base=int), "error"),
        ("AutoBalance(combine='nosuch')", _autobalance(combine="nosuch"), "error"),
        ("AutoBalance(nonfinite='ignore')", _autobalance(nonfinite="ignore"), "error"),
        ("AutoBalance(groups with an empty group)", _autobalance(groups={"g": []}), "error"),
        ("AutoBalance(unknown keyword)", _autobalance(momentumm=0.9), "error"),
        ("AutoBalance of no parameters", lambda w: __import__("autobalance").AutoBalance([]),
         "error"),
        ("step of a list", _step_with(lambda p: [(p**2).sum(), p.sum()]), "error"),
        ("step of an empty mapping", _step_with(lambda p: {}), "error"),
        ("step of a non-scalar loss", _step_with(lambda p: {"residual": p**2, "b": p.sum()}),
         "error"),
        ("step of a float loss", _step_with(lambda p: {"residual": 1.0, "b": p.sum()}), "error"),
        ("step of a loss without graph",
         _step_with(lambda p: {"residual": torch.tensor(1.0), "b": p.sum()}), "error"),
        ("step of a non-string loss name", _step_with(lambda p: {1: (p**2).sum(), "b": p.sum()}),
         "error"),
        ("step with other loss names than the first", _names_change, "error"),
        ("step of a NaN loss", _nonfinite, "error"),
        ("methods.create of an unknown name",
         lambda w: __import__("autobalance").methods.create("nosuch", [_param()]), "error"),
        ("methods.create with an unknown parameter",
         lambda w: __import__("autobalance").methods.create("dwa", [_param()], temprature=2),
         "error"),
        ("methods.create('fixed') without weights",
         lambda w: __import__("autobalance").methods.create("fixed", [_param()]), "error"),
    ]  # fmt: skip
    lsd = "load_state_dict"
    out += [(f"{n}.{lsd} of other shapes", _load_refused(n, _other_shapes(n)), "error")
            for n in FAMILY_METHODS]  # fmt: skip
    out += [(f"{n}.{lsd} of float64 states", _float64_state(n), "handled")
            for n in ("adam", "upgrad", "dwa", "autobalance", "multiadam")]  # fmt: skip
    out += [(f"{n}.{lsd} of other loss names", _other_loss_names(n), "handled")
            for n in ("dwa", "autobalance", "mtadam")]  # fmt: skip
    for n in ("adam", "autobalance"):
        out.append((f"{n}.{lsd} of None", _load_refused(n, lambda s: None), "error"))
        out.append((f"{n}.{lsd} without its state", _load_refused(n, _without_state), "error"))
    out += [(f"{n}.{lsd} of a fitting state", _round_trip(n), "handled")
            for n in ("upgrad", "relobralo", "autobalance", "mtadam")]  # fmt: skip
    out += [
        ("RunConfig(steps=True)", _config(steps=True), "error"),
        ("RunConfig(steps=-1)", _config(steps=-1), "error"),
        ("RunConfig(seed=1.5)", _config(seed=1.5), "error"),
        ("RunConfig(lr=inf)", _config(lr=math.inf), "error"),
        ("RunConfig(device=3)", _config(device=3), "error"),
        ("RunConfig(problem_params='a2=1')", _config(problem_params="a2=1"), "error"),
        ("RunConfig(variants='rba')", _config(variants="rba"), "error"),
        ("RunConfig(method_params=[1])", _config(method_params=[1]), "error"),
        ("RunConfig(budget='weeks=2')", _config(budget="weeks=2"), "error"),
        ("RunConfig(eval_every=0)", _config(eval_every=0), "error"),
        ("RunConfig(lr_decay=1.5)", _config(lr_decay=1.5), "error"),
        ("RunConfig(threads=0)", _config(threads=0), "error"),
        ("RunConfig.from_dict of an unknown key", _from_dict({"stepz": 3}), "error"),
        ("RunConfig.from_dict of a list", _from_dict([1]), "error"),  # type: ignore[arg-type]
        ("train of a dict", _train_dict, "error"),
        ("train of an unknown problem", _train_unknown("problem", "nosuch"), "error"),
        ("train of an unknown method", _train_unknown("method", "nosuch"), "error"),
        ("train of an unknown net", _train_unknown("net", "nosuch"), "error"),
        ("train of an unknown variant", _train_unknown("variants", ["nosuch"]), "error"),
        ("train with an unknown problem parameter",
         _train_unknown("problem_params", {"a3": 1}), "error"),
        ("train resume with fewer steps than done", _resume_fewer_steps, "error"),
        ("train resume and overwrite", _resume_and_overwrite, "error"),
        ("train resume with more steps", _resume_more_steps, "handled"),
        ("train twice with one seed: bit-identical", _same_seed_twice, "handled"),
        ("build_report of a missing directory", _report("nope"), "error"),
        ("build_report of an empty directory", _report("e", _make_dir("e")), "error"),
        ("load_run of garbage files", _load_run_of_garbage, "handled"),
        ("run_sweep of no runs", _sweep_no_runs, "handled"),
    ]  # fmt: skip
    return out
