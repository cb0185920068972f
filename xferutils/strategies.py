"""Fine-tuning strategies behind one interface, trained to convergence (chapter 3).

A :class:`Strategy` says *how* a pretrained network is reused. :func:`prepare` turns it and a
pretrained :class:`~xferutils.models.MLP` into a :class:`Prepared` model: the network to train
and its learning-rate multipliers (``0`` freezes a parameter; a function of the epoch for
gradual unfreezing). Every prepared network carries two frozen scalars, the strengths of an
L2-SP pull toward the pretrained weights and of a plain L2 pull toward zero, so that one
penalty (:func:`weight_penalty`) serves every replica and all same-shaped strategies train
together. :func:`run_jobs` trains many (strategy, seed, data) jobs as vectorized replicas with
early stopping on each job's validation split and reports the budget each one used.

The strategies (documents 003 and 004, Li et al. 2018): ``scratch``, ``feature_extraction``,
``full_ft`` (pretrained layers at ``feature_mult`` × the rate), ``discriminative``
(η_l = η·γ^(L−l)), ``gradual`` (top layer first, one more every ``unfreeze_every`` epochs),
``l2`` ((α/2)‖θ‖²), ``l2sp`` ((α/2)‖θ−θ_pre‖²), ``lora`` and ``adapters`` (:mod:`xferutils.peft`).
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

from .claims import Family, Verdict
from .config import ParameterError, check_choice, check_digits, check_float, check_int, check_seeds
from .data import Split
from .ensemble import fit_replicas
from .metrics import Spread, spread
from .models import MLP, count_parameters
from .peft import add_adapters, add_lora
from .plotting import PALETTE, markdown_table
from .train import History

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
    gamma: float = 0.5          # discriminative: layer-wise decay, η_l = η·γ^(L−l)
    unfreeze_every: int = 1     # gradual: epochs per stage
    l2: float = 0.01            # l2: α of (α/2)‖θ‖² on the pretrained layers
    l2sp: float = 0.01          # l2sp: α of (α/2)‖θ−θ_pre‖²
    rank: int = 4               # lora: rank r
    alpha: float = 8.0          # lora: scale α (the update is (α/r)·BA)
    bottleneck: int = 16        # adapters: bottleneck width

    def __post_init__(self) -> None:
        check_choice("strategy", self.name, STRATEGIES)
        check_float("feature_mult", self.feature_mult, 0.0, 100.0)
        check_float("gamma", self.gamma, 0.0, 4.0)
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


Multipliers = Callable[[int], dict[str, float]]


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


def layer_names(model: nn.Module) -> list[str]:
    """Module names of the linear layers l = 1..L, input to output (the head is layer L)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def discriminative_multipliers(model: nn.Module, gamma: float) -> dict[str, float]:
    """γ^(L−l) for the weight and bias of linear layer l (seed 004's layer-wise decay)."""
    layers = layer_names(model)
    big_l = len(layers)
    return {f"{name}.{kind}": gamma ** (big_l - l)
            for l, name in enumerate(layers, start=1) for kind in ("weight", "bias")}


