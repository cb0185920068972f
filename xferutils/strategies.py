"""Fine-tuning strategies behind one interface, and domain-adversarial training (chapter 3).

A :class:`Strategy` says *how* a pretrained network is reused. :func:`prepare` turns it and a
pretrained :class:`~xferutils.models.MLP` into a :class:`Prepared` model: the network to train,
its learning-rate multipliers (``0`` freezes a parameter; a function of the epoch for gradual
unfreezing) and an optional penalty (L2-SP). :func:`run_jobs` trains many (strategy, seed, data)
jobs as vectorized replicas with :func:`xferutils.ensemble.fit_replicas`: jobs whose networks
have the same shapes train together, each replica with its own multipliers.

The strategies (seeds 003 and 004): ``scratch`` (no transfer), ``feature_extraction`` (frozen
backbone, new head), ``full_ft`` (all layers, pretrained ones at ``feature_mult`` × the rate),
``discriminative`` (η_l = η·γ^(L−l)), ``gradual`` (top layer first, one more every
``unfreeze_every`` epochs), ``l2sp`` (penalty (α/2)‖θ−θ_pre‖² on the pretrained layers),
``lora`` and ``adapters`` (:mod:`xferutils.peft`). :class:`DANN` adds a domain head behind a
gradient-reversal layer for unlabelled target data; :func:`create_transfer_model` is seed 003's
torchvision-backbone helper, corrected.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .config import ParameterError, check_choice, check_float, check_int, check_seeds
from .data import Split
from .domain import dann_lambda, grad_reverse
from .ensemble import Replicas, fit_replicas
from .metrics import Spread, spread
from .models import MLP, count_parameters
from .peft import add_adapters, add_lora
from .train import History

STRATEGIES = ("scratch", "feature_extraction", "full_ft", "discriminative", "gradual", "l2sp",
              "lora", "adapters")
LABELS = {"scratch": "from scratch", "feature_extraction": "feature extraction",
          "full_ft": "full fine-tuning", "discriminative": "discriminative FT",
          "gradual": "gradual unfreezing", "l2sp": "L2-SP", "lora": "LoRA", "adapters": "adapters"}


@dataclass(frozen=True)
class Strategy:
    """How to reuse a pretrained network; the knobs only matter to the strategy that uses them."""

    name: str
    feature_mult: float = 1.0   # full_ft: rate multiplier of the pretrained layers (0 freezes)
    gamma: float = 0.5          # discriminative: layer-wise decay, η_l = η·γ^(L−l)
    unfreeze_every: int = 0     # gradual: epochs per stage; 0 spreads the L stages over the run
    l2sp: float = 0.01          # l2sp: α of (α/2)‖θ−θ_pre‖²
    rank: int = 4               # lora: rank r
    alpha: float = 8.0          # lora: scale α (the update is (α/r)·BA)
    bottleneck: int = 16        # adapters: bottleneck width

    def __post_init__(self) -> None:
        check_choice("strategy", self.name, STRATEGIES)
        check_float("feature_mult", self.feature_mult, 0.0)
        check_float("gamma", self.gamma, 0.0, 1.0)
        check_int("unfreeze_every", self.unfreeze_every, 0)
        check_float("l2sp", self.l2sp, 0.0)
        check_int("rank", self.rank, 1)
        check_float("alpha", self.alpha, 0.0)
        check_int("bottleneck", self.bottleneck, 1)

    @property
    def label(self) -> str:
        return LABELS[self.name]


Multipliers = Callable[[int], dict[str, float]]


@dataclass
class Prepared:
    """A network ready to train with a strategy: multipliers per parameter name and epoch."""

    strategy: Strategy
    model: nn.Module
    multipliers: Multipliers
    penalty: Callable[[dict, dict], torch.Tensor] | None = None

    @property
    def trainable(self) -> int:
        """Parameters the strategy ever updates (gradual unfreezing: all, stage by stage)."""
        return count_parameters(self.model, trainable_only=True)

    @property
    def total(self) -> int:
        return count_parameters(self.model)

    def signature(self) -> tuple:
        """Jobs with equal signatures can train as replicas of one vectorized model."""
        shapes = tuple((n, tuple(p.shape)) for n, p in self.model.named_parameters())
        pen = (self.strategy.name, self.strategy.l2sp) if self.penalty is not None else None
        return shapes, pen


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


def l2sp_penalty(alpha: float, prefix: str = "features.") -> Callable[[dict, dict], torch.Tensor]:
    """(α/2)·‖θ − θ_pre‖² over the pretrained parameters (names starting with ``prefix``)."""
    def penalty(params: dict, init: dict) -> torch.Tensor:
        return 0.5 * alpha * sum(((params[n] - init[n]) ** 2).sum() for n in params if n.startswith(prefix))
    return penalty


def _reset(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model


def prepare(strategy: Strategy | str, source: MLP, n_classes: int, seed: int = 0,
            epochs: int | None = None) -> Prepared:
    """A copy of the pretrained ``source`` set up for ``strategy``, with a new head (seeded).

    ``scratch`` re-initialises every layer (same architecture, no transfer). Frozen parameters
    get ``requires_grad=False`` *and* multiplier 0, so the counts and the training agree.
    ``epochs`` (the length of the run) sets gradual unfreezing's automatic stage length
    ``max(1, epochs // L)``, so that all L layers train in the last stage.
    """
    if isinstance(strategy, str):
        strategy = Strategy(strategy)
    check_int("n_classes", n_classes, 1)
    torch.manual_seed(check_int("seed", seed, 0))
    model = copy.deepcopy(source).requires_grad_(True)
    if strategy.name == "scratch":
        _reset(model)
    model.head = nn.Linear(model.feature_dim, n_classes)
    name, penalty = strategy.name, None
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
        every = strategy.unfreeze_every or max(1, (epochs or 1) // len(layer_names(model)))
        schedule = gradual_multipliers(model, every)
    elif name == "l2sp":
        penalty = l2sp_penalty(strategy.l2sp)
    elif name == "lora":
        add_lora(model, strategy.rank, strategy.alpha)
    elif name == "adapters":
        add_adapters(model, strategy.bottleneck)
    frozen = {n: 0.0 for n, p in model.named_parameters() if not p.requires_grad}
    names = [n for n, _ in model.named_parameters()]

    def multipliers(epoch: int) -> dict[str, float]:
        out = dict.fromkeys(names, 1.0)
        out.update(static)
        out.update(schedule(epoch) if schedule is not None else {})
        out.update(frozen)
        return out
    return Prepared(strategy, model, multipliers, penalty)


# --- many jobs as vectorized replicas -----------------------------------------------------------

@dataclass
class Job:
    """One training run: a strategy on one seed's source model and target data."""

    key: Any                    # what the result is filed under, e.g. "lora" or ("full_ft", 30)
    strategy: Strategy
    source: MLP
    train: Split
    seed: int
    test: Split
    val: Split | None = None
    lr: float | None = None     # None: the rate given to run_jobs


@dataclass
class JobResult:
    key: Any
    seed: int
    test_acc: float
    val_acc: float | None       # final accuracy on the job's validation split
    history: History            # per-epoch loss (and validation accuracy with track_val)
    trainable: int
    total: int


def epochs_for(n: int, batch_size: int, steps: int) -> int:
    """Epochs that give about ``steps`` optimizer steps on ``n`` samples (the last batch is dropped)."""
    per_epoch = max(1, n // min(batch_size, n))
    return max(1, math.ceil(check_int("steps", steps, 1) / per_epoch))


def run_jobs(jobs: Sequence[Job], n_classes: int, *, steps: int, lr: float = 1e-3,
             batch_size: int = 64, min_epochs: int = 1, track_val: bool = False,
             amp: bool = False) -> list[JobResult]:
    """Train every job; jobs with the same network shapes and data size train as one replica set.

    Each group runs ``epochs_for(n, batch_size, steps)`` epochs (at least ``min_epochs``) with
    :func:`~xferutils.ensemble.fit_replicas`, replica j with the multipliers of its own strategy
    and batch order ``1000·j + seed`` (batch seeds must be distinct within a call). Jobs with a
    ``val`` split report their final validation accuracy; ``track_val`` also records it every epoch.
    """
    if not jobs:
        raise ParameterError("jobs is empty; give at least one Job")
    check_seeds("seeds", sorted({j.seed for j in jobs}))
    epochs_of = [max(min_epochs, epochs_for(len(j.train), batch_size, steps)) for j in jobs]
    preps = [prepare(j.strategy, j.source, n_classes, j.seed, e) for j, e in zip(jobs, epochs_of)]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (job, prep) in enumerate(zip(jobs, preps)):
        groups[(prep.signature(), len(job.train), job.val is not None and len(job.val))].append(i)
    out: list[JobResult | None] = [None] * len(jobs)
    for idx in groups.values():
        members = [preps[i] for i in idx]
        epochs = epochs_of[idx[0]]
        vals = [jobs[i].val for i in idx]
        rep = fit_replicas([p.model for p in members], [jobs[i].train for i in idx],
                           [1000 * j + jobs[i].seed for j, i in enumerate(idx)],
                           epochs=epochs, lr=[jobs[i].lr or lr for i in idx], batch_size=batch_size,
                           lr_mult=merge_multipliers(members), penalty=members[0].penalty,
                           val=vals if track_val and vals[0] is not None else None, amp=amp)
        accs = rep.evaluate([jobs[i].test for i in idx])
        val_accs = rep.evaluate(vals) if vals[0] is not None else [None] * len(idx)
        for j, i in enumerate(idx):
            out[i] = JobResult(jobs[i].key, jobs[i].seed, accs[j], val_accs[j], rep.history[j],
                               preps[i].trainable, preps[i].total)
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


def summarise(results: Sequence[JobResult]) -> dict[Any, Spread]:
    """Test accuracy over seeds for every job key."""
    by_key: dict[Any, list[float]] = defaultdict(list)
    for r in results:
        by_key[r.key].append(r.test_acc)
    return {k: spread(v) for k, v in by_key.items()}


def epochs_to_fraction(curve: Sequence[float], fraction: float = 0.9) -> int:
    """First epoch (1-based) at which ``curve`` reaches ``fraction`` of its final value (seed 004)."""
    target = check_float("fraction", fraction, 0.0, 1.0) * curve[-1]
    return next(i + 1 for i, v in enumerate(curve) if v >= target)


# --- domain-adversarial training (DANN) ----------------------------------------------------------

class DANN(nn.Module):
    """A feature extractor with a class head and a domain head behind gradient reversal.

    ``forward(x)`` on images (n, 784) gives class logits, so evaluation is as for any model.
    On a row ``[source image | target image | λ]`` (n, 2·784+1) it returns the class
    logits of the source images and the domain logits of all 2n images, computed on features
    passed through :func:`~xferutils.domain.grad_reverse` with that λ.
    """

    def __init__(self, net: MLP, hidden: int = 64) -> None:
        super().__init__()
        self.features, self.head = net.features, net.head
        self.in_dim = next(m for m in net.features.modules() if isinstance(m, nn.Linear)).in_features
        self.domain = nn.Sequential(nn.Linear(net.feature_dim, check_int("hidden", hidden, 1)),
                                    nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        d = self.in_dim
        if x.shape[-1] == d:
            return self.head(self.features(x))
        if x.shape[-1] != 2 * d + 1:
            raise ParameterError(f"DANN input must have {d} or {2 * d + 1} columns, got {x.shape[-1]}")
        xs, xt, lam = x[:, :d], x[:, d:2 * d], x[:, 2 * d:]
        feats = self.features(torch.cat([xs, xt]))
        logits = self.head(feats[:len(xs)])
        domain = self.domain(grad_reverse(feats, torch.cat([lam, lam]))).squeeze(-1)
        return logits, domain


def dann_split(source: Split, target_x: torch.Tensor, seed: int, lam_max: float = 1.0) -> Split:
    """Training rows ``[source image | a random target image | λ_max]`` with the source labels.

    The last column carries the replica's largest reversal weight, so that replicas with
    different λ_max train together; :class:`DANNObjective` scales it by the ramp.
    """
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    check_float("lam_max", lam_max, 0.0)
    idx = torch.randint(len(target_x), (len(source),), generator=gen).to(target_x.device)
    lam = source.x.new_full((len(source), 1), lam_max)
    return Split(torch.cat([source.x, target_x[idx], lam], dim=1), source.y)


def _sample_rows(data: Split, n: int, seed: int) -> Split:
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].to(data.y.device)
    return Split(data.x[idx], data.y[idx])


class DANNObjective:
    """Source cross-entropy plus the domain loss, with λ ramped over ``total_steps`` (Ganin et al.).

    λ at progress p is λ_max · (2 / (1 + e^(−γp)) − 1), with λ_max read from the rows of
    :func:`dann_split`. The domain head descends the domain loss; the gradient reversal makes
    the features ascend it (scaled by λ), which pushes source and target features together.
    """

    def __init__(self, total_steps: int, gamma: float = 10.0) -> None:
        self.total_steps = check_int("total_steps", total_steps, 1)
        self.gamma = check_float("gamma", gamma, 0.0)
        self.step = 0

    def ramp(self) -> float:
        return dann_lambda(min(1.0, self.step / self.total_steps), self.gamma)

    def __call__(self, fmodel: Callable, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        ramp = self.ramp()
        self.step += 1
        logits, domain = fmodel(torch.cat([xb[:, :-1], xb[:, -1:] * ramp], dim=1))
        n = yb.shape[0]
        labels = torch.cat([domain.new_zeros(n), domain.new_ones(n)])
        return F.cross_entropy(logits, yb) + F.binary_cross_entropy_with_logits(domain, labels)


def fit_dann(sources: Sequence[MLP], source: Split, target_x: Sequence[torch.Tensor],
             seeds: Sequence[int], *, steps: int, lr: float = 1e-3, batch_size: int = 128,
             lam_max: float | Sequence[float] = 1.0, hidden: int = 64) -> Replicas:
    """DANN from pretrained source models (their own heads kept), one replica per entry.

    Replica j starts from ``sources[j]`` (domain head seeded by ``seeds[j]``), adapts to the
    unlabelled ``target_x[j]`` with weight ``lam_max[j]`` (or one for all), and runs about
    ``steps`` optimizer steps: with fewer than one epoch's worth, each replica trains on its
    own seeded slice of ``source``. Seeds may repeat across replicas (e.g. one per target).
    """
    k = len(seeds)
    lams = [lam_max] * k if isinstance(lam_max, (int, float)) else list(lam_max)
    if not (len(sources) == len(target_x) == len(lams) == k) or k == 0:
        raise ParameterError("give one source model, one target set, one seed (and one lam_max) per replica")
    seeds = [check_int(f"seeds[{j}]", s, 0) for j, s in enumerate(seeds)]
    models = []
    for net, s in zip(sources, seeds):
        torch.manual_seed(s)
        models.append(DANN(copy.deepcopy(net), hidden))
    n = min(len(source), check_int("steps", steps, 1) * batch_size)
    train = [dann_split(_sample_rows(source, n, s) if n < len(source) else source, t, s, lam)
             for s, t, lam in zip(seeds, target_x, lams)]
    epochs = epochs_for(n, batch_size, steps)
    total = epochs * (n // min(batch_size, n))
    return fit_replicas(models, train, [1000 * j + s for j, s in enumerate(seeds)], epochs=epochs, lr=lr,
                        batch_size=batch_size, objective=DANNObjective(total))


# --- torchvision backbones (seed 003, corrected) --------------------------------------------------

BACKBONES = ("resnet18", "resnet50", "vit_b_16")
TV_STRATEGIES = ("feature_extraction", "fine_tuning")


def create_transfer_model(name: str, num_classes: int, strategy: str = "feature_extraction",
                          weights: str | None = None) -> nn.Sequential:
    """A torchvision backbone with a new ``head``; ``weights=None`` builds it randomly initialised.

    ``feature_extraction`` freezes the whole backbone; ``fine_tuning`` also trains its last
    stage (ResNet ``layer4``; ViT's last encoder block and final norm). Seed 003 matched ViT's
    last block as ``'encoder.layers.11'``, a name torchvision does not use
    (``encoder.layers.encoder_layer_11``), so its ViT "fine-tuning" trained only the head; it
    also used the removed ``pretrained=True`` argument. ``weights`` is a torchvision weights
    name such as ``"DEFAULT"`` (downloaded on first use).
    """
    check_choice("name", name, BACKBONES)
    check_int("num_classes", num_classes, 1)
    check_choice("strategy", strategy, TV_STRATEGIES)
    import torchvision.models as tvm

    backbone = getattr(tvm, name)(weights=weights)
    if name.startswith("resnet"):
        dim, top = backbone.fc.in_features, ("layer4.",)
        backbone.fc = nn.Identity()
    else:
        dim = backbone.heads.head.in_features
        top = (f"encoder.layers.encoder_layer_{len(backbone.encoder.layers) - 1}.", "encoder.ln.")
        backbone.heads = nn.Identity()
    for pname, p in backbone.named_parameters():
        p.requires_grad_(strategy == "fine_tuning" and pname.startswith(top))
    return nn.Sequential(OrderedDict(backbone=backbone, head=nn.Linear(dim, num_classes)))


__all__ = ["STRATEGIES", "LABELS", "Strategy", "Prepared", "prepare", "layer_names",
           "discriminative_multipliers", "gradual_multipliers", "unfrozen_layers", "l2sp_penalty",
           "Job", "JobResult", "run_jobs", "merge_multipliers", "summarise", "epochs_for",
           "epochs_to_fraction", "DANN", "dann_split", "DANNObjective", "fit_dann",
           "BACKBONES", "TV_STRATEGIES", "create_transfer_model"]
