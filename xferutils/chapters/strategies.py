"""Fine-tuning strategies behind one interface, trained to convergence (chapter 3).

A :class:`Strategy` says *how* a pretrained network is reused. :func:`prepare` turns it and a
pretrained :class:`~xferutils.core.models.MLP` into a :class:`Prepared` model: the network to train
and its learning-rate multipliers (``0`` freezes a parameter; a function of the epoch for
gradual unfreezing). Every prepared network carries two frozen scalars, the strengths of an
L2-SP pull toward the pretrained weights and of a plain L2 pull toward zero, so that one
penalty (:func:`weight_penalty`) serves every replica and all same-shaped strategies train
together. :func:`run_jobs` trains many (strategy, seed, data) jobs as vectorized replicas with
early stopping on each job's validation split and reports the budget each one used.

The strategies (documents 003 and 004, Li et al. 2018): ``scratch``, ``feature_extraction``,
``full_ft`` (pretrained layers at ``feature_mult`` × the rate), ``discriminative``
(η_l = η·γ^(L−l) with γ ≤ 1: lower layers get smaller rates), ``gradual`` (top layer first, one more every ``unfreeze_every`` epochs),
``l2`` ((α/2)‖θ‖²), ``l2sp`` ((α/2)‖θ−θ_pre‖²), ``lora`` and ``adapters`` (:mod:`xferutils.core.peft`).
The chapter's tables, figures and claims are built by the ``*_table``, ``*_figure`` and
``*_claims`` functions at the end of this module.
"""
from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from xferutils.pages.claims import GAIN, Family, Question, Verdict, compare
from xferutils.pages.claims import table as verdict_table
from xferutils.core.config import ParameterError, check_choice, check_digits, check_float, check_int, check_seeds
from xferutils.core.data import Split
from xferutils.core.ensemble import fit_replicas
from xferutils.core.metrics import Spread, spread
from xferutils.core.metrics import one_se as metrics_one_se
from xferutils.core.models import MLP, count_parameters
from xferutils.core.peft import add_adapters, add_lora
from xferutils.pages.plotting import PALETTE, markdown_table
from xferutils.core.train import History
from xferutils.core.finetune import Multipliers, discriminative_multipliers, frozen_bottom_multipliers, gradual_multipliers, layer_names, unfrozen_layers  # noqa: F401
from xferutils.core.metrics import epochs_to_fraction  # noqa: F401

STRATEGIES = ("scratch", "feature_extraction", "full_ft", "discriminative", "gradual", "l2",
              "l2sp", "lora", "adapters")
LABELS = {"scratch": "from scratch", "feature_extraction": "feature extraction",
          "full_ft": "full fine-tuning", "discriminative": "discriminative FT",
          "gradual": "gradual unfreezing", "l2": "L2 toward 0", "l2sp": "L2-SP", "lora": "LoRA",
          "adapters": "adapters"}
KNOBS = {"full_ft": "feature_mult", "discriminative": "gamma", "l2": "l2", "l2sp": "l2sp",
         "lora": "rank", "adapters": "bottleneck"}  # the hyperparameter each strategy tunes
SYMBOLS = {"full_ft": "m", "discriminative": "γ", "l2": "α", "l2sp": "α", "lora": "r",
           "adapters": "width"}


@dataclass(frozen=True)
class Strategy:
    """How to reuse a pretrained network; the knobs only matter to the strategy that uses them."""

    name: str
    feature_mult: float = 1.0   # full_ft: rate multiplier of the pretrained layers (0 freezes)
    gamma: float = 0.5          # discriminative: layer-wise decay, η_l = η·γ^(L−l), γ ≤ 1
    unfreeze_every: int = 1     # gradual: epochs per stage
    l2: float = 0.01            # l2: α of (α/2)‖θ‖² on the pretrained layers
    l2sp: float = 0.01          # l2sp: α of (α/2)‖θ−θ_pre‖²
    rank: int = 4               # lora: rank r
    alpha: float = 8.0          # lora: scale α (the update is (α/r)·BA)
    bottleneck: int = 16        # adapters: bottleneck width

    def __post_init__(self) -> None:
        check_choice("strategy", self.name, STRATEGIES)
        check_float("feature_mult", self.feature_mult, 0.0, 100.0)
        # γ > 1 would give lower layers *larger* rates: anti-discriminative, not this method
        check_float("gamma", self.gamma, 0.0, 1.0)
        check_int("unfreeze_every", self.unfreeze_every, 1)
        check_float("l2", self.l2, 0.0)
        check_float("l2sp", self.l2sp, 0.0)
        check_int("rank", self.rank, 1)
        check_float("alpha", self.alpha, 0.0)
        check_int("bottleneck", self.bottleneck, 1)

    @property
    def label(self) -> str:
        return LABELS[self.name]


def tuned(name: str, value: float | int | None = None) -> Strategy:
    """``Strategy(name)`` with its tuned knob (:data:`KNOBS`) set to ``value`` (if given)."""
    if value is None or name not in KNOBS:
        return Strategy(name)
    return Strategy(name, **{KNOBS[name]: value})


class Anchor(nn.Module):
    """Two frozen scalars: the strengths of the L2-SP and the plain L2 penalty of one replica."""

    def __init__(self, sp: float = 0.0, l2: float = 0.0) -> None:
        super().__init__()
        self.sp = nn.Parameter(torch.tensor(float(sp)), requires_grad=False)
        self.l2 = nn.Parameter(torch.tensor(float(l2)), requires_grad=False)


def weight_penalty(params: dict, init: dict, prefix: str = "features.") -> torch.Tensor:
    """(α_sp/2)‖θ − θ_pre‖² + (α_0/2)‖θ‖² over the pretrained parameters, α's read from ``anchor.*``.

    One function for every replica: a replica without a penalty has both strengths 0.
    """
    sp, l2 = params["anchor.sp"], params["anchor.l2"]
    total = sp.new_zeros(())
    for n, p in params.items():
        if n.startswith(prefix):
            total = total + sp * ((p - init[n]) ** 2).sum() + l2 * (p ** 2).sum()
    return 0.5 * total


def l2sp_penalty(alpha: float, prefix: str = "features.") -> Callable[[dict, dict], torch.Tensor]:
    """(α/2)·‖θ − θ_pre‖² over the pretrained parameters (names starting with ``prefix``)."""
    def penalty(params: dict, init: dict) -> torch.Tensor:
        return 0.5 * alpha * sum(((params[n] - init[n]) ** 2).sum() for n in params if n.startswith(prefix))
    return penalty


@dataclass
class Prepared:
    """A network ready to train with a strategy: multipliers per parameter name and epoch."""

    strategy: Strategy
    model: nn.Module
    multipliers: Multipliers
    penalty: Callable[[dict, dict], torch.Tensor] | None = weight_penalty

    @property
    def trainable(self) -> int:
        """Parameters the strategy ever updates (gradual unfreezing: all, stage by stage)."""
        return count_parameters(self.model, trainable_only=True)

    @property
    def total(self) -> int:
        """Parameters of the network (the two penalty strengths are not counted)."""
        return count_parameters(self.model) - (2 if hasattr(self.model, "anchor") else 0)

    def signature(self) -> tuple:
        """Jobs with equal signatures can train as replicas of one vectorized model."""
        return tuple((n, tuple(p.shape)) for n, p in self.model.named_parameters())


def schedule_epochs(strategy: Strategy, model: nn.Module) -> int:
    """Epochs before a strategy's schedule is complete: L·every for gradual unfreezing, else 0."""
    return strategy.unfreeze_every * len(layer_names(model)) if strategy.name == "gradual" else 0