def unfrozen_layers(epoch: int, n_layers: int, every: int) -> int:
    """k(t): how many layers, counted from the top, train in ``epoch`` (1, then one more per stage)."""
    return min(n_layers, 1 + epoch // every)


def gradual_multipliers(model: nn.Module, every: int) -> Multipliers:
    """Gradual unfreezing: in epoch t only layers l > L − k(t) train (the others have multiplier 0)."""
    layers = layer_names(model)
    big_l = len(layers)

    def at(epoch: int) -> dict[str, float]:
        k = unfrozen_layers(epoch, big_l, every)
        return {f"{name}.{kind}": float(l > big_l - k)
                for l, name in enumerate(layers, start=1) for kind in ("weight", "bias")}
    return at


def schedule_epochs(strategy: Strategy, model: nn.Module) -> int:
    """Epochs before a strategy's schedule is complete: L·every for gradual unfreezing, else 0."""
    return strategy.unfreeze_every * len(layer_names(model)) if strategy.name == "gradual" else 0


def frozen_bottom_multipliers(model: nn.Module, k: int) -> dict[str, float]:
    """Multiplier 0 for the first ``k`` linear layers, 1 for the others (Yosinski et al.'s
    "transfer the first k layers and freeze them"; the reference solution of an exercise)."""
    layers = layer_names(model)
    check_int("k", k, 0, len(layers))
    return {f"{name}.{kind}": float(l > k) for l, name in enumerate(layers, start=1)
            for kind in ("weight", "bias")}


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


def epochs_to_fraction(curve: Sequence[float], fraction: float = 0.9) -> int:
    """First epoch (1-based) at which ``curve`` reaches ``fraction`` of its final value (document 004)."""
    target = check_float("fraction", fraction, 0.0, 1.0) * curve[-1]
    return next(i + 1 for i, v in enumerate(curve) if v >= target)


# --- measurements: per-seed values by key ---------------------------------------------------------

@dataclass
class Measurements:
    """Per-seed values (in seed order) by job key: test and validation accuracy in %, budget in
    passes over the labelled images, source-task accuracy in % after training (forgetting)."""

    test: dict[Any, list[float]] = field(default_factory=dict)
    val: dict[Any, list[float]] = field(default_factory=dict)
    epochs: dict[Any, list[float]] = field(default_factory=dict)
    source: dict[Any, list[float]] = field(default_factory=dict)

    def add(self, results: Sequence[JobResult], rename: Callable[[Any], Any] = lambda k: k) -> None:
        """File every result under its (renamed) key, in seed order."""
        for r in sorted(results, key=lambda r: r.seed):
            k = rename(r.key)
            self.test.setdefault(k, []).append(100 * r.test_acc)
            self.val.setdefault(k, []).append(100 * r.val_acc)
            self.epochs.setdefault(k, []).append(r.epochs)
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
                "source_task": plain(self.source)}


