"""Balancing methods, created by name: ``create(name, params, **kw)``.

Families: ``single-optimizer`` (one optimizer on the summed loss), ``weighting`` (weights on the
losses), ``aggregator`` (the per-loss gradient matrix → one direction; each also usable on its
own via :func:`aggregator`), ``multi-state`` (per-loss optimizer states, e.g. AutoBalance).

Every method but the aggregators is catalogued in the list below; each aggregator method is
catalogued with its aggregator (:mod:`autobalance.methods.aggregation`).
"""

from collections.abc import Callable
from functools import partial

from autobalance.methods import aggregators
from autobalance.methods.aggregation import (
    Aggregator,
    AggregatorMethod,
    aggregator,
    aggregator_names,
    register_aggregator,
)
from autobalance.methods.base import CombineResult, GradientMatrix, PreCombineMethod
from autobalance.methods.multistate import MConFIG, MTAdam, MultiAdam
from autobalance.methods.registry import (
    METHODS,
    Balancer,
    MethodSpec,
    Preset,
    check_arguments,
    create,
    describe,
    names,
    spec,
)
from autobalance.methods.single import SummedLoss
from autobalance.methods.weighting import (
    DynamicWeightAverage,
    EqualWeights,
    FixedWeights,
    GradientNormBalancing,
    GradNorm,
    LearningRateAnnealing,
    NTKWeighting,
    RandomLossWeighting,
    ReLoBRaLo,
    SoftAdapt,
    UncertaintyWeighting,
    Weighting,
    WeightingFactory,
    WeightingMethod,
    WeightingStep,
)
from autobalance.optim.autobalance import AutoBalance
from autobalance.optim.combine import CombineRule, FlooredVotes, MomentRule, ProtectedConsensus
from autobalance.optim.layout import Combine

__all__ = [
    "METHODS",
    "Aggregator",
    "AggregatorMethod",
    "Balancer",
    "CombineResult",
    "GradientMatrix",
    "MethodSpec",
    "PreCombineMethod",
    "Weighting",
    "WeightingFactory",
    "WeightingMethod",
    "WeightingStep",
    "aggregator",
    "aggregator_names",
    "aggregators",
    "check_arguments",
    "create",
    "describe",
    "names",
    "register_aggregator",
    "spec",
]


def _per_loss_adamw(
    combine: Combine | CombineRule | MomentRule = "sum",
) -> Callable[..., AutoBalance]:
    """AutoBalance over AdamW states with the post-combine rule ``combine``: the factory of
    every AutoBalance entry of the multi-state family."""
    return partial(AutoBalance, base="adamw", combine=combine)