def _reset(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model


def prepare(strategy: Strategy | str, source: MLP, n_classes: int, seed: int = 0) -> Prepared:
    """A copy of the pretrained ``source`` set up for ``strategy``, with a new head (seeded).

    ``scratch`` re-initialises every layer (same architecture, no transfer). Frozen parameters
    get ``requires_grad=False`` *and* multiplier 0, so the counts and the training agree. The
    network's ``anchor`` holds the strategy's penalty strengths (0 unless ``l2`` or ``l2sp``).
    """
    if isinstance(strategy, str):
        strategy = Strategy(strategy)
    check_int("n_classes", n_classes, 1)
    torch.manual_seed(check_int("seed", seed, 0))
    model = copy.deepcopy(source).requires_grad_(True)
    if strategy.name == "scratch":
        _reset(model)
    model.head = nn.Linear(model.feature_dim, n_classes)
    name = strategy.name
    static: dict[str, float] = {}
    schedule: Multipliers | None = None
    if name == "feature_extraction":
        model.features.requires_grad_(False)
    elif name == "full_ft":
        mult = strategy.feature_mult
        model.features.requires_grad_(mult > 0)
        static = {n: mult for n, _ in model.features.named_parameters(prefix="features")}
    elif name == "discriminative":
        static = discriminative_multipliers(model, strategy.gamma)
    elif name == "gradual":
        schedule = gradual_multipliers(model, strategy.unfreeze_every)
    elif name == "lora":
        add_lora(model, strategy.rank, strategy.alpha)
    elif name == "adapters":
        add_adapters(model, strategy.bottleneck)
    model.anchor = Anchor(strategy.l2sp if name == "l2sp" else 0.0, strategy.l2 if name == "l2" else 0.0)
    frozen = {n: 0.0 for n, p in model.named_parameters() if not p.requires_grad}
    names = [n for n, _ in model.named_parameters()]

    def multipliers(epoch: int) -> dict[str, float]:
        out = dict.fromkeys(names, 1.0)
        out.update(static)
        out.update(schedule(epoch) if schedule is not None else {})
        out.update(frozen)
        return out
    return Prepared(strategy, model, multipliers)


def check_tasks(source_digits: Any, target_digits: Any) -> tuple[list[int], list[int]]:
    """Source and target digit lists for chapter 3: any sizes, but no digit in both.

    A shared digit would not be a *new* class: the source network already separates it and its
    training images would serve both tasks, so experiments 1 and 2 would no longer measure
    transfer to new classes.
    """
    src, tgt = check_digits("source_digits", source_digits), check_digits("target_digits", target_digits)
    shared = sorted(set(src) & set(tgt))
    if shared:
        raise ParameterError(f"source_digits={src} and target_digits={tgt} share {shared}; chapter 3 "
                             "transfers to new classes, so give the target digits the source lacks")
    if len(src) < 2 or len(tgt) < 2:
        raise ParameterError("source_digits and target_digits need at least 2 digits each (a task)")
    return src, tgt


# --- many jobs as vectorized replicas, each stopped on its own validation split -------------------

@dataclass
class Job:
    """One training run: a strategy on one seed's source model and target data."""

    key: Any                    # what the result is filed under, e.g. ("exp1", "lora", 100)
    strategy: Strategy
    source: MLP
    train: Split
    seed: int
    test: Split
    val: Split
    source_test: Split | None = None  # the source task, to measure forgetting


@dataclass
class JobResult:
    key: Any
    seed: int
    test_acc: float
    val_acc: float              # best validation accuracy (the kept weights)
    epochs: float               # passes over the labelled images until the kept weights
    history: History
    trainable: int
    total: int
    source_acc: float | None = None  # source-task test accuracy with the source head (forgetting)


def tile(data: Split, reps: int) -> Split:
    """``data`` repeated ``reps`` times: one "epoch" of the trainer is then ``reps`` passes."""
    check_int("reps", reps, 1)
    return data if reps == 1 else Split(data.x.repeat(reps, 1), data.y.repeat(reps))


def _keep_source_acc(models: Sequence[nn.Module], sources: Sequence[MLP], tests: Sequence[Split | None]
                     ) -> list[float | None]:
    out: list[float | None] = []
    with torch.no_grad():
        for m, src, test in zip(models, sources, tests):
            out.append(None if test is None else
                       (src.head(m.features(test.x)).argmax(1) == test.y).float().mean().item())
    return out


def run_jobs(jobs: Sequence[Job], n_classes: int, *, lr: float = 2e-3, batch_size: int = 50,
             max_epochs: int = 40, patience: int = 3, min_rows: int = 400, amp: bool = False
             ) -> list[JobResult]:
    """Train every job to its best validation epoch; same-shaped jobs train as one replica set.

    A trainer "epoch" is ``ceil(min_rows / n)`` passes over a job's ``n`` images (tiled), so
    that small sets are checked every few steps, not every step. Each replica keeps its best
    validation epoch; a group stops when every replica has gone ``patience`` epochs without
    improving, or after ``max_epochs``. Gradual unfreezing trains as its own group: first its
    whole schedule (L stages), then with every layer free and the same stopping rule, so that
    stopping cannot cut the schedule short. The budget reported is in passes over the images.
    """
    if not jobs:
        raise ParameterError("jobs is empty; give at least one Job")
    check_seeds("seeds", sorted({j.seed for j in jobs}))
    check_int("max_epochs", max_epochs, 1)
    check_int("patience", patience, 1)
    check_int("min_rows", min_rows, 1)
    preps = [prepare(j.strategy, j.source, n_classes, j.seed) for j in jobs]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (job, prep) in enumerate(zip(jobs, preps)):
        anchored = bool(float(prep.model.anchor.sp) or float(prep.model.anchor.l2))
        groups[(prep.signature(), len(job.train), len(job.val), job.strategy.name == "gradual",
                schedule_epochs(job.strategy, prep.model), anchored)].append(i)
    out: list[JobResult | None] = [None] * len(jobs)
    for (_, n, _, _, warm, anchored), idx in groups.items():
        reps = max(1, math.ceil(min_rows / n))
        members = [preps[i] for i in idx]
        models = [p.model for p in members]
        trains = [tile(jobs[i].train, reps) for i in idx]
        vals = [jobs[i].val for i in idx]
        seeds = [1000 * j + jobs[i].seed for j, i in enumerate(idx)]
        common = dict(lr=lr, batch_size=min(batch_size, n), val=vals, amp=amp,
                      penalty=weight_penalty if anchored else None)  # all strengths 0: no penalty
        first = None
        if warm:  # gradual unfreezing: the schedule runs to its end before stopping may count
            first = fit_replicas(models, trains, seeds, epochs=warm, lr_mult=merge_multipliers(members),
                                 **common)
            models = first.unstack()
        rep = fit_replicas(models, trains, seeds, epochs=max_epochs, patience=patience,
                           lr_mult=None if warm else merge_multipliers(members), **common)
        hist = rep.history
        if first is not None:
            hist = [History(a.loss + b.loss, a.val_acc + b.val_acc, warm + b.best_epoch)
                    for a, b in zip(first.history, rep.history)]
        accs = rep.evaluate([jobs[i].test for i in idx])
        tests = [jobs[i].source_test if jobs[i].strategy.name != "scratch" else None for i in idx]
        src_acc = (_keep_source_acc(rep.unstack(), [jobs[i].source for i in idx], tests)
                   if any(t is not None for t in tests) else [None] * len(idx))
        for j, i in enumerate(idx):
            h = hist[j]
            out[i] = JobResult(jobs[i].key, jobs[i].seed, accs[j], h.val_acc[h.best_epoch - 1],
                               h.best_epoch * reps,
                               h, preps[i].trainable, preps[i].total, src_acc[j])
    return out  # type: ignore[return-value]


def merge_multipliers(preps: Sequence[Prepared]) -> Callable[[int], dict[str, float | list[float]]]:
    """One ``lr_mult`` schedule for replicas of several strategies: a value per replica where they differ."""
    def at(epoch: int) -> dict[str, float | list[float]]:
        maps = [p.multipliers(epoch) for p in preps]
        merged: dict[str, float | list[float]] = {}
        for name in maps[0]:
            vals = [m[name] for m in maps]
            merged[name] = vals[0] if len(set(vals)) == 1 else vals
        return merged
    return at


# --- measurements: per-seed values by key ---------------------------------------------------------

@dataclass
class Measurements:
    """Per-seed values (in seed order) by job key: test and validation accuracy in %, budget in
    passes over the labelled images, source-task accuracy in % after training (forgetting)."""

    test: dict[Any, list[float]] = field(default_factory=dict)
    val: dict[Any, list[float]] = field(default_factory=dict)
    epochs: dict[Any, list[float]] = field(default_factory=dict)
    source: dict[Any, list[float]] = field(default_factory=dict)
    params: dict[Any, tuple[int, int]] = field(default_factory=dict)  # (trainable, total) as run

    def add(self, results: Sequence[JobResult], rename: Callable[[Any], Any] = lambda k: k) -> None:
        """File every result under its (renamed) key, in seed order."""
        for r in sorted(results, key=lambda r: r.seed):
            k = rename(r.key)
            self.test.setdefault(k, []).append(100 * r.test_acc)
            self.val.setdefault(k, []).append(100 * r.val_acc)
            self.epochs.setdefault(k, []).append(r.epochs)
            self.params[k] = (r.trainable, r.total)  # counted on the module that trained
            if r.source_acc is not None:
                self.source.setdefault(k, []).append(100 * r.source_acc)

    def add_values(self, key: Any, test: Sequence[float]) -> None:
        """Values measured outside :func:`run_jobs` (e.g. DANN), already in %."""
        self.test[key] = [float(v) for v in test]

    def spread(self, key: Any, what: str = "test") -> Spread:
        return spread(getattr(self, what)[key])

    def fmt(self, key: Any, what: str = "test", digits: int = 1) -> str:
        return self.spread(key, what).fmt(scale=1.0, digits=digits) if key in getattr(self, what) else "–"

    def as_dict(self) -> dict[str, Any]:
        def plain(d: dict) -> dict:
            return {"/".join(map(str, k)) if isinstance(k, tuple) else str(k): v for k, v in d.items()}
        return {"test": plain(self.test), "val": plain(self.val), "epochs": plain(self.epochs),
                "source_task": plain(self.source), "params": plain(self.params)}


GRIDS = {  # each strategy's hyperparameter grid (chapter 3, book and full presets)
    "full_ft": [0.01, 0.1, 0.5, 1.0, 2.0],
    "discriminative": [round(1 / 2.6, 3), 0.5, 0.6, 0.8, 1.0],  # γ ≤ 1; 1/2.6: ULMFiT
    "l2": [0.0, 0.001, 0.01, 0.1],
    "l2sp": [0.0, 0.001, 0.01, 0.1],
    "lora": [2, 4, 8, 16, 32],
    "adapters": [8, 16, 32, 64, 128],  # 128: the widest layer (see NATURAL_EDGES)
}
SMOKE_GRIDS = {"full_ft": [0.01, 0.1, 1.0], "discriminative": [0.5, 1.0], "l2": [0.0, 0.01],
               "l2sp": [0.0, 0.01], "lora": [2, 4], "adapters": [8, 16]}


def jobs_for(strategies: dict[Any, Strategy], n: int, sources: Sequence[MLP], seeds: Sequence[int],
             pool: Split, val: Split, test: Split, source_test: Split | None = None) -> list[Job]:
    """One job per (key, seed): seed s trains on its own sample of ``n`` images of ``pool``."""
    from xferutils.core.data import sample

    jobs = []
    for s, src in zip(seeds, sources):
        train = sample(pool, n, seed=s)
        jobs += [Job(k, strat, src, train, s, test, val, source_test) for k, strat in strategies.items()]
    return jobs


def tuning_jobs(grids: dict[str, Sequence[float]]) -> dict[Any, Strategy]:
    """The sweep: every grid value of every tuned strategy, plus the three without a knob."""
    out: dict[Any, Strategy] = {("tune", k, None): Strategy(k)
                                for k in STRATEGIES if k not in KNOBS}
    out |= {("tune", k, v): tuned(k, v) for k, grid in grids.items() for v in grid}
    return out


def promote(m: Measurements, chosen: dict[str, float], n: int) -> None:
    """File the sweep's runs of the validated settings as experiment 1's results at ``n`` labels."""
    for k in STRATEGIES:
        src = ("tune", k, chosen.get(k))
        for d in (m.test, m.val, m.epochs, m.source, m.params):
            if src in d:
                d[("exp1", k, n)] = list(d[src]) if isinstance(d[src], list) else d[src]


def validated(m: Measurements, name: str, grid: Sequence[float], prefix: str = "tune") -> float:
    """The grid value of ``name`` with the best mean validation accuracy."""
    return max(grid, key=lambda v: np.mean(m.val[(prefix, name, v)]))


def complexity(name: str, value: float) -> float:
    """How far a knob's value is from the simplest model (0 = plain fine-tuning or the smallest
    addition): |log m| and |log γ| (1 is plain fine-tuning), α (0 is no penalty), the LoRA rank
    and the adapter width (fewer added parameters is simpler)."""
    check_choice("name", name, list(KNOBS))
    if name in ("full_ft", "discriminative"):
        return abs(math.log(value)) if value > 0 else math.inf
    return float(value)


def one_se(m: Measurements, name: str, grid: Sequence[float], prefix: str = "tune") -> float:
    """The one-standard-error rule (:func:`xferutils.core.metrics.one_se`) over a knob's grid:
    among the grid values whose mean validation accuracy (over every seed) lies within one
    standard error of the best mean, the simplest (:func:`complexity`). A knob is moved off its
    simplest value only when the gain is larger than the noise of its own measurement."""
    if not grid:
        raise ParameterError(f"grid of {name!r} is empty")
    return metrics_one_se({v: m.val[(prefix, name, v)] for v in grid}, lambda v: complexity(name, v))


AA = (("full_ft", 1.0), ("discriminative", 1.0), ("l2", 0.0), ("l2sp", 0.0))  # all plain fine-tuning


def aa_keys(m: Measurements, prefix: str = "tune") -> list[Any]:
    """The sweep's configurations that are one and the same model (full fine-tuning: m = 1,
    γ = 1, α = 0 for L2 and L2-SP), those that ran."""
    return [(prefix, k, v) for k, v in AA if (prefix, k, v) in m.val]


def aa_spread(m: Measurements, what: str = "val", prefix: str = "tune") -> float:
    """The A/A spread: largest minus smallest mean accuracy (%) of identical configurations,
    which differ only in the order of their batches. A tuning gain below it is noise."""
    keys = aa_keys(m, prefix)
    if len(keys) < 2:
        raise ParameterError("aa_spread needs at least two identical configurations in the sweep "
                             f"(of {[f'{k} = {v:g}' for k, v in AA]})")
    means = [float(np.mean(getattr(m, what)[k])) for k in keys]
    return max(means) - min(means)


def aa_table(m: Measurements, prefix: str = "tune") -> str:
    """The identical configurations side by side (validation and test %), and their spread."""
    keys = aa_keys(m, prefix)
    rows = [[LABELS[k[1]], f"{SYMBOLS[k[1]]} = {k[2]:g}", m.fmt(k, "val"), m.fmt(k)] for k in keys]
    rows.append(["*spread of the means*", "(max − min)", f"{aa_spread(m, 'val', prefix):.1f}",
                 f"{aa_spread(m, 'test', prefix):.1f}"])
    return markdown_table(["same model as", "setting", "validation (%)", "test (%)"], rows, "llrr")


def interior(grid: Sequence[float], value: float) -> bool:
    """Whether ``value`` lies strictly inside ``grid`` (not at its smallest or largest value)."""
    return min(grid) < value < max(grid)


NATURAL_EDGES = {  # grid ends past which a knob loses its meaning: a choice there is an answer
    ("l2", "low"): "α cannot be negative, so no penalty is a genuine answer",
    ("l2sp", "low"): "α cannot be negative, so no penalty is a genuine answer",
    ("discriminative", "high"): "γ = 1 is plain fine-tuning; above 1 lower layers would learn faster than "
                                "the head, which is no longer discriminative fine-tuning",
    ("adapters", "high"): "an adapter as wide as the widest layer it adapts (128 units) is no longer a "
                          "bottleneck: validation prefers capacity to parameter efficiency",
}


def edge_notes(grids: dict[str, Sequence[float]], chosen: dict[str, float]) -> list[str]:
    """One phrase per knob chosen at an end of its grid, with the reason where that end is natural."""
    notes = []
    for k, grid in grids.items():
        if interior(grid, chosen[k]):
            continue
        reason = NATURAL_EDGES.get((k, "low" if chosen[k] == min(grid) else "high"))
        notes.append(f"{LABELS[k]} ({SYMBOLS[k]} = {chosen[k]:g}" + (f": {reason})" if reason else ", beyond "
                                                                      "which the grid may hide a better value)"))
    return notes


# --- claims -------------------------------------------------------------------------------------

def _slug(key: Any) -> str:
    name = key[1] if isinstance(key, tuple) else key
    return str(name).replace("_", "")


NAMES3 = {"source_only": "source model as is", "dann": "DANN", "upper": "upper reference"}
BASELINES = ("pixels", "random", "prototypes")  # xferutils.core.baselines, at the strategies' labels
NAMES3 |= {"pixels": "logistic regression on pixels", "random": "random frozen network + linear head",
           "prototypes": "nearest class prototype"}
BASELINE_SLUGS = {"pixels": "pixels", "random": "randomnet", "prototypes": "prototypes"}


def add_baselines(m: Measurements, key: Callable[[str], Any], n: int, pool: Split, test: Split,
                  seeds: Sequence[int], make_net: Callable[[], nn.Module],
                  names: Sequence[str] = BASELINES) -> None:
    """File each baseline's per-seed test accuracy (%) under ``key(name)``: seed s trains on the
    very images :func:`jobs_for` gives the strategies (``sample(pool, n, seed=s)``); the random
    network is ``make_net()`` initialised under seed s and frozen."""
    from xferutils.core import baselines as bl
    from xferutils.core.data import sample

    for k in names:
        check_choice("baseline", k, BASELINES)
    fns = {"pixels": lambda tr, s: bl.pixel_logistic(tr, test, seed=s),
           "random": lambda tr, s: bl.random_frozen(make_net, tr, test, seed=s),
           "prototypes": lambda tr, s: bl.prototype_accuracy(tr, test)}
    vals: dict[str, list[float]] = {k: [] for k in names}
    for s in check_seeds("seeds", seeds):
        train = sample(pool, n, seed=s)
        for k in names:
            vals[k].append(100 * fns[k](train, s))
    for k, v in vals.items():
        m.add_values(key(k), v)


def baselines_list(m: Measurements) -> list[dict[str, Any]]:
    """The results file's ``baselines``: ``{name, setting, measured}`` (per-seed %) for every
    baseline that ran, named by the setting of the strategies it stands beside."""
    out = []
    for key, vals in m.test.items():
        if not (isinstance(key, tuple) and key[1] in BASELINES):
            continue
        if key[0] == "exp3":
            setting = f"rotated {key[2]}° (LeNet-5 experiment), {key[3]} labels"
        elif key[0] == "uci":
            setting = f"MNIST → UCI digits, {key[2]} labelled UCI images"
        else:
            setting = f"new classes, {key[2]} labels" + (" (upper reference's images)" if key[0] == "upper" else "")
        out.append({"name": NAMES3[key[1]], "setting": setting, "measured": list(vals)})
    return out


def _name(key: Any) -> str:
    name = key[1] if isinstance(key, tuple) else key
    return LABELS.get(name) or NAMES3.get(name, str(name))


@dataclass
class Cell:
    """One cell of the decision chart: the validation leader, and every strategy that ran there
    against the cell's fixed reference (full fine-tuning for new classes, scratch under a shift,
    the source model without labels): shown better, shown worse, equivalent or undecided."""

    row: str
    col: int
    leader: str
    acc: Spread
    anchor: str
    lead_vs_anchor: Verdict | None
    better: list[str]
    worse: list[str]
    undecided: list[str]
    claim_ids: list[str]
    equivalent: list[str] = field(default_factory=list)


def claims_table(verdicts: Sequence[Verdict], prefix: str = "") -> str:
    """The book's claims table (:func:`xferutils.pages.claims.table`)."""
    return verdict_table(verdicts, prefix=prefix)


# --- tables ------------------------------------------------------------------------------------

def grid_counts(source: MLP, n_classes: int, grids: dict[str, Sequence[float]]) -> dict[str, tuple[int, int]]:
    """(trainable, total) parameters of every configuration the sweep trains, counted on the
    prepared modules (:func:`prepare`): one row per strategy, one per grid value where the value
    changes the count (LoRA rank, adapter width)."""
    out = {}
    for k in STRATEGIES:
        values = grids.get(k, [None]) if k in ("lora", "adapters") else [None]
        for v in values:
            p = prepare(tuned(k, v), source, n_classes)
            out[LABELS[k] + ("" if v is None else f" ({SYMBOLS[k]} = {v:g})")] = (p.trainable, p.total)
    return out


def counts_table(counts: dict[str, tuple[int, int]]) -> str:
    """Trainable parameters per strategy (a strategy name or a row label): count and share of the
    network."""
    rows = [[LABELS.get(k, k), f"{t:,}", f"{100 * t / n:.1f} %"] for k, (t, n) in counts.items()]
    return markdown_table(["strategy", "trainable parameters", "share of the network"], rows, "lrr")


def _trainable(m: Measurements, k: Any) -> str:
    return f"{m.params[k][0]:,}" if k in m.params else "–"


def tuning_table(m: Measurements, grids: dict[str, Sequence[float]], chosen: dict[str, float],
                 n: int | None = None) -> str:
    """Validation and test accuracy (%) over each strategy's grid, the passes used and the
    trainable parameters of the module that ran; the selected value in bold. With ``n``, the
    baselines on the same ``n`` labelled images follow (fixed settings: nothing to tune)."""
    rows = []
    for name, grid in grids.items():
        for v in grid:
            k = ("tune", name, v)
            mark = "**" if v == chosen[name] else ""
            rows.append([LABELS[name], f"{mark}{SYMBOLS[name]} = {v:.3g}{mark}", m.fmt(k, "val"),
                         m.fmt(k), f"{np.mean(m.epochs[k]):.0f}", _trainable(m, k)])
    for b in BASELINES if n is not None else ():
        if ("exp1", b, n) in m.test:
            rows.append([NAMES3[b], "fixed", "–", m.fmt(("exp1", b, n)), "–", "–"])
    return markdown_table(["strategy", "setting", "validation (%)", "test (%)", "passes", "trainable"],
                          rows, "llrrrr")


def size_table(m: Measurements, sizes: Sequence[int], what: str = "test", fmt: str = "spread",
               n_val: int = 0) -> str:
    """Rows: strategies, then (test accuracy) the baselines that ran on the same images; columns:
    labelled target images (≤ 5 sizes keeps it within 7 columns), and for test accuracy the
    trainable parameters of the module that ran (the validated setting). ``n_val``: the labelled
    validation images every strategy also used, counted in the column heads ("50 + 300")."""
    check_int("n_val", n_val, 0)
    names = [*STRATEGIES, *(BASELINES if what == "test" else ())]
    count = what == "test" and any(("exp1", k, n) in m.params for k in STRATEGIES for n in sizes)
    rows = []
    for name in names:
        keys = [("exp1", name, n) for n in sizes]
        if name in BASELINES and not any(k in m.test for k in keys):
            continue
        cells = []
        for k in keys:
            vals = getattr(m, what).get(k)
            cells.append("–" if vals is None else
                         spread(vals).fmt(1.0, 1) if fmt == "spread" else f"{np.mean(vals):.0f}")
        extra = [next((_trainable(m, k) for k in keys if k in m.params), "–")] if count else []
        rows.append([LABELS.get(name) or NAMES3[name], *cells, *extra])
    head = ["strategy", *[f"{n} + {n_val} labels" if n_val else f"{n} labels" for n in sizes],
            *(["trainable"] if count else [])]
    return markdown_table(head, rows, "l" + "r" * (len(head) - 1))


def shift_baseline_table(m: Measurements, angles: Sequence[int], n: int) -> str:
    """Rows: rotation angles; columns: training from scratch with ``n`` labelled rotated images,
    and each baseline on the same images (test accuracy, %)."""
    names = ["scratch", *[b for b in BASELINES if ("exp3", b, angles[0], n) in m.test]]
    rows = [[f"{a}°", *[m.fmt(("exp3", k, a, n)) for k in names]] for a in angles]
    return markdown_table(["rotation", *[f"{_name(k)} ({n})" for k in names]], rows, "r" * (len(names) + 1))


def shift_table(m: Measurements, angles: Sequence[int], n: int, names: Sequence[str],
                what: str = "test", n_val: int = 0) -> str:
    """Rows: rotation angles; columns: strategies with ``n`` labels, then (test accuracy only)
    the source model and DANN without labels. ``what="epochs"``: mean passes used."""
    cols = [("exp3", k, n) for k in names]
    cols += [("exp3", k, 0) for k in ("source_only", "dann")] if what == "test" else []
    budget = f"{n} + {n_val}" if n_val else f"{n}"  # training + validation labels
    head = [f"{_name(k)}" + (f" ({budget})" if k[2] else " (0)") for k in cols]
    cell = (lambda k: m.fmt(k)) if what == "test" else (lambda k: f"{np.mean(m.epochs[k]):.0f}")
    rows = [[f"{a}°", *[cell((c[0], c[1], a, c[2])) for c in cols]] for a in angles]
    return markdown_table(["rotation", *head], rows, "r" * (len(cols) + 1))


def uci_table(m: Measurements, n: int, names: Sequence[str], n_val: int = 0) -> str:
    """MNIST → UCI digits: each method's UCI test accuracy (%) with the labelled UCI images it
    used (``n`` for training, plus ``n_val`` for validation where it chose an epoch on them),
    beside Ganin et al.'s published MNIST → MNIST-M numbers where they have the same method."""
    ref = {"source_only": "source only", "dann": "DANN"}
    rows = []
    for k, used in [*[(k, n) for k in names], ("pixels", n), ("source_only", 0), ("dann", 0)]:
        key = ("uci", k, used)
        if key not in m.test:
            continue
        labels = f"{used} + {n_val}" if used and k in names and n_val else str(used)
        pub = f"{GANIN2016[ref[k]]:.2f}" if k in ref else "–"
        rows.append([_name(key), labels, m.fmt(key), pub])
    rows.append(["trained on the target (published)", "all", "–", f"{GANIN2016['train on target']:.2f}"])
    return markdown_table(["method", "UCI labels used", "UCI test (%)", "Ganin et al., MNIST → MNIST-M (%)"],
                          rows, "lrrr")


def seed001_exp1_table(m: Measurements, claimed: dict[int, tuple[float, float, float]],
                       sizes: Sequence[int]) -> str:
    """Document 001's experiment 1 (fractions) beside the measurement (%), the sizes both have."""
    trio = ("feature_extraction", "full_ft", "scratch")
    rows = [[n, *[f"{c:.2f} / {m.fmt(('exp1', k, n))}" for k, c in zip(trio, claims)]]
            for n, claims in claimed.items() if n in sizes]
    return markdown_table(["labels", *[f"{LABELS[k]}: claimed / measured" for k in trio]], rows, "rrrr")


def seed001_exp2_table(m: Measurements, claimed: dict[float, float]) -> str:
    """Document 001's experiment 2 (accuracy per multiplier m, fractions) beside the measurement (%)."""
    rows = [[f"{mult:g}", f"{c:.2f}", m.fmt(("tune", "full_ft", mult))] for mult, c in claimed.items()]
    return markdown_table(["multiplier m", "document 001 (claimed)", "measured (%)"], rows, "rrr")


def seed001_exp3_table(claimed: dict[float, tuple[float, float, float]]) -> str:
    """Document 001's experiment 3 as printed (fractions; its shift strength has no stated unit)."""
    rows = [[f"{s:g}", f"{t:.2f}", f"{c:.2f}", f"{g:+.2f}"] for s, (t, c, g) in claimed.items()]
    return markdown_table(["shift (document 001's unit)", "transfer", "scratch", "gain"], rows, "rrrr")


def forget_note(m: Measurements, src_after: dict[str, float], n: int) -> str:
    """Whether the strategy that forgets most is told apart from the next one: their gap in
    source accuracy (%) against the larger of their standard deviations over seeds."""
    if len(src_after) < 2:
        return "Only one strategy was measured"
    worst, next_ = sorted(src_after, key=src_after.get)[:2]
    sd = max(float(np.std(m.source[("exp1", k, n)], ddof=1)) for k in (worst, next_))
    gap = src_after[next_] - src_after[worst]
    if gap < sd:
        return (f"The next, {_prose(LABELS[next_])} ({src_after[next_]:.1f} %), is within the seeds' spread of "
                f"it (standard deviation up to {sd:.1f} points): which strategy forgets most is not a finding")
    return (f"The next, {_prose(LABELS[next_])} ({src_after[next_]:.1f} %), is {gap:.1f} points above it, "
            f"more than the seeds' spread (standard deviation up to {sd:.1f} points)")


def forgetting_table(m: Measurements, sizes: Sequence[int], before: Spread) -> str:
    """Source-task test accuracy (%) with the source head on each strategy's features, after
    training on the target; ``before`` is the pretrained network's."""
    rows = [["(before: pretrained)", *[before.fmt(1.0, 1)] * len(sizes)]]
    for name in STRATEGIES[1:]:
        rows.append([LABELS[name], *[m.fmt(("exp1", name, n), "source") for n in sizes]])
    return markdown_table(["strategy", *[f"after {n} labels" for n in sizes]], rows, "l" + "r" * len(sizes))


# --- figures -----------------------------------------------------------------------------------

def size_figure(m: Measurements, sizes: Sequence[int], upper: Spread | None = None) -> plt.Figure:
    """Target test accuracy (%) against labelled images, one line per strategy (mean ± std)."""
    fig, ax = plt.subplots(figsize=(8.5, 4.4))
    for i, name in enumerate(STRATEGIES):
        s = [spread(m.test[("exp1", name, n)]) for n in sizes]
        ax.errorbar(sizes, [v.mean for v in s], yerr=[v.std for v in s], marker="o", capsize=3,
                    label=LABELS[name], ls="--" if name == "scratch" else "-", color=PALETTE[i])
    if upper is not None:
        ax.axhline(upper.mean, color="k", lw=0.8, ls=":", label="scratch, all target images")
    ax.set_xscale("log")
    from xferutils.pages.plotting import data_ticks  # written out: 50, 100, 500

    data_ticks(ax)
    ax.set_xlabel("labelled target images")
    ax.set_ylabel("target test accuracy (%)")
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def shift_figure(m: Measurements, angles: Sequence[int], n: int, names: Sequence[str]) -> plt.Figure:
    """Two panels: test accuracy against rotation, and the gain over scratch (points)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    keys = [(k, n) for k in names] + [("source_only", 0), ("dann", 0)]
    for i, (k, nn_) in enumerate(keys):
        at = [a for a in angles if ("exp3", k, a, nn_) in m.test]
        s = [spread(m.test[("exp3", k, a, nn_)]) for a in at]
        ax1.errorbar(at, [v.mean for v in s], yerr=[v.std for v in s], marker="o", capsize=3,
                     color=PALETTE[i], ls=":" if nn_ == 0 else "-", label=f"{_name(k)} ({nn_})")
    for i, k in enumerate(names):
        if k == "scratch":
            continue
        gain = [np.mean(np.subtract(m.test[("exp3", k, a, n)], m.test[("exp3", "scratch", a, n)]))
                for a in angles]
        ax2.plot(angles, gain, "o-", color=PALETTE[i], label=f"{_name(k)} − scratch")
    at = [a for a in angles if ("exp3", "dann", a, 0) in m.test]
    gain = [np.mean(np.subtract(m.test[("exp3", "dann", a, 0)], m.test[("exp3", "source_only", a, 0)]))
            for a in at]
    ax2.plot(at, gain, "d:", color=PALETTE[len(keys) - 1], label="DANN − source model")
    ax2.axhline(0, color="k", lw=0.8)
    for ax in (ax1, ax2):
        ax.set_xlabel("rotation of the target digits (°)")
        ax.set_xticks(list(angles))
    ax1.set_ylabel("target test accuracy (%)")
    ax2.set_ylabel("gain (points)")
    ax1.legend(fontsize=9, title="(labelled images)", title_fontsize=9)
    ax2.legend(fontsize=9)
    fig.tight_layout()
    return fig


def cell_lines(cell: Cell) -> list[str]:
    """A decision-chart cell's text, one short line each: the leader, its accuracy, and how it
    stands against the cell's reference."""
    v = cell.lead_vs_anchor
    if v is None:
        where = "(the reference)"
    elif v.verdict == "equivalent":
        where = f"= {cell.anchor}"
    elif v.verdict == "not shown":
        where = f"vs {cell.anchor}: undecided"
    else:
        where = f"{'beats' if v.a_greater else 'trails'} {cell.anchor}"
    return [cell.leader, f"{cell.acc.mean:.1f} %", where]


def decision_figure(cells: Sequence[Cell]) -> plt.Figure:
    """The decision chart: per setting (row) and label count (column), the validation leader,
    its test accuracy, and its verdict against the cell's reference."""
    rows = list(dict.fromkeys(c.row for c in cells))
    cols = sorted({c.col for c in cells})
    names = sorted({c.leader for c in cells})
    fig, ax = plt.subplots(figsize=(min(10.0, 2.4 * len(cols) + 2.6), 1.05 * len(rows) + 1.3))
    grid = np.full((len(rows), len(cols)), np.nan)
    for c in cells:
        i, j = rows.index(c.row), cols.index(c.col)
        grid[i, j] = names.index(c.leader)
        ax.text(j, i, "\n".join(cell_lines(c)), ha="center", va="center", fontsize=9, linespacing=1.15)
    ax.imshow(grid, cmap="Pastel1", vmin=0, vmax=8, aspect="auto")
    ax.set_xticks(range(len(cols)), [f"{c} labels" for c in cols], fontsize=9)
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    ax.grid(False)
    fig.tight_layout()
    return fig


def peft_diagram() -> plt.Figure:
    """LoRA and an adapter beside a frozen linear layer: what is frozen (grey), what trains (colour)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    frozen, train = "#d9d9d9", "#9ecae1"

    def box(ax, x, y, w, h, text, color):
        ax.add_patch(plt.Rectangle((x, y), w, h, facecolor=color, edgecolor="k", lw=1))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=10)

    def arrow(ax, x0, y0, x1, y1):
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", lw=1.2))

    ax = axes[0]
    box(ax, 0.5, 4.4, 3, 0.8, "h = W x + (α/r) B A x", "white")
    box(ax, 0.3, 2.0, 1.6, 1.2, "W  (frozen)\nd_out × d_in", frozen)
    box(ax, 2.4, 2.6, 1.4, 0.6, "B  (d_out × r)\nstarts at 0", train)
    box(ax, 2.4, 1.5, 1.4, 0.6, "A  (r × d_in)", train)
    box(ax, 1.3, 0.2, 1.4, 0.6, "x", "white")
    for x0, y0, x1, y1 in [(1.7, 0.8, 1.1, 2.0), (2.3, 0.8, 3.1, 1.5), (3.1, 2.1, 3.1, 2.6),
                           (1.1, 3.2, 1.6, 4.4), (3.1, 3.2, 2.6, 4.4)]:
        arrow(ax, x0, y0, x1, y1)
    ax.set_title("LoRA: a low-rank update beside W", fontsize=11)
    ax = axes[1]
    box(ax, 0.8, 0.2, 2.4, 0.6, "x", "white")
    box(ax, 0.8, 1.2, 2.4, 0.8, "W  (frozen) + ReLU → h", frozen)
    box(ax, 2.2, 2.4, 1.6, 0.6, "W_down: d → width", train)
    box(ax, 2.2, 3.3, 1.6, 0.6, "W_up: width → d\nstarts at 0", train)
    box(ax, 0.8, 4.4, 2.4, 0.8, "h + W_up σ(W_down h)", "white")
    for x0, y0, x1, y1 in [(2.0, 0.8, 2.0, 1.2), (2.6, 2.0, 3.0, 2.4), (3.0, 3.0, 3.0, 3.3),
                           (3.0, 3.9, 2.6, 4.4), (1.4, 2.0, 1.4, 4.4)]:
        arrow(ax, x0, y0, x1, y1)
    ax.text(1.3, 3.2, "skip", fontsize=10, rotation=90, va="center")
    ax.set_title("adapter: a bottleneck after the layer", fontsize=11)
    for ax in axes:
        ax.set_xlim(0, 4.1)
        ax.set_ylim(0, 5.4)
        ax.axis("off")
    fig.tight_layout()
    return fig


__all__ = ["STRATEGIES", "LABELS", "KNOBS", "Strategy", "tuned", "Anchor", "weight_penalty",
           "l2sp_penalty", "Prepared", "prepare", "layer_names", "discriminative_multipliers",
           "gradual_multipliers", "unfrozen_layers", "schedule_epochs",
           "frozen_bottom_multipliers", "check_tasks", "GRIDS", "SMOKE_GRIDS", "jobs_for",
           "tuning_jobs", "promote", "Job", "JobResult", "tile", "run_jobs", "merge_multipliers",
           "epochs_to_fraction", "Measurements", "validated", "interior", "Cell", "questions", "moderate_size",
           "claims_table", "counts_table", "tuning_table", "size_table", "shift_table",
           "seed001_exp1_table", "seed001_exp2_table", "seed001_exp3_table", "forgetting_table",
           "size_figure", "shift_figure", "complexity", "one_se", "AA", "aa_keys", "aa_spread", "aa_table",
           "BASELINES", "add_baselines", "baselines_list", "grid_counts", "shift_baseline_table",
           "baseline_prose", "LI2018", "frontier_figure", "curve_figure", "references_list", "decision_figure", "peft_diagram", "Comparisons",
           "ChapterClaims", "SEED001", "chapter_claims", "decision", "prose", "cell_sentence",
           "glue_figure", "digits_figure", "backbone_table", "imagenet_features_accuracy"]


# --- the chapter's claims -------------------------------------------------------------------------

class Comparisons:
    """A :class:`~xferutils.pages.claims.Family` of paired comparisons in which each pair of methods is
    compared once: asking for (b, a) after (a, b) reuses the claim (read with the sign flipped)."""

    def __init__(self, family: Family, m: Measurements) -> None:
        self.family, self.m = family, m
        self.pairs: dict[tuple[Any, Any], str] = {}

    def claim(self, a: Any, b: Any, id: str, text: str, source: str = "book") -> str:
        """Register "a beats b" unless this pair (either way round) is already a claim."""
        if (a, b) in self.pairs:
            return self.pairs[(a, b)]
        if (b, a) in self.pairs:
            return self.pairs[(b, a)]
        self.family.direction(id, source, text, self.m.test[a], self.m.test[b], unit="points")
        self.pairs[(a, b)] = id
        return id

    def verdict(self, verdicts: dict[str, Verdict], a: Any, b: Any) -> Verdict:
        """The verdict of the pair read as "a against b" (flipped if it was registered b, a)."""
        if (a, b) in self.pairs:
            return verdicts[self.pairs[(a, b)]]
        return verdicts[self.pairs[(b, a)]].flipped()

    def beats(self, verdicts: dict[str, Verdict], a: Any, b: Any) -> str:
        """"supported" if a beats b, "contradicted" if b beats a, else "equivalent" or "not shown"."""
        return self.verdict(verdicts, a, b).verdict

    def words(self, verdicts: dict[str, Verdict], a: Any, b: Any) -> str:
        """"A beats / trails / is equivalent to / is not shown to differ from B (evidence)"."""
        return compare(self.verdict(verdicts, a, b), _prose(_name(a)), _prose(_name(b)))


@dataclass
class ChapterClaims:
    """Every claim of chapter 3 in one family, and the decision chart's cells (leader, others)."""

    comparisons: Comparisons
    cells: list[tuple[str, int, Any, list[Any]]]
    doc: dict[str, Any]

    @property
    def family(self) -> Family:
        return self.comparisons.family


SEED001 = {  # seed 001's tables (accuracies as fractions), the document's claims
    "exp1": {50: (1.00, 1.00, 1.00), 100: (0.95, 1.00, 1.00), 500: (0.99, 1.00, 1.00),
             1000: (1.00, 1.00, 1.00)},
    "exp2": {0.01: 0.19, 0.1: 0.20, 0.5: 0.20, 1.0: 0.22},
    "exp3": {0.0: (0.20, 0.20, 0.00), 0.5: (0.26, 0.21, 0.05), 1.0: (0.23, 0.20, 0.03),
             2.0: (0.20, 0.20, 0.00), 3.0: (0.20, 0.20, 0.00)},
}


def moderate_size(sizes: Sequence[int]) -> int:
    """Document 001's "moderate data": the largest size of the run up to 500 labels."""
    return max([n for n in sizes if n <= 500] or list(sizes[:1]))


def questions(sizes: Sequence[int], angles: Sequence[int], dann_angles: Sequence[int] | None = None,
              uci: bool = False) -> tuple[Question, ...]:
    """Chapter 3's research questions, declared before any data (one Holm family each): which
    strategies beat full fine-tuning at each size of new-class data; which beat scratch at each
    rotation (and whether DANN beats the source model); how the gain moves with the shift; the
    rate of experiment 2; what L2-SP keeps; whether fine-tuning (at each size) and the upper
    reference beat the baselines of :mod:`xferutils.core.baselines` (at most 2 × sizes + 1 claims).
    DANN runs at ``dann_angles`` only (default: every angle); ``uci`` adds the MNIST → UCI
    digits question (DANN against the source model, fine-tuning against scratch and pixels)."""
    mod, a0, mid, last = moderate_size(sizes), angles[0], angles[len(angles) // 2], angles[-1]
    dann_angles = list(angles) if dann_angles is None else list(dann_angles)
    out = [Question("ch3-shift-gain", "Does transfer gain more at a small shift than at none, and nothing "
                    "at the largest? Does the gain at the largest rotation differ from the gain at none?",
                    claims=("001-exp3-small-shift", "001-large-shift-no-gain", "ch3-cnn-gain-*")),
           Question("ch3-rates", "Does a smaller rate for the pretrained layers help (experiment 2 on "
                    "MNIST)?", claims=("001-exp2-smaller-rate",), primary=False),
           Question("ch3-forgetting", "Does a pull toward the source weights (L2-SP) keep more of the "
                    "source task than fine-tuning freely or a pull toward zero?",
                    claims=("004-l2sp-forgetting", "ch3-l2sp-vs-l2"), primary=False),
           Question("ch3-baselines", "Do the strategies beat a linear model on pixels and a random frozen "
                    "network?", claims=("ch3-baseline-*",))]
    for n in sizes:
        extra = (("004-small-data-freeze", "003-fewer-data") if n == sizes[0] else ()) + \
                (("001-decision-gradual-moderate",) if n == mod else ()) + \
                (("001-decision-ft-lots-*",) if n == sizes[-1] else ())
        out.append(Question(f"ch3-new-{n}", f"With {n} labels of new classes, which strategies beat full "
                            "fine-tuning?", claims=(f"ch3-new-{n}-*", f"001-exp1-scratch-needs-more-{n}", *extra)))
    for a in angles:
        extra = (("001-decision-fe-similar",) if a == a0 else ()) + \
                (("001-decision-da-shift",) if a == mid and a in dann_angles else ()) + \
                (("001-negative-transfer",) if a == last else ())
        dann = (f"003-dann-invariant-{a}",) if a in dann_angles else ()
        out.append(Question(f"ch3-rot{a}", f"Rotated {a}°: which strategies beat training from scratch" +
                            (", and does DANN beat the source model without labels?" if dann else "?"),
                            claims=(f"ch3-shift-*-vs-scratch-{a}", f"001-transfer-first-rot{a}", *dann, *extra)))
    if uci:
        out.append(Question("ch3-uci", "MNIST → UCI digits (another dataset): does DANN beat the source model "
                            "without labels, and does fine-tuning beat training from scratch and the pixel "
                            "model with labels?", claims=("ch3-uci-*", "003-dann-invariant-uci")))
    return tuple(out)


def chapter_claims(m: Measurements, family: Family, *, sizes: Sequence[int], angles: Sequence[int],
                   n3: int, shift_names: Sequence[str], target: str) -> ChapterClaims:
    """Register document 001's claims on MNIST ("001-…", tested here on digits, not on its
    synthetic task: chapter 7 tests those numbers) and the book's comparisons ("ch3-…") in
    ``family``, whose questions (:func:`questions`) were declared before the data.

    Every pair is compared once, under an id that names the pair and the setting. Decision
    cells compare each strategy with a fixed reference: full fine-tuning for new classes, scratch
    under a rotation, the source model without labels.
    """
    cmp = Comparisons(family, m)
    e1 = lambda k, n: ("exp1", k, n)  # noqa: E731
    e3 = lambda k, a, n: ("exp3", k, a, n)  # noqa: E731
    cmp.claim(("tune", "full_ft", 0.1), ("tune", "full_ft", 1.0), "001-exp2-smaller-rate",
              "on MNIST, a much smaller rate for the pretrained layers (m = 0.1) beats m = 1", "document 001")
    a0, a1, mid = angles[0], angles[1], angles[len(angles) // 2]
    gain = lambda a: np.subtract(m.test[e3("full_ft", a, n3)], m.test[e3("scratch", a, n3)])  # noqa: E731
    # two gains compared: points of gain, not accuracies (the ledger reads a comparison in "points" as two %)
    family.direction("001-exp3-small-shift", "document 001", f"on MNIST, transfer gains more at a small shift "
                     f"({a1}°) than at none", gain(a1), gain(a0), unit=GAIN)
    cmp.claim(e3("feature_extraction", a0, n3), e3("full_ft", a0, n3), "001-decision-fe-similar",
              "little data, similar domains: feature extraction beats fine-tuning", "document 001")
    if e3("dann", mid, 0) in m.test:
        cmp.claim(e3("dann", mid, 0), e3("source_only", mid, 0), "001-decision-da-shift",
                  f"different domains: domain adaptation beats the source model ({mid}°)", "document 001")
    moderate = moderate_size(sizes)
    cmp.claim(e1("gradual", moderate), e1("full_ft", moderate), "001-decision-gradual-moderate",
              f"moderate data ({moderate} labels): gradual unfreezing beats full fine-tuning", "document 001")
    cmp.claim(e1("full_ft", sizes[-1]), e1("feature_extraction", sizes[-1]),
              "001-decision-ft-lots-vs-featureextraction", f"more data ({sizes[-1]} labels; the document "
              "says 1000+): full fine-tuning beats feature extraction", "document 001")
    last = angles[-1]
    family.value("001-large-shift-no-gain", "document 001", f"the largest shift ({last}°): full fine-tuning's gain "
                 "over scratch disappears (within ±2 points)", gain(last), 0.0, tol=2.0, unit="points")
    if last != a0:
        family.direction(f"ch3-cnn-gain-rot{last}-vs-rot{a0}", "book", f"full fine-tuning's gain over scratch "
                         f"at {last}° exceeds its gain at {a0}°", gain(last), gain(a0), unit=GAIN)
    cmp.claim(e3("scratch", last, n3), e3("feature_extraction", last, n3), "001-negative-transfer",
              f"very different domains ({last}°): training from scratch beats feature extraction "
              "(negative transfer)", "document 001")
    cmp.claim(e1("feature_extraction", sizes[0]), e1("full_ft", sizes[0]), "004-small-data-freeze",
              f"small target data ({sizes[0]} labels): freezing the features beats fine-tuning them", "document 004")
    if len(sizes) > 1:
        family.direction("003-fewer-data", "document 003", f"transfer reduces the data needed: fine-tuning with "
                         f"{sizes[0]} labels beats scratch with {sizes[1]}", m.test[e1("full_ft", sizes[0])],
                         m.test[e1("scratch", sizes[1])], unit="points")
    alphas = sorted(key[2] for key in m.source if key[:2] == ("tune", "l2sp") and key[2] > 0)
    if alphas and ("tune", "full_ft", 1.0) in m.source:  # the strongest pull toward the source weights
        a = alphas[-1]
        family.direction("004-l2sp-forgetting", "document 004", f"L2-SP (α = {a:g}) keeps more of the source task "
                         "than full fine-tuning (tuning runs)", m.source[("tune", "l2sp", a)],
                         m.source[("tune", "full_ft", 1.0)], unit="points")
        if ("tune", "l2", a) in m.source:
            family.direction("ch3-l2sp-vs-l2", "Li et al. 2018", f"at the same strength (α = {a:g}), L2-SP "
                             "keeps more of the source task than L2 toward 0", m.source[("tune", "l2sp", a)],
                             m.source[("tune", "l2", a)], unit="points")
    cells: list[tuple[str, int, Any, Any, list[Any]]] = []
    for n in sizes:  # new classes: every strategy against full fine-tuning
        cmp.claim(e1("full_ft", n), e1("scratch", n), f"001-exp1-scratch-needs-more-{n}",
                  f"new classes, {n} labels: full fine-tuning beats scratch (scratch needs more data)", "document 001")
        cells.append(_cell(cmp, f"new classes ({target})", n, [e1(k, n) for k in STRATEGIES],
                           e1("full_ft", n), f"new-{n}"))
    for a in angles:  # rotations: every strategy against scratch, DANN against the source model
        for k in shift_names:
            if k == "full_ft":  # seed 001's advice: try transfer first, it often beats scratch
                cmp.claim(e3(k, a, n3), e3("scratch", a, n3), f"001-transfer-first-rot{a}",
                          f"rotated {a}°, {n3} labels: full fine-tuning beats scratch", "document 001")
            elif k != "scratch":
                cmp.claim(e3(k, a, n3), e3("scratch", a, n3), f"ch3-shift-{_slug(k)}-vs-scratch-{a}",
                          f"rotated {a}°, {n3} labels: {LABELS[k]} beats scratch")
        cells.append(_cell(cmp, f"rotated {a}°", n3, [e3(k, a, n3) for k in shift_names],
                           e3("scratch", a, n3), f"rot{a}-{n3}"))
        if e3("dann", a, 0) in m.test:
            cmp.claim(e3("dann", a, 0), e3("source_only", a, 0), f"003-dann-invariant-{a}",
                      f"rotated {a}°, no labels: DANN beats the source model", "document 003")
            cells.append((f"rotated {a}°", 0, e3("dann", a, 0), e3("source_only", a, 0), [e3("dann", a, 0)]))
    if ("uci", "dann", 0) in m.test:  # MNIST → UCI digits: a real cross-dataset shift
        u = lambda k, n: ("uci", k, n)  # noqa: E731
        cmp.claim(u("dann", 0), u("source_only", 0), "003-dann-invariant-uci",
                  "MNIST → UCI digits, no labels: DANN beats the source model", "document 003")
        for k in shift_names:
            if k != "scratch":
                cmp.claim(u(k, n3), u("scratch", n3), f"ch3-uci-{_slug(k)}-vs-scratch",
                          f"MNIST → UCI digits, {n3} labels: {LABELS[k]} beats scratch")
        if u("pixels", n3) in m.test:
            cmp.claim(u("full_ft", n3), u("pixels", n3), "ch3-uci-fullft-vs-pixels",
                      f"MNIST → UCI digits, {n3} labels: full fine-tuning beats {NAMES3['pixels']}")
        cells.append(_cell(cmp, "UCI digits", n3, [u(k, n3) for k in shift_names], u("scratch", n3), f"uci-{n3}"))
        cells.append(("UCI digits", 0, u("dann", 0), u("source_only", 0), [u("dann", 0)]))
    big = sizes[-1]  # "lots of data: fine-tuning performs best" is fine-tuning against every alternative
    for k in STRATEGIES:
        key, ft = e1(k, big), e1("full_ft", big)
        if k in ("full_ft", "feature_extraction") or key not in m.test:
            continue
        of, same = (cmp.pairs[(ft, key)], True) if (ft, key) in cmp.pairs else (cmp.pairs[(key, ft)], False)
        family.mirror(f"001-decision-ft-lots-vs-{_slug(k)}", of, "document 001", f"more data ({big} labels; the "
                      f"document says 1000+): full fine-tuning beats {LABELS[k]}", flip=not same)
    for n in sizes:  # the baselines, on the same labelled images as the strategies
        for b in ("pixels", "random"):
            if e1(b, n) in m.test:
                cmp.claim(e1("full_ft", n), e1(b, n), f"ch3-baseline-fullft-vs-{BASELINE_SLUGS[b]}-{n}",
                          f"new classes, {n} labels: full fine-tuning beats {NAMES3[b]}")
    for key in [k for k in m.test if k[0] == "upper" and k[1] == "scratch"]:  # one a run; its labels vary by preset
        if ("upper", "pixels", key[2]) in m.test:
            cmp.claim(key, ("upper", "pixels", key[2]), "ch3-baseline-upper-vs-pixels",
                      f"new classes, {key[2]} labels: the upper reference (scratch, trained to convergence) "
                      f"beats {NAMES3['pixels']}")
    return ChapterClaims(cmp, cells, {"moderate": moderate, "small_shift": a1, "mid": mid})


def _cell(cmp: Comparisons, row: str, col: int, keys: Sequence[Any], anchor: Any,
          slug: str) -> tuple[str, int, Any, Any, list[Any]]:
    """A labelled cell: the leader on validation, and every strategy that ran compared with the
    cell's fixed reference ``anchor`` (ids name the pair, never the outcome)."""
    keys = [k for k in keys if k in cmp.m.test]
    if len(keys) < 2 or anchor not in keys:
        raise ParameterError(f"cell {row!r} with {col} labels: fewer than two strategies ran, or not "
                             f"the reference {_name(anchor)}")
    lead = max(keys, key=lambda k: np.mean(cmp.m.val[k]))
    others = [k for k in keys if k != anchor]
    for k in others:
        cmp.claim(k, anchor, f"ch3-{slug.split('-')[0]}-{col}-{_slug(k)}-vs-{_slug(anchor)}"
                  if slug.startswith("new") else f"ch3-shift-{_slug(k)}-vs-scratch-{slug[3:].split('-')[0]}",
                  f"{row}, {col} labels: {_name(k)} {'beat' if _name(k) in PLURAL else 'beats'} {_name(anchor)}")
    return row, col, lead, anchor, others


PLURAL = ("adapters",)  # strategy names that take a plural verb ("adapters beat …")


def decision(cc: ChapterClaims, verdicts: dict[str, Verdict]) -> list[Cell]:
    """The chart's cells: the validation leader, and each strategy against the cell's reference."""
    out = []
    for row, col, lead, anchor, others in cc.cells:
        vs = {k: cc.comparisons.verdict(verdicts, k, anchor) for k in others if k != anchor}
        better = [_name(k) for k, v in vs.items() if v.a_greater is True]
        worse = [_name(k) for k, v in vs.items() if v.a_greater is False]
        undecided = [_name(k) for k, v in vs.items() if v.verdict == "not shown"]
        equivalent = [_name(k) for k, v in vs.items() if v.verdict == "equivalent"]
        ids = [cc.comparisons.pairs.get((k, anchor)) or cc.comparisons.pairs[(anchor, k)] for k in vs]
        out.append(Cell(row, col, _name(lead), cc.comparisons.m.spread(lead), _name(anchor),
                        vs.get(lead), better, worse, undecided, ids, equivalent))
    return out


def _prose(name: str) -> str:
    """A strategy's label as it reads inside a sentence ("training from scratch")."""
    return "training from scratch" if name == LABELS["scratch"] else name


def cell_sentence(cell: Cell) -> str:
    """One generated sentence per chart cell: who leads on validation, how it stands against the
    cell's reference, and which strategies are shown better or worse than the reference.

    Without labels (column 0) nothing is chosen on validation: DANN is the pre-set challenger.
    """
    where = f"{cell.row}, {cell.col} label{'s' if cell.col != 1 else ''}"
    v = cell.lead_vs_anchor
    if cell.col == 0:
        return f"{where}: {compare(v, cell.leader, 'the ' + _prose(cell.anchor))}."
    lead = (f"{_prose(cell.leader)} leads on validation" + (" and is the reference" if v is None else
            f"; against the reference it {compare(v, '', _prose(cell.anchor)).strip()}"))
    parts = [f"Shown better than {_prose(cell.anchor)}: {', '.join(map(_prose, cell.better))}" if cell.better
             else f"None shown better than {_prose(cell.anchor)}"]
    if cell.worse:
        parts.append(f"shown worse: {', '.join(map(_prose, cell.worse))}")
    if cell.equivalent:
        parts.append(f"equivalent within ±1 point: {', '.join(map(_prose, cell.equivalent))}")
    if cell.undecided:
        parts.append(f"undecided: {', '.join(map(_prose, cell.undecided))}")
    return f"{where}: {lead}. " + "; ".join(parts) + "."


def lots_words(lots: Sequence[Verdict], n: int) -> str:
    """Document 001's "lots of data: fine-tuning" rule in words, from its comparisons of full
    fine-tuning with each alternative at ``n`` labels: which it is shown to beat, which it trails,
    which it equals within the margin, how many stay undecided (chapter 3)."""
    name = lambda v: v.text.rsplit("full fine-tuning beats ", 1)[-1]  # noqa: E731
    group = {k: [v for v in lots if v.verdict == k] for k in ("supported", "contradicted", "equivalent", "not shown")}
    listed = lambda vs: ", ".join(f"{name(v)} ({v.evidence()})" for v in vs)  # noqa: E731
    beat = group["supported"]
    text = (f"full fine-tuning is shown to beat {len(beat)} of the {len(lots)} alternatives at {n} labels"
            + (f": {listed(beat)}" if beat else ""))
    if group["contradicted"]:
        text += f"; it trails {listed(group['contradicted'])}"
    if group["equivalent"]:
        text += f"; it is equivalent to {listed(group['equivalent'])}"
    if group["not shown"]:
        text += (f"; against the other {len(group['not shown'])} "
                 f"({', '.join(name(v) for v in group['not shown'])}) the difference is undecided")
    return text


def prose(m: Measurements, cc: ChapterClaims, verdicts: dict[str, Verdict], cells: Sequence[Cell], *,
          grids: dict[str, Sequence[float]], chosen: dict[str, float], sizes: Sequence[int],
          angles: Sequence[int], n3: int, shift_names: Sequence[str]) -> dict[str, Any]:
    """Every number and every outcome-dependent phrase of chapter 3's text, ready to glue.

    Phrases are generated from the verdicts, so the text cannot contradict its own tables.
    """
    from IPython.display import Markdown

    md = lambda text: Markdown(text)  # noqa: E731
    cmp = cc.comparisons
    e1 = lambda k, n: ("exp1", k, n)  # noqa: E731
    e3 = lambda k, a, n: ("exp3", k, a, n)  # noqa: E731
    mean = lambda k, what="test": float(np.mean(getattr(m, what)[k]))  # noqa: E731
    edges = edge_notes(grids, chosen)
    out: dict[str, Any] = {f"chosen_{k}": md(f"{chosen[k]:g}") for k in grids}
    out["edges"] = md("; ".join(edges) if edges else "none of them")
    out["n_edges"] = len(edges)
    if ("tune", "full_ft", 0.01) in m.test and ("tune", "full_ft", 1.0) in m.test:
        out["exp2_low"], out["exp2_high"] = mean(("tune", "full_ft", 0.01)), mean(("tune", "full_ft", 1.0))
    v2 = verdicts["001-exp2-smaller-rate"]
    out["exp2_smaller"] = md(compare(v2, "m = 0.1", "m = 1"))
    out["exp2_advice"] = md(v2.says("holds here", "fails here", "is neither confirmed nor refuted here",
                                    "is neither confirmed nor refuted here"))
    out["exp1_cells"] = md("\n".join(f"- {cell_sentence(c)}" for c in cells if c.row.startswith("new")))
    out["ft_vs_scratch"] = md("; ".join(
        f"with {n} labels, {cmp.words(verdicts, e1('full_ft', n), e1('scratch', n))}" for n in sizes))
    for tag, n in (("small", sizes[0]), ("large", sizes[-1])):
        out[f"n_{tag}"] = n
        for k in ("feature_extraction", "scratch", "full_ft"):
            out[f"{_slug(k)}_{tag}"] = mean(e1(k, n))
    trio = ("feature_extraction", "full_ft", "scratch")
    worst = {k: min(mean(e1(k, n)) for n in sizes) for k in trio}  # the mean at its worst size
    out["exp1_verdicts"] = md(", ".join(f"{LABELS[k]} {worst[k]:.1f} % at its worst size" for k in trio))
    out["moderate"] = cc.doc["moderate"]
    mod = cc.doc["moderate"]
    out["gradual_moderate"] = md(cmp.words(verdicts, e1("gradual", mod), e1("full_ft", mod)))
    lots = [verdicts[c] for c in verdicts if c.startswith("001-decision-ft-lots-")]
    out["ft_lots"] = md(lots_words(lots, sizes[-1]))
    lines = []
    for a in angles:
        parts = [cmp.words(verdicts, e3(k, a, n3), e3("scratch", a, n3)) for k in shift_names if k != "scratch"]
        lines.append(f"- at {a}°: " + "; ".join(parts) + ".")
    out["shift_lines"] = md("\n".join(lines))
    out["n3"] = n3
    a0, a1, mid = angles[0], cc.doc["small_shift"], cc.doc["mid"]
    out["a0"], out["a1"], out["mid"] = a0, a1, mid
    v = verdicts["001-exp3-small-shift"]
    out["small_shift"] = md(v.says(f"gains more at {a1}° than at {a0}°", f"gains less at {a1}° than at {a0}°",
                                   f"gains as much at {a1}° as at {a0}° (equivalent within ±1 point)",
                                   f"is not shown to gain more or less at {a1}° than at {a0}°")
                            + f" ({v.evidence()})")
    out["fe_similar"] = md(cmp.words(verdicts, e3("feature_extraction", a0, n3), e3("full_ft", a0, n3)))
    outcome = {"supported": "a gain", "contradicted": "a loss", "equivalent": "equivalent within ±1 point",
               "not shown": "undecided"}
    dann_at = [a for a in angles if e3("dann", a, 0) in m.test]
    targets = [(f"rotated {a}°", e3("dann", a, 0), e3("source_only", a, 0)) for a in dann_at]
    if ("uci", "dann", 0) in m.test:
        targets.append(("UCI digits", ("uci", "dann", 0), ("uci", "source_only", 0)))
    out["dann_lines"] = md("; ".join(
        f"{name}: {mean(src):.1f} → {mean(d):.1f} % ({outcome[cmp.beats(verdicts, d, src)]})"
        for name, d, src in targets))
    out["dann_wins"] = sum(cmp.beats(verdicts, d, src) == "supported" for _, d, src in targets)
    out["dann_losses"] = sum(cmp.beats(verdicts, d, src) == "contradicted" for _, d, src in targets)
    out["n_angles"] = len(targets)
    last = angles[-1]
    if f"ch3-cnn-gain-rot{last}-vs-rot{a0}" in verdicts:
        out["cnn_gain"] = md(compare(verdicts[f"ch3-cnn-gain-rot{last}-vs-rot{a0}"],
                                     f"the gain at {last}°", f"the gain at {a0}°"))
    out.update(uci_prose(m, cmp, verdicts, n3, shift_names))
    out["decision_lines"] = md("\n".join(f"- {cell_sentence(c)}" for c in cells if not c.row.startswith("new")))
    src_after = {k: mean(e1(k, sizes[-1]), "source") for k in STRATEGIES[1:] if e1(k, sizes[-1]) in m.source}
    most, least = min(src_after, key=src_after.get), max(src_after, key=src_after.get)
    out["forget_most"], out["forget_least"] = md(LABELS[most]), md(LABELS[least])
    out["forget_most_acc"], out["forget_least_acc"] = src_after[most], src_after[least]
    out["forget_note"] = forget_note(m, src_after, sizes[-1])
    out.update(baseline_prose(m, cmp, verdicts, sizes))
    counts = {k: 0 for k in ("supported", "contradicted", "equivalent", "not shown")}
    for v in verdicts.values():
        counts[v.verdict] += 1
    out["n_claims"] = len(verdicts)
    out["n_supported"] = counts.get("supported", 0)
    out["n_contradicted"] = counts.get("contradicted", 0)
    out["n_not_shown"] = counts.get("not shown", 0)
    out["n_equivalent"] = counts.get("equivalent", 0)
    return out


GANIN2016 = {  # Ganin et al. (2016), JMLR 17(59), Table 2: MNIST → MNIST-M, target test accuracy (%)
    "source only": 52.25, "DANN": 76.66, "train on target": 95.96}


def uci_prose(m: Measurements, cmp: Comparisons, verdicts: dict[str, Verdict], n3: int,
              shift_names: Sequence[str]) -> dict[str, Any]:
    """The MNIST → UCI digits sentences and numbers (empty if that experiment did not run)."""
    from IPython.display import Markdown

    u = lambda k, n: ("uci", k, n)  # noqa: E731
    if u("dann", 0) not in m.test:
        return {}
    out: dict[str, Any] = {f"uci_{_slug(k)}": float(np.mean(m.test[u(k, 0)])) for k in ("source_only", "dann")}
    out |= {f"uci_{_slug(k)}_n": float(np.mean(m.test[u(k, n3)])) for k in [*shift_names, "pixels"]
            if u(k, n3) in m.test}
    out["uci_dann_vs_source"] = Markdown(compare(cmp.verdict(verdicts, u("dann", 0), u("source_only", 0)),
                                                 "DANN", "the source model as is"))
    parts = [cmp.words(verdicts, u(k, n3), u("scratch", n3)) for k in shift_names if k != "scratch"]
    if u("pixels", n3) in m.test:
        parts.append(cmp.words(verdicts, u("full_ft", n3), u("pixels", n3)))
    out["uci_labelled"] = Markdown("; ".join(parts))
    out |= {f"ganin_{k.replace(' ', '').lower()}": v for k, v in GANIN2016.items()}
    out["ganin_gain"] = GANIN2016["DANN"] - GANIN2016["source only"]
    return out


def baseline_prose(m: Measurements, cmp: Comparisons, verdicts: dict[str, Verdict],
                   sizes: Sequence[int]) -> dict[str, Any]:
    """The baselines' sentences: per size, full fine-tuning against the pixel model and the
    random network (verdicts), and which strategies' mean test accuracy lies below the pixel
    model's (a description of the means, not a test); the upper reference against the pixel model."""
    from IPython.display import Markdown

    e1 = lambda k, n: ("exp1", k, n)  # noqa: E731
    lines, below_all = [], set(STRATEGIES)
    for n in sizes:
        if e1("pixels", n) not in m.test:
            return {}
        parts = [cmp.words(verdicts, e1("full_ft", n), e1(b, n)) for b in ("pixels", "random")
                 if e1(b, n) in m.test]
        px = float(np.mean(m.test[e1("pixels", n)]))
        below = [k for k in STRATEGIES if e1(k, n) in m.test and np.mean(m.test[e1(k, n)]) < px]
        below_all &= set(below)
        means = {k: float(np.mean(m.test[e1(k, n)])) for k in below}
        d = 2 if any(f"{v:.1f}" == f"{px:.1f}" for v in means.values()) else 1  # never "90.9 below 90.9"
        lines.append(f"- {n} labels: " + "; ".join(parts) + ". Mean test accuracy below the pixel model's "
                     f"{px:.{d}f} %: " + (", ".join(f"{_prose(LABELS[k])} ({means[k]:.{d}f} %)" for k in below)
                                        if below else "none") + ".")
    out: dict[str, Any] = {"baseline_lines": Markdown("\n".join(lines)),
                           "below_pixels_everywhere": Markdown(", ".join(_prose(LABELS[k]) for k in STRATEGIES
                                                                         if k in below_all) or "none"),
                           "n_below_pixels_everywhere": len(below_all)}
    ups = [k for k in m.test if k[0] == "upper" and k[1] == "scratch" and ("upper", "pixels", k[2]) in m.test]
    if ups:
        k = ups[0]
        out["upper_vs_pixels"] = Markdown(compare(cmp.verdict(verdicts, k, ("upper", "pixels", k[2])),
                                                  "the upper reference", "the pixel model"))
        out["upper_pixels"] = float(np.mean(m.test[("upper", "pixels", k[2])]))
    return out


LI2018 = {  # Li et al. (2018), arXiv v2, Table 2: target accuracy (%) with L2 and with L2-SP (ResNet-101)
    "MIT Indoors 67": (79.28, 84.18), "Stanford Dogs": (81.77, 84.84),
    "Caltech256-30": (82.15, 85.31), "Caltech256-60": (86.22, 89.66)}


def frontier_figure(m: Measurements, grids: dict[str, Sequence[float]],
                    published: dict[str, tuple[float, float]] | None = None, prefix: str = "tune") -> plt.Figure:
    """Left: target test accuracy against source accuracy kept, one point per α of L2 and of
    L2-SP (mean ± std over seeds; α = 0 is plain fine-tuning for both). Right: Li et al.'s
    published target accuracies with L2 and L2-SP (they report no source accuracy)."""
    published = LI2018 if published is None else published
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    for i, name in enumerate(("l2", "l2sp")):
        keys = [(prefix, name, a) for a in grids.get(name, []) if (prefix, name, a) in m.source]
        if not keys:
            continue
        src = [spread(m.source[k]) for k in keys]
        tgt = [spread(m.test[k]) for k in keys]
        ax1.errorbar([s.mean for s in src], [t.mean for t in tgt], xerr=[s.std for s in src],
                     yerr=[t.std for t in tgt], marker="os"[i], capsize=3, color=PALETTE[i], label=LABELS[name])
        for k, s_, t_ in zip(keys, src, tgt):
            ax1.annotate(f"α={k[2]:g}", (s_.mean, t_.mean), textcoords="offset points", xytext=(4, 4 - 12 * i),
                         fontsize=9, color=PALETTE[i])
    ax1.set_xlabel("source-task accuracy kept (%)")
    ax1.set_ylabel("target test accuracy (%)")
    ax1.set_title("this chapter: MLP on digits", fontsize=10)
    ax1.legend(fontsize=9)
    names = list(published)
    y = np.arange(len(names))
    ax2.scatter([published[n][0] for n in names], y, marker="o", color=PALETTE[0], label=LABELS["l2"])
    ax2.scatter([published[n][1] for n in names], y, marker="s", color=PALETTE[1], label=LABELS["l2sp"])
    for j, n in enumerate(names):
        ax2.plot(published[n], [j, j], color="0.6", lw=1, zorder=0)
    ax2.set_yticks(y, names, fontsize=9)
    ax2.set_xlabel("target accuracy (%)")
    ax2.set_title("Li et al. (2018): ResNet-101, published", fontsize=10)
    ax2.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig


def curve_figure(histories: Sequence[History], line: float | None = None, label: str = "") -> plt.Figure:
    """Validation accuracy (%) per epoch of each replica, its kept epoch marked; ``line``: a
    horizontal reference (e.g. the pixel model's test accuracy)."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, h in enumerate(histories):
        acc = [100 * a for a in h.val_acc]
        ax.plot(range(1, len(acc) + 1), acc, color=PALETTE[0], alpha=0.6, lw=1)
        ax.plot(h.best_epoch, acc[h.best_epoch - 1], "o", color=PALETTE[0], ms=4)
    if line is not None:
        ax.axhline(line, color="k", ls=":", lw=1, label=label)
        ax.legend(fontsize=9, loc="lower right")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    fig.tight_layout()
    return fig


def references_list(m: Measurements, upper_key: Any) -> list[dict[str, Any]]:
    """The results file's ``references``: ``{name, measured, target, source}``: the upper
    reference against the pixel model on its images, and Li et al.'s L2 / L2-SP comparison
    beside the measured L2 / L2-SP at their selected α (targets from a different network and
    data: a scale, not a claim)."""
    out = []
    px = ("upper", "pixels", upper_key[2])
    if upper_key in m.test:
        out.append({"name": f"upper reference (scratch, {upper_key[2]} labels)", "measured": list(m.test[upper_key]),
                    "target": float(np.mean(m.test[px])) if px in m.test else None,
                    "source": f"logistic regression on pixels, same {upper_key[2]} images (this run)"})
    ganin = "Ganin et al. (2016), JMLR 17(59), Table 2, MNIST → MNIST-M (another pair: a scale, not a target)"
    for k, ref in ((("uci", "source_only", 0), "source only"), (("uci", "dann", 0), "DANN")):
        if k in m.test:
            out.append({"name": f"{'DANN' if ref == 'DANN' else 'source model'}, MNIST → UCI digits (LeNet-5)",
                        "measured": list(m.test[k]), "target": GANIN2016[ref], "source": ganin})
    for j, name in enumerate(("l2", "l2sp")):
        ks = [k for k in m.test if k[:2] == ("exp1", name)]
        if ks:
            k = max(ks, key=lambda k: k[2])  # the most labels
            out.append({"name": f"{LABELS[name]} ({k[2]} labels, selected α)", "measured": list(m.test[k]),
                        "target": {d: v[j] for d, v in LI2018.items()},
                        "source": "Li et al. (2018), arXiv v2, Table 2 (ResNet-101; target accuracy, %)"})
    return out


# --- small builders for the page ------------------------------------------------------------------

def glue_figure(name: str, fig: plt.Figure) -> None:
    """Glue ``fig`` for a ``{glue:figure}`` block and close it (so it is not shown twice)."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)


def digits_figure(source_x: torch.Tensor, target_x: torch.Tensor, angles: Sequence[float]) -> plt.Figure:
    """Row 1: six source and six target digits; then twelve source digits per rotation angle."""
    from xferutils.core.data import rotate
    from xferutils.pages.plotting import show_digits

    rows = [torch.cat([source_x[:6], target_x[:6]])] + [rotate(source_x[:12], a) for a in angles]
    return show_digits(torch.cat(rows), ncols=12)


def backbone_table(names: Sequence[str], n_classes: int) -> str:
    """Trainable and total parameters of each torchvision backbone and strategy (random weights)."""
    from xferutils.core.models import TV_STRATEGIES, create_transfer_model

    rows = []
    for name in names:
        for strategy in TV_STRATEGIES:
            model = create_transfer_model(name, n_classes, strategy, weights=None)
            rows.append([name, strategy, f"{count_parameters(model, True):,}", f"{count_parameters(model):,}"])
            del model
    return markdown_table(["backbone", "strategy", "trainable", "total"], rows, "llrr")


def imagenet_features_accuracy(train: Split, test: Split, n_classes: int, weights: str,
                               size: int = 64, epochs: int = 50) -> float:
    """Frozen ImageNet ResNet-18 features of digits (upsampled, three channels) and a new head
    trained on them; the test accuracy (chapter 3's optional example; the weights file must exist)."""
    from xferutils.core.models import create_transfer_model
    from xferutils.core.train import evaluate, fit

    model = create_transfer_model("resnet18", n_classes, "feature_extraction", weights=weights)
    imgs = lambda s: nn.functional.interpolate(s.x.reshape(-1, 1, 28, 28), size=size).repeat(1, 3, 1, 1)  # noqa: E731
    backbone = model.backbone.eval()
    with torch.no_grad():
        ftr, fte = backbone(imgs(train)), backbone(imgs(test))
    fit(model.head, Split(ftr, train.y), epochs=epochs, lr=1e-3, batch_size=100)
    return evaluate(model.head, Split(fte, test.y))