GRIDS = {  # each strategy's hyperparameter grid (chapter 3, book and full presets)
    "full_ft": [0.01, 0.1, 0.5, 1.0, 2.0],
    "discriminative": [round(1 / 2.6, 3), 0.6, 0.8, 1.0, 1.25, 1.6],
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
    from .data import sample

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
        for d in (m.test, m.val, m.epochs, m.source):
            if src in d:
                d[("exp1", k, n)] = list(d[src])


def validated(m: Measurements, name: str, grid: Sequence[float], prefix: str = "tune") -> float:
    """The grid value of ``name`` with the best mean validation accuracy."""
    return max(grid, key=lambda v: np.mean(m.val[(prefix, name, v)]))


def interior(grid: Sequence[float], value: float) -> bool:
    """Whether ``value`` lies strictly inside ``grid`` (not at its smallest or largest value)."""
    return min(grid) < value < max(grid)


NATURAL_EDGES = {  # grid ends past which a knob loses its meaning: a choice there is an answer
    ("l2", "low"): "α cannot be negative, so no penalty is a genuine answer",
    ("l2sp", "low"): "α cannot be negative, so no penalty is a genuine answer",
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

def say(v: Verdict, a: str, b: str) -> str:
    """"``a`` beats / trails / is indistinguishable from ``b``" for a direction verdict."""
    if v.verdict == "supported":
        verb = "beats" if v.expect == "greater" else "trails"
    elif v.verdict == "contradicted":
        verb = "trails" if v.expect == "greater" else "beats"
    else:
        verb = "is indistinguishable from"
    return f"{a} {verb} {b}"


def _slug(key: Any) -> str:
    name = key[1] if isinstance(key, tuple) else key
    return str(name).replace("_", "")


NAMES3 = {"source_only": "source model as is", "dann": "DANN"}


def _name(key: Any) -> str:
    name = key[1] if isinstance(key, tuple) else key
    return LABELS.get(name) or NAMES3.get(name, str(name))


@dataclass
class Cell:
    """One cell of the decision chart: its leader and the strategies it is not shown to beat."""

    row: str
    col: int
    leader: str
    ties: list[str]
    acc: Spread
    claim_ids: list[str]


def claims_table(verdicts: Sequence[Verdict], prefix: str = "") -> str:
    """Markdown: id, claim, verdict, n, mean difference and its 95 % interval (points)."""
    rows = []
    for v in verdicts:
        if not v.id.startswith(prefix):
            continue
        lo, hi = v.ci
        ci = "–" if math.isnan(lo) else f"[{lo:+.1f}, {hi:+.1f}]"
        rows.append([f"`{v.id}`", v.text, v.label, v.n, f"{v.difference:+.1f}", ci])
    return markdown_table(["id", "claim", "verdict", "n", "difference", "95 % interval"], rows, "lllrrr")


# --- tables ------------------------------------------------------------------------------------

def counts_table(counts: dict[str, tuple[int, int]]) -> str:
    """Trainable parameters per strategy: count and share of the network."""
    rows = [[LABELS[k], f"{t:,}", f"{100 * t / n:.1f} %"] for k, (t, n) in counts.items()]
    return markdown_table(["strategy", "trainable parameters", "share of the network"], rows, "lrr")


def tuning_table(m: Measurements, grids: dict[str, Sequence[float]], chosen: dict[str, float]) -> str:
    """Validation and test accuracy (%) over each strategy's grid; the validated value in bold."""
    rows = []
    for name, grid in grids.items():
        for v in grid:
            k = ("tune", name, v)
            mark = "**" if v == chosen[name] else ""
            rows.append([LABELS[name], f"{mark}{SYMBOLS[name]} = {v:.3g}{mark}", m.fmt(k, "val"),
                         m.fmt(k), f"{np.mean(m.epochs[k]):.0f}"])
    return markdown_table(["strategy", "setting", "validation (%)", "test (%)", "passes"], rows, "llrrr")


def size_table(m: Measurements, sizes: Sequence[int], what: str = "test", fmt: str = "spread") -> str:
    """Rows: strategies; columns: labelled target images (≤ 6 sizes keeps it within 7 columns)."""
    rows = []
    for name in STRATEGIES:
        cells = []
        for n in sizes:
            vals = getattr(m, what).get(("exp1", name, n))
            cells.append("–" if vals is None else
                         spread(vals).fmt(1.0, 1) if fmt == "spread" else f"{np.mean(vals):.0f}")
        rows.append([LABELS[name], *cells])
    return markdown_table(["strategy", *[f"{n} labels" for n in sizes]], rows, "l" + "r" * len(sizes))


def shift_table(m: Measurements, angles: Sequence[int], n: int, names: Sequence[str],
                what: str = "test") -> str:
    """Rows: rotation angles; columns: strategies with ``n`` labels, then (test accuracy only)
    the source model and DANN without labels. ``what="epochs"``: mean passes used."""
    cols = [("exp3", k, n) for k in names]
    cols += [("exp3", k, 0) for k in ("source_only", "dann")] if what == "test" else []
    head = [f"{_name(k)}" + (f" ({n})" if k[2] else " (0)") for k in cols]
    cell = (lambda k: m.fmt(k)) if what == "test" else (lambda k: f"{np.mean(m.epochs[k]):.0f}")
    rows = [[f"{a}°", *[cell((c[0], c[1], a, c[2])) for c in cols]] for a in angles]
    return markdown_table(["rotation", *head], rows, "r" * (len(cols) + 1))


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
    from .plotting import data_ticks  # written out: 50, 100, 500

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
        s = [spread(m.test[("exp3", k, a, nn_)]) for a in angles]
        ax1.errorbar(angles, [v.mean for v in s], yerr=[v.std for v in s], marker="o", capsize=3,
                     color=PALETTE[i], ls=":" if nn_ == 0 else "-", label=f"{_name(k)} ({nn_})")
    for i, k in enumerate(names):
        if k == "scratch":
            continue
        gain = [np.mean(np.subtract(m.test[("exp3", k, a, n)], m.test[("exp3", "scratch", a, n)]))
                for a in angles]
        ax2.plot(angles, gain, "o-", color=PALETTE[i], label=f"{_name(k)} − scratch")
    gain = [np.mean(np.subtract(m.test[("exp3", "dann", a, 0)], m.test[("exp3", "source_only", a, 0)]))
            for a in angles]
    ax2.plot(angles, gain, "d:", color=PALETTE[len(keys) - 1], label="DANN − source model")
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


def cell_lines(cell: Cell, most: int = 2) -> list[str]:
    """A decision-chart cell's text, one short line each: the leader, its accuracy, and up to
    ``most`` strategies it is not shown to beat (≈), then how many more."""
    extra = [f"(+{len(cell.ties) - most} more)"] if len(cell.ties) > most else []
    return [cell.leader, f"{cell.acc.mean:.1f} %", *[f"≈ {t}" for t in cell.ties[:most]], *extra]


def decision_figure(cells: Sequence[Cell]) -> plt.Figure:
    """The decision chart: per setting (row) and label count (column), the validation leader,
    its test accuracy, and the strategies it is not shown to beat (≈)."""
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
           "epochs_to_fraction", "Measurements", "validated", "interior", "say", "Cell",
           "claims_table", "counts_table", "tuning_table", "size_table", "shift_table",
           "seed001_exp1_table", "seed001_exp2_table", "seed001_exp3_table", "forgetting_table",
           "size_figure", "shift_figure", "decision_figure", "peft_diagram", "Comparisons",
           "ChapterClaims", "SEED001", "chapter_claims", "decision", "prose", "cell_sentence",
           "glue_figure", "digits_figure", "backbone_table", "imagenet_features_accuracy"]


# --- the chapter's claims -------------------------------------------------------------------------

class Comparisons:
    """A :class:`~xferutils.claims.Family` of paired comparisons in which each pair of methods is
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

    def beats(self, verdicts: dict[str, Verdict], a: Any, b: Any) -> str:
        """"supported" if a beats b, "contradicted" if b beats a, else "not shown"."""
        if (a, b) in self.pairs:
            return verdicts[self.pairs[(a, b)]].verdict
        v = verdicts[self.pairs[(b, a)]].verdict
        return {"supported": "contradicted", "contradicted": "supported"}.get(v, v)

    def words(self, verdicts: dict[str, Verdict], a: Any, b: Any) -> str:
        """"A beats / trails / is indistinguishable from B" for the pair's verdict."""
        verb = {"supported": "beats", "contradicted": "trails"}.get(self.beats(verdicts, a, b),
                                                                   "is indistinguishable from")
        return f"{_prose(_name(a))} {verb} {_prose(_name(b))}"


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


def chapter_claims(m: Measurements, *, sizes: Sequence[int], tune_n: int, angles: Sequence[int],
                   n3: int, shift_names: Sequence[str], target: str) -> ChapterClaims:
    """Register seed 001's claims ("001-…") and the book's comparisons ("ch3-…") in one family.

    Decision cells: new classes at every size (all strategies), same classes at every angle with
    ``n3`` labels (``shift_names``), and without labels (DANN against the source model).
    """
    fam = Family("ch3")
    cmp = Comparisons(fam, m)
    e1 = lambda k, n: ("exp1", k, n)  # noqa: E731
    e3 = lambda k, a, n: ("exp3", k, a, n)  # noqa: E731
    trio = ("feature_extraction", "full_ft", "scratch")
    for k in trio:  # seed 001, experiment 1: 1.00 for every strategy and size
        worst = np.min([m.test[e1(k, n)] for n in sizes], axis=0)
        fam.threshold(f"001-exp1-perfect-{_slug(k)}", "seed 001",
                      f"experiment 1: {LABELS[k]} reaches 1.00 at every size", worst, 99.0, unit="%")
    for mult, claimed in SEED001["exp2"].items():  # seed 001, experiment 2: chance at every m
        if ("tune", "full_ft", mult) in m.test:
            fam.value(f"001-exp2-m{mult:g}", "seed 001", f"experiment 2: accuracy {claimed:.2f} at m = {mult:g}",
                      m.test[("tune", "full_ft", mult)], 100 * claimed, tol=5.0, unit="%")
    cmp.claim(("tune", "full_ft", 0.1), ("tune", "full_ft", 1.0), "001-exp2-smaller-rate",
              "a much smaller rate for the pretrained layers (m = 0.1) beats m = 1", "seed 001")
    a0, a1, mid = angles[0], angles[1], angles[len(angles) // 2]
    fam.value("001-exp3-chance", "seed 001", f"experiment 3: transfer accuracy 0.20 without shift",
              m.test[e3("full_ft", a0, n3)], 20.0, tol=5.0, unit="%")
    gain = lambda a: np.subtract(m.test[e3("full_ft", a, n3)], m.test[e3("scratch", a, n3)])  # noqa: E731
    fam.direction("001-exp3-small-shift", "seed 001",
                  f"transfer gains more at a small shift ({a1}°) than at none", gain(a1), gain(a0), unit="points")
    cmp.claim(e3("feature_extraction", a0, n3), e3("full_ft", a0, n3), "001-decision-fe-similar",
              "little data, similar domains: feature extraction beats fine-tuning", "seed 001")
    cmp.claim(e3("dann", mid, 0), e3("source_only", mid, 0), "001-decision-da-shift",
              f"different domains: domain adaptation beats the source model ({mid}°)", "seed 001")
    moderate = max([n for n in sizes if n <= 500] or sizes[:1])
    cmp.claim(e1("gradual", moderate), e1("full_ft", moderate), "001-decision-gradual-moderate",
              f"moderate data ({moderate} labels): gradual unfreezing beats full fine-tuning", "seed 001")
    cmp.claim(e1("full_ft", sizes[-1]), e1("feature_extraction", sizes[-1]), "001-decision-ft-lots",
              f"more data ({sizes[-1]} labels): full fine-tuning beats feature extraction", "seed 001")
    last = angles[-1]
    fam.value("001-large-shift-no-gain", "seed 001", f"the largest shift ({last}°): full fine-tuning's gain "
              "over scratch disappears (within ±2 points)", gain(last), 0.0, tol=2.0, unit="points")
    cmp.claim(e3("scratch", last, n3), e3("feature_extraction", last, n3), "001-negative-transfer",
              f"very different domains ({last}°): training from scratch beats feature extraction "
              "(negative transfer)", "seed 001")
    cmp.claim(e1("feature_extraction", sizes[0]), e1("full_ft", sizes[0]), "004-small-data-freeze",
              f"small target data ({sizes[0]} labels): freezing the features beats fine-tuning them", "seed 004")
    if len(sizes) > 1:
        fam.direction("003-fewer-data", "seed 003", f"transfer reduces the data needed: fine-tuning with "
                      f"{sizes[0]} labels beats scratch with {sizes[1]}", m.test[e1("full_ft", sizes[0])],
                      m.test[e1("scratch", sizes[1])], unit="points")
    if e1("l2sp", sizes[-1]) in m.source and e1("full_ft", sizes[-1]) in m.source:
        fam.direction("004-l2sp-forgetting", "seed 004", f"L2-SP keeps more of the source task than full "
                      f"fine-tuning ({sizes[-1]} labels)", m.source[e1("l2sp", sizes[-1])],
                      m.source[e1("full_ft", sizes[-1])], unit="points")
    cells: list[tuple[str, int, Any, list[Any]]] = []
    for n in sizes:  # the book's comparisons, cell by cell of the decision chart
        cmp.claim(e1("full_ft", n), e1("scratch", n), f"001-exp1-scratch-needs-more-{n}",
                  f"new classes, {n} labels: full fine-tuning beats scratch (scratch needs more data)", "seed 001")
        cells.append(_cell(cmp, f"new classes ({target})", n, [e1(k, n) for k in STRATEGIES], f"new-{n}"))
    for a in angles:
        for k in shift_names:
            if k == "full_ft":  # seed 001's advice: try transfer first, it often beats scratch
                cmp.claim(e3(k, a, n3), e3("scratch", a, n3), f"001-transfer-first-rot{a}",
                          f"rotated {a}°, {n3} labels: full fine-tuning beats scratch", "seed 001")
            elif k != "scratch":
                cmp.claim(e3(k, a, n3), e3("scratch", a, n3), f"ch3-shift-{_slug(k)}-vs-scratch-{a}",
                          f"rotated {a}°, {n3} labels: {LABELS[k]} beats scratch")
        cells.append(_cell(cmp, f"rotated {a}°", n3, [e3(k, a, n3) for k in shift_names], f"rot{a}-{n3}"))
        cmp.claim(e3("dann", a, 0), e3("source_only", a, 0), f"003-dann-invariant-{a}",
                  f"rotated {a}°, no labels: DANN beats the source model", "seed 003")
        cells.append((f"rotated {a}°", 0, e3("dann", a, 0), [e3("source_only", a, 0)]))
    return ChapterClaims(cmp, cells, {"moderate": moderate, "small_shift": a1, "mid": mid})


def _cell(cmp: Comparisons, row: str, col: int, keys: Sequence[Any], slug: str) -> tuple[str, int, Any, list[Any]]:
    """A labelled cell: the leader on validation, compared with every other strategy that ran."""
    keys = [k for k in keys if k in cmp.m.test]
    if len(keys) < 2:
        raise ParameterError(f"cell {row!r} with {col} labels: fewer than two strategies ran")
    lead = max(keys, key=lambda k: np.mean(cmp.m.val[k]))
    others = [k for k in keys if k != lead]
    for k in others:
        cmp.claim(lead, k, f"ch3-cell-{slug}-{_slug(lead)}-vs-{_slug(k)}", f"{row}, {col} labels: "
                  f"{_name(lead)} beats {_name(k)}")
    return row, col, lead, others


def decision(cc: ChapterClaims, verdicts: dict[str, Verdict]) -> list[Cell]:
    """The chart's cells: each leader with the strategies it is *not* shown to beat (≈)."""
    out = []
    for row, col, lead, others in cc.cells:
        ties = [_name(k) for k in others if cc.comparisons.beats(verdicts, lead, k) != "supported"]
        ids = [cc.comparisons.pairs.get((lead, k)) or cc.comparisons.pairs[(k, lead)] for k in others]
        out.append(Cell(row, col, _name(lead), ties, cc.comparisons.m.spread(lead), ids))
    return out


def _prose(name: str) -> str:
    """A strategy's label as it reads inside a sentence ("training from scratch")."""
    return "training from scratch" if name == LABELS["scratch"] else name


def cell_sentence(cell: Cell) -> str:
    """One generated sentence per chart cell: who leads, and whom it is not shown to beat.

    Without labels (column 0) nothing is chosen on validation: DANN is the pre-set challenger.
    """
    where = f"{cell.row}, {cell.col} label{'s' if cell.col != 1 else ''}"
    ties = ", ".join(_prose(t) for t in cell.ties)
    if cell.col == 0:
        verb = "is not shown to beat" if cell.ties else "beats"
        return f"{where}: {cell.leader} {verb} the source model as is."
    if not cell.ties:
        return f"{where}: {_prose(cell.leader)} leads and beats every other strategy that ran."
    return f"{where}: {_prose(cell.leader)} leads on validation but is not shown to beat {ties}."


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
    out["exp2_smaller"] = md(say(verdicts["001-exp2-smaller-rate"], "m = 0.1", "m = 1"))
    out["exp1_cells"] = md("\n".join(f"- {cell_sentence(c)}" for c in cells if c.row.startswith("new")))
    out["ft_vs_scratch"] = md("; ".join(
        f"with {n} labels, {cmp.words(verdicts, e1('full_ft', n), e1('scratch', n))}" for n in sizes))
    for tag, n in (("small", sizes[0]), ("large", sizes[-1])):
        out[f"n_{tag}"] = n
        for k in ("feature_extraction", "scratch", "full_ft"):
            out[f"{_slug(k)}_{tag}"] = mean(e1(k, n))
    perfect = [verdicts[f"001-exp1-perfect-{_slug(k)}"] for k in ("feature_extraction", "full_ft", "scratch")]
    out["exp1_verdicts"] = md(", ".join(f"{LABELS[k]}: *{v.label}*" for k, v in
                                        zip(("feature_extraction", "full_ft", "scratch"), perfect)))
    out["moderate"] = cc.doc["moderate"]
    mod = cc.doc["moderate"]
    out["gradual_moderate"] = md(cmp.words(verdicts, e1("gradual", mod), e1("full_ft", mod)))
    out["ft_lots"] = md(cmp.words(verdicts, e1("full_ft", sizes[-1]), e1("feature_extraction", sizes[-1])))
    lines = []
    for a in angles:
        parts = [cmp.words(verdicts, e3(k, a, n3), e3("scratch", a, n3)) for k in shift_names if k != "scratch"]
        lines.append(f"- at {a}°: " + "; ".join(parts) + ".")
    out["shift_lines"] = md("\n".join(lines))
    out["n3"] = n3
    a0, a1, mid = angles[0], cc.doc["small_shift"], cc.doc["mid"]
    out["a0"], out["a1"], out["mid"] = a0, a1, mid
    out["small_shift"] = md(verdicts["001-exp3-small-shift"].says(
        f"gains more at {a1}° than at {a0}°", f"gains less at {a1}° than at {a0}°",
        f"gains about as much at {a1}° as at {a0}° (the difference is not shown)"))
    out["fe_similar"] = md(cmp.words(verdicts, e3("feature_extraction", a0, n3), e3("full_ft", a0, n3)))
    outcome = {"supported": "a gain", "contradicted": "a loss", "not shown": "not shown"}
    out["dann_lines"] = md("; ".join(
        f"{a}°: {mean(e3('source_only', a, 0)):.1f} → {mean(e3('dann', a, 0)):.1f} % "
        f"({outcome[cmp.beats(verdicts, e3('dann', a, 0), e3('source_only', a, 0))]})" for a in angles))
    out["dann_wins"] = sum(cmp.beats(verdicts, e3("dann", a, 0), e3("source_only", a, 0)) == "supported"
                           for a in angles)
    out["dann_losses"] = sum(cmp.beats(verdicts, e3("dann", a, 0), e3("source_only", a, 0)) == "contradicted"
                             for a in angles)
    out["n_angles"] = len(angles)
    out["decision_lines"] = md("\n".join(f"- {cell_sentence(c)}" for c in cells if not c.row.startswith("new")))
    src_after = {k: mean(e1(k, sizes[-1]), "source") for k in STRATEGIES[1:] if e1(k, sizes[-1]) in m.source}
    most, least = min(src_after, key=src_after.get), max(src_after, key=src_after.get)
    out["forget_most"], out["forget_least"] = md(LABELS[most]), md(LABELS[least])
    out["forget_most_acc"], out["forget_least_acc"] = src_after[most], src_after[least]
    counts = {v.verdict: 0 for v in verdicts.values()}
    for v in verdicts.values():
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    out["n_claims"] = len(verdicts)
    out["n_supported"] = counts.get("supported", 0)
    out["n_contradicted"] = counts.get("contradicted", 0)
    out["n_not_shown"] = counts.get("not shown", 0)
    return out


# --- small builders for the page ------------------------------------------------------------------

def glue_figure(name: str, fig: plt.Figure) -> None:
    """Glue ``fig`` for a ``{glue:figure}`` block and close it (so it is not shown twice)."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)


def digits_figure(source_x: torch.Tensor, target_x: torch.Tensor, angles: Sequence[float]) -> plt.Figure:
    """Row 1: six source and six target digits; then twelve source digits per rotation angle."""
    from .data import rotate
    from .plotting import show_digits

    rows = [torch.cat([source_x[:6], target_x[:6]])] + [rotate(source_x[:12], a) for a in angles]
    return show_digits(torch.cat(rows), ncols=12)


def backbone_table(names: Sequence[str], n_classes: int) -> str:
    """Trainable and total parameters of each torchvision backbone and strategy (random weights)."""
    from .models import TV_STRATEGIES, create_transfer_model

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
    from .models import create_transfer_model
    from .train import evaluate, fit

    model = create_transfer_model("resnet18", n_classes, "feature_extraction", weights=weights)
    imgs = lambda s: nn.functional.interpolate(s.x.reshape(-1, 1, 28, 28), size=size).repeat(1, 3, 1, 1)  # noqa: E731
    backbone = model.backbone.eval()
    with torch.no_grad():
        ftr, fte = backbone(imgs(train)), backbone(imgs(test))
    fit(model.head, Split(ftr, train.y), epochs=epochs, lr=1e-3, batch_size=100)
    return evaluate(model.head, Split(fte, test.y))
