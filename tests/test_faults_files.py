"""File faults: every file problem is one ``error:`` line naming the path (exit 3), corrupt and
truncated files of every kind a run writes, read-only and full disks (simulated), failed loads."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autobalance.cli.main import EXIT_FILE, main
from autobalance.experiments import io as run_io
from autobalance.experiments import runner, train
from autobalance.experiments.report import build_report, load_run
from autobalance.experiments.runs import RunFileError
from autobalance.experiments.sweep import RunSpec, inspect_run, run_sweep
from autobalance.problems.cache import cached_arrays
from fault_tools import TINY_FLAGS, assert_same_results, snapshot, tiny


@pytest.fixture(autouse=True)
def _no_solution_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No solution.png (a second of matplotlib per run; its writing is tested elsewhere)."""
    monkeypatch.setattr(runner.TrainingRun, "write_plot", lambda self: None)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 12-step run (checkpoints every 4 steps), to copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner.TrainingRun, "write_plot", lambda self: None)
        train(tiny(steps=12, checkpoint_every=4), out, progress=False)
    return out


def _copy(run_dir: Path, to: Path) -> Path:
    to.mkdir(parents=True)
    for name, data in snapshot(run_dir).items():
        (to / name).write_bytes(data)
    return to


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# ------------------------------------------------------------------------ damaged checkpoints
def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _zipped_garbage(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x05garbage")
    return buf.getvalue()


def _saved(obj: Any) -> Callable[[bytes], bytes]:
    def write(_: bytes) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    return write


DAMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "empty": (lambda data: b"", "is empty"),
    "truncated": (_truncated, "is not a readable checkpoint (truncated or corrupted"),
    "one byte": (lambda data: data[:1], "is not a readable checkpoint"),
    "random": (lambda data: os.urandom(4096), "is not a readable checkpoint"),
    "text": (lambda data: b'{"step": 3}\n', "is not a readable checkpoint"),
    "bad zip": (_zipped_garbage, "is not a readable checkpoint"),
    "a list": (_saved([1, 2, 3]), "does not hold a checkpoint"),
    "no model": (_saved({"format": 1, "step": 4}), "is not a run checkpoint (no config, model"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_resume_from_a_damaged_checkpoint_is_an_error_naming_it(
    damage: str, finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(finished, tmp_path / "run")
    corrupt, message = DAMAGES[damage]
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(corrupt(ckpt.read_bytes()))
    before = snapshot(run)
    code, err = _cli(capsys, "run", "--out", str(run), "--resume", "--steps", "20")
    assert code == EXIT_FILE and err.startswith("error: cannot resume: ")
    assert str(ckpt) in err and message in err and err.count("\n") == 1
    assert snapshot(run) == before
    with pytest.raises(RunFileError, match="checkpoint"):
        train(tiny(steps=20, checkpoint_every=4), run, progress=False, resume=True)


def test_a_checkpoint_of_another_format_or_with_bad_counts_is_named(
    finished: Path, tmp_path: Path
) -> None:
    run = _copy(finished, tmp_path / "run")
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save({**ckpt, "format": 99}, run / "checkpoint.pt")
    with pytest.raises(RunFileError, match="checkpoint format 99; this version reads format 1"):
        runner.load_checkpoint(run / "checkpoint.pt")
    torch.save({**ckpt, "step": -3}, run / "checkpoint.pt")
    with pytest.raises(RunFileError, match="invalid step counts"):
        runner.load_checkpoint(run / "checkpoint.pt")


def test_a_checkpoint_whose_states_do_not_fit_is_a_clear_error_and_changes_nothing(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed load: the model state of another shape (an edited or mixed-up file)."""
    run = _copy(finished, tmp_path / "run")
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    name = next(iter(ckpt["model"]))
    ckpt["model"][name] = torch.zeros(3, 3)
    torch.save(ckpt, run / "checkpoint.pt")
    before = snapshot(run)
    code, err = _cli(capsys, "run", "--out", str(run), "--resume", "--steps", "20")
    assert code == EXIT_FILE and "do not fit this run's model and optimizer" in err
    assert str(run / "checkpoint.pt") in err and name in err
    assert snapshot(run) == before  # metrics.json kept: the finished run is still whole
    assert load_run(run).status == "ok"


def test_resume_where_there_is_no_run_names_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    code, err = _cli(capsys, "run", "--out", str(missing), "--resume")
    assert code == EXIT_FILE and f"run directory '{missing}' does not exist" in err
    (tmp_path / "empty").mkdir()
    code, err = _cli(capsys, "run", "--out", str(tmp_path / "empty"), "--resume")
    assert code == EXIT_FILE and f"{tmp_path / 'empty' / 'checkpoint.pt'} does not exist" in err
    (tmp_path / "file").write_text("x")
    code, err = _cli(capsys, "run", "--out", str(tmp_path / "file"), "--resume")
    assert code == EXIT_FILE and "does not exist" in err


# ------------------------------------------------------------------- unwritable output paths
def test_an_output_path_that_is_a_file_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    for out, what in (("file", "exists and is not a directory"), ("file/sub", "Not a directory")):
        code, err = _cli(capsys, "run", "helmholtz", *TINY_FLAGS, "--out", str(tmp_path / out))
        assert code == EXIT_FILE and err == f"error: {tmp_path / out}: {what}\n"
    assert (tmp_path / "file").read_text() == "x"


def _failing(errno_: int, after: int, calls: list[Path]) -> Callable[..., Path]:
    """``atomic_write_bytes`` that fails with ``errno_`` from its ``after+1``-th call on."""
    real = run_io.atomic_write_bytes

    def write(path: Any, data: bytes) -> Path:
        calls.append(Path(path))
        if len(calls) > after:
            raise OSError(errno_, os.strerror(errno_), str(path))
        return real(path, data)

    return write


@pytest.mark.parametrize("errno_", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_a_full_or_read_only_disk_mid_run_is_an_error_and_the_run_resumes(
    errno_: int, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up at the checkpoint of step 8: the checkpoint of step 4 stays and resumes."""
    out, straight = tmp_path / "run", tmp_path / "straight"
    calls: list[Path] = []
    # config.json, then per checkpoint history.csv, eval.csv, checkpoint.pt: steps 0 and 4 pass
    monkeypatch.setattr(run_io, "atomic_write_bytes", _failing(errno_, 7, calls))
    argv = ["run", "helmholtz", "--method", "adam", "--steps", "12", "--checkpoint-every", "4"]
    argv += ["--eval-every", "10", "--log-every", "5"]
    code, err = _cli(capsys, *argv, *TINY_FLAGS, "--out", str(out))
    assert code == EXIT_FILE and err == f"error: {calls[-1]}: {os.strerror(errno_)}\n"
    assert runner.load_checkpoint(out / "checkpoint.pt")["step"] == 4
    assert not (out / "metrics.json").exists() and not list(out.glob(".*.tmp"))
    monkeypatch.undo()  # space freed
    monkeypatch.setattr(runner.TrainingRun, "write_plot", lambda self: None)
    assert main(["run", "--out", str(out), "--resume", "--no-progress"]) == 0
    train(tiny(method="adam", steps=12, checkpoint_every=4, lr=1e-3), straight, progress=False)
    assert_same_results(out, straight)


def test_a_read_only_output_directory_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))

    monkeypatch.setattr(run_io.tempfile, "mkstemp", read_only)
    out = tmp_path / "run"
    code, err = _cli(capsys, "run", "helmholtz", *TINY_FLAGS, "--out", str(out))
    assert code == EXIT_FILE and err == f"error: {out}: Read-only file system\n"
    assert list(out.iterdir()) == []


def test_the_report_of_an_unwritable_directory_is_an_error_naming_the_file(
    finished: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_io, "atomic_write_bytes", _failing(errno.ENOSPC, 0, []))
    code, err = _cli(capsys, "report", str(finished), "--out", str(tmp_path), "--no-figures")
    assert code == EXIT_FILE and err.startswith(f"error: {tmp_path}")
    assert err.endswith("No space left on device\n")


# ------------------------------------------------------------- damaged files of a finished run
SPECS = [RunSpec(tiny(steps=12, checkpoint_every=4, seed=seed)) for seed in (0, 1)]


@pytest.fixture(scope="module")
def reference_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two finished tiny runs of a sweep, to copy and damage."""
    out = tmp_path_factory.mktemp("reference_sweep")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner.TrainingRun, "write_plot", lambda self: None)
        run_sweep(SPECS, out, stream=None)
    return out


def _damaged(data: bytes, damage: str) -> bytes:
    return {"empty": b"", "cut": data[: len(data) // 2], "random": os.urandom(300)}[damage]


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        *((n, d) for n in ("metrics.json", "config.json") for d in ("empty", "cut", "random")),
        ("history.csv", "cut"),
        ("eval.csv", "random"),
    ],
)
def test_a_damaged_result_file_is_flagged_by_the_report_and_repaired_by_the_sweep(
    name: str, damage: str, reference_sweep: Path, tmp_path: Path
) -> None:
    """Damage one file of a finished sweep run: the report flags the run (or notes the figure it
    cannot draw) and never counts it as ok; the sweep, run again, resumes it from its checkpoint,
    which rewrites its files as an uninterrupted run wrote them."""
    spec = SPECS[0]
    run = _copy(reference_sweep / spec.name, tmp_path / spec.name)
    _copy(reference_sweep / SPECS[1].name, tmp_path / SPECS[1].name)
    (run / name).write_bytes(_damaged((run / name).read_bytes(), damage))
    assert inspect_run(run).kind == "resumable" and name in inspect_run(run).reason
    tables = name.endswith(".csv")
    if not tables:
        record = load_run(run)
        assert record.status == "incomplete" and name in record.reason
    # the report's tables come from config.json and metrics.json (a figure it cannot draw from a
    # damaged table is noted, not raised: tests/test_report.py)
    report = build_report(tmp_path, tmp_path / "report", figures=False).read_text()
    if not tables:  # listed as incomplete, with the reason
        (incomplete,) = [line for line in report.splitlines() if spec.name in line]
        assert name in incomplete
    result = run_sweep(SPECS, tmp_path, stream=None)
    assert result.executed == [spec.name] and result.skipped == [SPECS[1].name]
    assert_same_results(reference_sweep / spec.name, run)
    assert (run / "config.json").read_bytes() == (
        reference_sweep / spec.name / "config.json"
    ).read_bytes()


def test_a_sweep_run_with_a_damaged_checkpoint_and_no_metrics_starts_again(
    reference_sweep: Path, tmp_path: Path
) -> None:
    spec = SPECS[0]
    run = _copy(reference_sweep / spec.name, tmp_path / spec.name)
    (run / "metrics.json").unlink()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 torn")
    assert inspect_run(run).kind == "broken"
    result = run_sweep([spec], tmp_path, stream=None)
    assert result.executed == [spec.name] and not result.errors
    assert_same_results(reference_sweep / spec.name, run)


# -------------------------------------------------------------------------- reference cache
def test_a_cache_file_corrupted_behind_a_matching_checksum_is_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOBALANCE_CACHE_DIR", str(tmp_path))
    calls: list[int] = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"u": np.arange(4.0)}

    first = cached_arrays("toy", {"n": 4}, compute)
    (data,) = tmp_path.glob("toy-*.npz")
    garbage = b"PK\x03\x04" + os.urandom(64)
    data.write_bytes(garbage)
    data.with_suffix(".sha256").write_text(hashlib.sha256(garbage).hexdigest() + "\n")
    with pytest.warns(RuntimeWarning, match=f"reference cache file {data} is unreadable"):
        again = cached_arrays("toy", {"n": 4}, compute)
    assert np.array_equal(again["u"], first["u"]) and len(calls) == 2
    assert np.array_equal(cached_arrays("toy", {"n": 4}, compute)["u"], first["u"])
    assert len(calls) == 2  # the rewritten file is read again


def test_the_exit_codes_are_documented_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for code in ("0 done", "1 a run diverged", "2 usage or configuration error", "3 file error"):
        assert code in text
    assert "130 interrupted" in text


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda ckpt: ckpt.update(format=99), "format 99"),
        (
            lambda ckpt: ckpt["model"].update({next(iter(ckpt["model"])): torch.zeros(3, 3)}),
            "do not fit",
        ),
    ],
    ids=["another format", "other shapes"],
)
def test_a_sweep_run_whose_checkpoint_cannot_be_used_starts_again_and_says_why(
    reference_sweep: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], None],
    named: str,
) -> None:
    """Readable by torch but not resumable (a format of another version, states that do not
    fit): reported, run from step 0 (never an error on every restart), results exact."""
    spec = SPECS[0]
    run = _copy(reference_sweep / spec.name, tmp_path / spec.name)
    (run / "metrics.json").unlink()
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, run / "checkpoint.pt")
    result = run_sweep([spec], tmp_path, stream=sys.stderr)
    err = capsys.readouterr().err
    assert result.executed == [spec.name] and not result.errors, err
    assert named in err and ("running it again" in err or "run again from step 0" in err)
    log = [json.loads(line) for line in (run / "attempts.jsonl").open()]
    assert log[-1]["resumed_from"] is None and log[-1]["reason"]
    assert_same_results(reference_sweep / spec.name, run)