# name: (factory, one-line summary), by family.  ``autobalance list`` prints these summaries.
_CATALOGUE: dict[str, dict[str, tuple[Callable[..., Balancer], str]]] = {
    "single-optimizer": {
        "adam": (
            Preset("adam", SummedLoss, base="adam"),
            "Adam on the summed loss (one backward).",
        ),
        "adamw": (
            Preset("adamw", SummedLoss, base="adamw"),
            "AdamW on the summed loss (one backward).",
        ),
        "soap": (
            Preset("soap", SummedLoss, base="soap"),
            "SOAP (Vyas et al. 2025; pytorch_optimizer, extra autobalance[soap]): Adam in "
            "Shampoo's eigenbasis, on the summed loss.",
        ),
        "shampoo": (
            Preset("shampoo", SummedLoss, base="shampoo"),
            "Shampoo (Gupta et al. 2018; pytorch_optimizer, extra autobalance[soap]) on the "
            "summed loss.",
        ),
    },
    "weighting": {
        "dwa": (
            WeightingFactory(DynamicWeightAverage),
            "Dynamic Weight Average (Liu et al. 2019): w = K·softmax(loss descent rates / T).",
        ),
        "ew": (WeightingFactory(EqualWeights), "Equal weights: the base optimizer on Σ_k L_k."),
        "fixed": (WeightingFactory(FixedWeights), "Fixed user-given weights: ∇ Σ_k w_k L_k."),
        "grad-norm": (
            WeightingFactory(GradientNormBalancing),
            "Gradient-norm balancing (Wang et al. 2023): λ_k ∝ Σ_j‖∇L_j‖ / ‖∇L_k‖, EMA.",
        ),
        "gradnorm": (
            WeightingFactory(GradNorm),
            "GradNorm (Chen et al. 2018): learnable weights fit shared-layer gradient norms.",
        ),
        "lr-annealing": (
            WeightingFactory(LearningRateAnnealing),
            "Learning-rate annealing (Wang et al. 2021): λ_k from max|∇L_r| / mean|∇L_k|, EMA.",
        ),
        "ntk": (
            WeightingFactory(NTKWeighting),
            "NTK weighting (Wang et al. 2022): λ_k = Tr(K) / Tr(K_kk), mean traces over points.",
        ),
        "relobralo": (
            WeightingFactory(ReLoBRaLo),
            "ReLoBRaLo (Bischof & Kraus 2021): relative loss balancing with random lookback.",
        ),
        "rlw": (
            WeightingFactory(RandomLossWeighting),
            "Random Loss Weighting (Lin et al. 2022): w = softmax(ε), ε ~ N(0, I), every step.",
        ),
        "softadapt": (
            WeightingFactory(SoftAdapt),
            "SoftAdapt (Heydari et al. 2019): w = softmax(β·(L(t) − L(t−1))), optional variants.",
        ),
        "uncertainty": (
            WeightingFactory(UncertaintyWeighting),
            "Uncertainty weighting (Kendall et al. 2018): learnable log-variances s, w = ½·e^(−s).",
        ),
    },
    "multi-state": {
        "autobalance": (
            _per_loss_adamw(),
            "AutoBalance: one base-optimizer state per loss, preconditioned updates summed.",
        ),
        "autobalance-consensus": (
            _per_loss_adamw("consensus"),
            "AutoBalance whose per-loss updates count per coordinate only where they agree with "
            "the summed first moment.",
        ),
        "autobalance-consensus-mean": (
            _per_loss_adamw("consensus-mean"),
            "AutoBalance whose per-loss updates that agree per coordinate with the summed first "
            "moment are averaged (one Adam's step length).",
        ),
        "autobalance-balanced-consensus": (
            _per_loss_adamw("balanced-consensus"),
            "AutoBalance whose per-loss updates that agree per coordinate with the first moment "
            "of the scale-balanced sum (each loss over its RMS gradient scale) are averaged.",
        ),
        "autobalance-balanced-concede": (
            _per_loss_adamw("balanced-concede"),
            "AutoBalance whose per-coordinate conflicts are decided as in balanced-consensus; "
            "every loss moves the parameters by one update, an outvoted loss by the winners' mean.",
        ),
        "autobalance-balanced-anneal": (
            _per_loss_adamw("balanced-anneal"),
            "AutoBalance with balanced-concede's step shrunk per coordinate by the persistence "
            "of its decision (|EMA of its sign|, warm-started): it anneals where losses balance.",
        ),
        "autobalance-protected": (
            _per_loss_adamw(ProtectedConsensus(ratio=10.0)),
            "AutoBalance whose per-loss updates are decided per coordinate by the summed first "
            "moment among losses of comparable gradient scale; a loss 10x smaller keeps its vote.",
        ),
        "autobalance-floor": (
            _per_loss_adamw(FlooredVotes(ratio=10.0)),
            "AutoBalance whose per-loss updates are weighted per coordinate by their gradient "
            "scale's share of the largest, floored at 1/10 (conflicts decided by magnitude).",
        ),
        "m-config": (
            MConFIG,
            "M-ConFIG (Liu et al. 2025): per-loss momenta, one backward/step, ConFIG of momenta.",
        ),
        "mtadam": (MTAdam, "MTAdam: per-term Adam moments on layer-wise norm-rescaled gradients."),
        "multiadam": (
            MultiAdam,
            "MultiAdam: Adam moments per group (PDE vs rest), mean of the group updates.",
        ),
    },
}
# Required hyperparameters of a method, for the tests that run every method and `autobalance list`.
_EXAMPLE_PARAMS = {"fixed": {"weights": {"residual": 1.0, "boundary": 10.0}}}

for _family, _entries in _CATALOGUE.items():
    for _name, (_factory, _summary) in _entries.items():
        METHODS.add(
            _name,
            _factory,
            family=_family,
            summary=_summary,
            example_params=_EXAMPLE_PARAMS.get(_name),
        )
