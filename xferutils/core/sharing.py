"""Shared layers between two networks trained on different digits: chapter 4's method, which
chapter 5 reuses for feature bridging with few labels.

Test cases (:class:`Case`), disjoint image pools, the base networks (kept in the store) and
their frozen features; the shared network and each approach's objective (bridging, alignment,
adversarial, contrastive, prototypes, memory); training one approach on every seed at once
(:func:`train_approach`, early stopping on validation features); transfer and retention
metrics and document 000's success criteria; the references (a linear probe, Network 1 from
scratch, a few-shot scratch network) and the pixel baselines; each preset's pool sizes and
recipes. The chapter's orchestration, claims, tables and figures are in
:mod:`xferutils.chapters.shared_layers`."""
from __future__ import annotations
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
import torch
from torch import nn
from torch.nn import functional as F
from xferutils.core.config import (ParameterError, check_choice, check_digits, check_float, check_int, check_seeds)
from xferutils.core.data import Split, per_class, relabel
from xferutils.core.domain import grad_reverse
from xferutils.core.ensemble import Replicas, fit_replicas, replicate
from xferutils.core.models import MLP, count_parameters, deep_nn, embed, wide_nn
from xferutils.core.store import trained
from xferutils.pages.timing import timed
from xferutils.core.train import History


TEST_CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "small": ((0, 1, 2), (2, 3, 4), 3),
    "medium": ((0, 1, 2, 3, 4), (2, 3, 4, 5, 6), 5),
    "large": ((0, 1, 2, 3, 4, 5, 6, 7), (2, 3, 4, 5, 6, 7, 8, 9), 8),
}


APPROACHES = ("none", "bridging", "alignment", "adversarial", "contrastive", "prototypes", "memory")


ZERO_SHOT = ("alignment", "adversarial", "contrastive", "prototypes", "memory")


CRITERIA = {"transfer": 0.80, "retention": 0.90, "isolation": 0.10}  # document 000's success criteria

# document 000's four success criteria (chapters 4 and 5): the claim's words and a table's column
CRITERION_TEXT = {"transfer": "transfer > 80 %", "retention": "retention > 90 %",
                  "isolation": "untransferred accuracy < 10 %", "faster": "faster than scratch"}
CRITERION_HEADER = {"transfer": "transfer > 80", "retention": "retention > 90", "isolation": "isolation < 10",
                    "faster": "faster than scratch"}


BRIDGING_CLAIM = 0.94  # document 000: feature bridging reaches 94 % on the transfer digit


@dataclass(frozen=True)
class Case:
    """A test case: Network 1's digits, the donor's digits and the digit to transfer."""

    name: str
    digits1: tuple[int, ...]
    digits2: tuple[int, ...]
    transfer: int

    @property
    def shared(self) -> tuple[int, ...]:
        """Digits both networks know (the only images seen through both)."""
        return tuple(sorted(set(self.digits1) & set(self.digits2)))

    @property
    def untransferred(self) -> tuple[int, ...]:
        """Donor digits that are neither Network 1's nor the transfer digit (isolation)."""
        return tuple(sorted(set(self.digits2) - set(self.digits1) - {self.transfer}))

    @property
    def classes(self) -> tuple[int, ...]:
        """The shared classifier's outputs: every digit either network knows."""
        return tuple(sorted(set(self.digits1) | set(self.digits2)))

    def __str__(self) -> str:
        return f"{self.name}: {list(self.digits1)} -> {list(self.digits2)}, transfer {self.transfer}"


def make_case(name: str | None = None, digits1: Sequence[int] | None = None,
              digits2: Sequence[int] | None = None, transfer: int | None = None) -> Case:
    """A named case (``small``, ``medium``, ``large``) or one given by its digits, validated.

    The transfer digit must be known to the donor and unknown to Network 1; the networks must
    share at least one digit (to align on), and the donor must know at least one digit besides
    the transfer digit that Network 1 does not (to measure isolation).
    """
    if digits1 is None and digits2 is None and transfer is None:
        name = check_choice("test_case", name, list(TEST_CASES))
        digits1, digits2, transfer = TEST_CASES[name]
    elif digits1 is None or digits2 is None or transfer is None:
        raise ParameterError("give digits1, digits2 and transfer_digit together (or a test_case name)")
    d1 = tuple(check_digits("digits1", digits1))
    d2 = tuple(check_digits("digits2", digits2))
    t = check_int("transfer_digit", transfer, 0, 9)
    if t not in d2:
        raise ParameterError(f"transfer_digit={t} is unknown to the donor; choose one of digits2={list(d2)}")
    if t in d1:
        raise ParameterError(f"transfer_digit={t} is already known to Network 1 (digits1={list(d1)}); "
                             f"choose one of {sorted(set(d2) - set(d1))}")
    if len(d1) < 2 or len(d2) < 2:
        raise ParameterError("digits1 and digits2 need at least two digits each (a classifier)")
    if not set(d1) & set(d2):
        raise ParameterError(f"digits1={list(d1)} and digits2={list(d2)} share no digit; "
                             "alignment needs at least one shared digit")
    case = Case(name or "custom", d1, d2, t)
    if not case.untransferred:
        raise ParameterError(f"digits2={list(d2)} has no digit besides transfer_digit={t} that "
                             "Network 1 lacks; isolation would be undefined")
    return case


def pool(data: Split, digits: Sequence[int], n_per_class: int, seed: int) -> Split:
    """``n_per_class`` images of each of ``digits`` (labels stay digits), drawn by ``seed``."""
    n_per_class = check_int("n_per_class", n_per_class, 1)
    return per_class(data, dict.fromkeys(digits, n_per_class), seed)


def disjoint_pools(data: Split, digits: Sequence[int], sizes: Sequence[int], seed: int) -> list[Split]:
    """Pools of ``sizes[i]`` images per digit that share no image (bases, shared layers, validation)."""
    sizes = [check_int("n_per_class", s, 1) for s in sizes]
    drawn = pool(data, digits, sum(sizes), seed)
    rank = torch.zeros(len(drawn), dtype=torch.long, device=drawn.y.device)
    for d in digits:
        where = torch.nonzero(drawn.y == d).flatten()
        rank[where] = torch.arange(len(where), device=where.device)
    out, lo = [], 0
    for s in sizes:
        keep = (rank >= lo) & (rank < lo + s)
        out.append(Split(drawn.x[keep], drawn.y[keep]))
        lo += s
    return out


def case_tensor(classes: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """``classes`` as a tensor on the device of ``like``."""
    return torch.tensor(list(classes), device=like.device)


def keep_digits(data: Split, digits: Sequence[int]) -> Split:
    """The images of ``digits``, labels relabelled to 0..len(digits)-1."""
    lab = relabel(data.y, list(digits))
    return Split(data.x[lab >= 0], lab[lab >= 0])


def he_init(model: nn.Module) -> nn.Module:
    """He et al. (2015)'s initialisation for ReLU networks, in place: every linear layer's weights
    drawn from N(0, 2/fan_in), biases zero, so that the signal keeps its scale through depth.
    (PyTorch's default draws U(±1/√fan_in), a variance of 1/(3·fan_in), a sixth of He's: each
    ReLU layer multiplies the signal's second moment by about 1/6, biases aside, so a deep narrow
    stack starts with almost no signal at its head.)"""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


INITS: dict[str, Callable[[nn.Module], nn.Module]] = {"torch": lambda m: m, "he": he_init}


@dataclass(frozen=True)
class Recipe:
    """How a base or scratch network trains: Adam at ``lr`` with batches of ``batch_size``.

    With ``patience``: at most ``epochs`` epochs at a constant rate, stopped after ``patience``
    epochs without a better validation accuracy (the best epoch's weights kept). With
    ``patience=None`` and ``schedule="onecycle"``: exactly ``epochs`` epochs, the rate rising to
    ``lr`` over the first tenth of the steps and falling linearly to zero
    (:func:`xferutils.core.train.lr_factor`), the last weights kept; the validation accuracy of every
    epoch is still recorded (the network's validation curve)."""

    epochs: int = 60
    lr: float = 1e-3
    batch_size: int = 128
    patience: int | None = 5
    schedule: str = "constant"
    init: str = "torch"  # "torch": PyTorch's default Linear init; "he": He et al. (2015)'s, for ReLU

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1, 10_000)
        check_float("lr", self.lr, 1e-6, 1.0)
        check_int("batch_size", self.batch_size, 1, 60_000)
        if self.patience is not None:
            check_int("patience", self.patience, 1, 1_000)
        check_choice("schedule", self.schedule, ["constant", "onecycle"])
        check_choice("init", self.init, list(INITS))
        if (self.schedule == "onecycle") != (self.patience is None):
            raise ParameterError(f"schedule={self.schedule!r} with patience={self.patience!r}: stop early "
                                 "(patience) at a constant rate, or run a onecycle schedule to its end "
                                 "(patience=None); a onecycle rate cut off early never anneals")


@dataclass(frozen=True)
class Pools:
    """A case's three disjoint image pools per digit: ``base`` trains the bases and the scratch
    networks, ``shared`` the shared parts, the probe and the pixel baselines, ``val`` validates
    everything. ``config`` says how they were drawn (part of every stored network's key)."""

    base: Split
    shared: Split
    val: Split
    config: dict


def case_pools(train: Split, case: Case, *, base_per_class: int, shared_per_class: int,
               val_per_class: int, data_seed: int = 0) -> Pools:
    """The pools of ``case`` (images of ``case.classes``), drawn by ``data_seed`` alone: every
    seed of every run sees the same images, so runs over other seeds merge."""
    sizes = [base_per_class, shared_per_class, val_per_class]
    base, shared, val = disjoint_pools(train, case.classes, sizes, check_int("data_seed", data_seed, 0))
    return Pools(base, shared, val, {"pool_digits": list(case.classes), "sizes": sizes, "data_seed": data_seed,
                                     "n_train": len(train)})


ARCHS = {"wide": wide_nn, "deep": deep_nn}


def trained_nets(arch: str, digits: Sequence[int], pools: Pools, seeds: Sequence[int], recipe: Recipe,
                 rows: Sequence[Split] | None = None, tag: dict | None = None) -> Replicas:
    """K replicas of ``arch`` (``wide``: document 000's WideNN, ``deep``: its DeepNN) classifying
    ``digits``, trained by ``recipe`` on the base pool's images of ``digits`` (or on ``rows``,
    one split per seed, labels already 0..len(digits)-1) and stopped on the validation pool.

    Kept in the store (:func:`xferutils.core.store.trained`) under the architecture, the digits, the
    pools, the recipe and ``tag`` (what else decides the rows): a later run, or another chapter
    asking for the same networks, reads them instead of training them again.
    """
    arch_fn, init = ARCHS[check_choice("arch", arch, list(ARCHS))], INITS[recipe.init]

    def make(n: int) -> nn.Module:
        return init(arch_fn(n))

    cls = list(check_digits("digits", digits))
    seeds = check_seeds("seeds", seeds)
    val = keep_digits(pools.val, cls)
    config = {"arch": arch, "digits": cls, **pools.config, **asdict(recipe), **(tag or {}),
              "device": pools.base.x.device.type}

    def fit(missing: list[int]) -> Replicas:
        data = keep_digits(pools.base, cls) if rows is None else [rows[seeds.index(s)] for s in missing]
        return fit_replicas(replicate(lambda: make(len(cls)), missing), data, missing, epochs=recipe.epochs,
                            lr=recipe.lr, batch_size=recipe.batch_size, val=val, patience=recipe.patience,
                            schedule=recipe.schedule)

    name = f"ch4-{arch}" + ("" if rows is None else "-rows")
    return trained(name, config, seeds, lambda: make(len(cls)), fit, device=pools.base.x.device)


def trained_bases(case: Case, pools: Pools, test: Split, seeds: Sequence[int], recipe: Recipe,
                  donor_recipe: Recipe | None = None) -> Bases:
    """Network 1 (WideNN) on ``case.digits1``, trained by ``recipe``, and the donor, Network 2
    (DeepNN), on ``case.digits2`` (seeds + 1000), trained by ``donor_recipe`` (default
    ``recipe``), from the store or trained now; frozen, with their test accuracy on their own
    digits and the epoch each kept."""
    seeds = check_seeds("seeds", seeds)
    with timed(pools.base.x.device) as t:
        r1 = trained_nets("wide", case.digits1, pools, seeds, recipe)
        r2 = trained_nets("deep", case.digits2, pools, [s + 1000 for s in seeds], donor_recipe or recipe)
    nets = lambda r: [m.requires_grad_(False) for m in r.unstack()]  # noqa: E731
    return Bases(nets(r1), nets(r2), r1.evaluate(keep_digits(test, case.digits1)),
                 r2.evaluate(keep_digits(test, case.digits2)), t.wall, [h.best_epoch for h in r1.history],
                 [h.best_epoch for h in r2.history], t.cpu, pools.config["sizes"][0], list(r1.history),
                 list(r2.history))


@dataclass
class Bases:
    """K trained copies of Network 1 and Network 2 (one per seed), frozen from here on."""

    net1: list[MLP]
    net2: list[MLP]
    acc1: list[float]
    acc2: list[float]
    seconds: float
    epochs1: list[int] = field(default_factory=list)
    epochs2: list[int] = field(default_factory=list)
    cpu_seconds: float = 0.0
    per_class: int = 0  # training images per digit
    history1: list[History] = field(default_factory=list)  # per seed: loss and validation accuracy per epoch
    history2: list[History] = field(default_factory=list)


def train_base(arch: str, train: Split, test: Split, digits: Sequence[int], seeds: Sequence[int], *,
               epochs: int, lr: float = 2e-3, batch_size: int = 256, val: Split | None = None,
               patience: int | None = None) -> tuple[list[MLP], list[float], Replicas]:
    """K replicas of ``wide`` (Network 1) or ``deep`` (Network 2) trained on ``digits``, vectorized.

    With ``val`` and ``patience`` each replica stops early and keeps its best validation epoch.
    """
    make = {"wide": wide_nn, "deep": deep_nn}[check_choice("arch", arch, ["wide", "deep"])]
    cls = list(digits)
    reps = fit_replicas(replicate(lambda: make(len(cls)), seeds), keep_digits(train, cls), seeds,
                        epochs=epochs, lr=lr, batch_size=batch_size,
                        val=keep_digits(val, cls) if val is not None else None, patience=patience)
    nets = [m.requires_grad_(False) for m in reps.unstack()]
    return nets, reps.evaluate(keep_digits(test, cls)), reps


@dataclass
class Features:
    """Cached penultimate features of one image set through every replica of both bases."""

    f1: torch.Tensor  # (K, n, 64): Network 1
    f2: torch.Tensor  # (K, n, 32): Network 2
    y: torch.Tensor   # (n,) digits

    def __len__(self) -> int:
        return len(self.y)

    def only(self, digits: Sequence[int]) -> Features:
        """The rows of ``digits``."""
        keep = torch.isin(self.y, case_tensor(digits, self.y))
        return Features(self.f1[:, keep], self.f2[:, keep], self.y[keep])


def extract(bases: Bases, data: Split) -> Features:
    """Features of ``data`` through every frozen base, computed once (no gradients)."""
    return Features(torch.stack([embed(m, data.x) for m in bases.net1]),
                    torch.stack([embed(m, data.x) for m in bases.net2]), data.y)


@dataclass
class CaseFeatures:
    """Both bases' features of a case's shared pool (``train``), validation pool and test images,
    and what extracting them cost (wall and CPU seconds)."""

    train: Features
    val: Features
    test: Features
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def case_features(bases: Bases, pools: Pools, test: Split, case: Case) -> CaseFeatures:
    """Features of the shared pool, the validation pool and the test images of ``case.classes``
    through every frozen base, computed once."""
    keep = torch.isin(test.y, case_tensor(case.classes, test.y))
    with timed(test.x.device) as t:
        out = [extract(bases, d) for d in (pools.shared, pools.val, Split(test.x[keep], test.y[keep]))]
    return CaseFeatures(*out, t.wall, t.cpu)


def memory_read(h: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention read of a memory bank: weights ``softmax(h Mᵀ/√d)`` and their convex mix of rows."""
    weights = torch.softmax(h @ memory.T / math.sqrt(memory.shape[-1]), dim=-1)
    return weights @ memory, weights


class SharedNet(nn.Module):
    """Projections of both networks' features, 3 shared hidden layers and a shared classifier.

    Optional parts: a memory bank read by attention and concatenated with the hidden layer before
    the classifier (``memory_slots``), and a domain discriminator on the projected features
    behind a gradient-reversal layer of strength ``adv_lambda`` (``discriminator``). The weight of
    the approach's extra loss term is a buffer (``term_weight``), so replicas with different
    weights train together. Called on Network 1's features alone (``d1`` columns) it returns
    Network 1's logits; on packed rows (:func:`pack`) everything an objective needs.
    """

    def __init__(self, d1: int, d2: int, n_classes: int, width: int = 64, proj_dim: int = 32,
                 memory_slots: int = 0, discriminator: bool = False, adv_lambda: float = 1.0,
                 term_weight: float = 1.0) -> None:
        super().__init__()
        self.d1, self.d2 = d1, d2
        self.adv_lambda = adv_lambda
        self.proj1 = nn.Linear(d1, proj_dim)
        self.proj2 = nn.Linear(d2, proj_dim)
        self.body = nn.Sequential(nn.Linear(proj_dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                  nn.Linear(width, width), nn.ReLU())
        self.memory = nn.Parameter(torch.randn(memory_slots, width) / math.sqrt(width)) if memory_slots else None
        self.head = nn.Linear(width * (2 if memory_slots else 1), n_classes)
        self.disc = (nn.Sequential(nn.Linear(proj_dim, width), nn.ReLU(), nn.Linear(width, 1))
                     if discriminator else None)
        self.register_buffer("term_weight", torch.tensor(float(term_weight)))

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        if self.memory is not None:
            h = torch.cat([h, memory_read(h, self.memory)[0]], dim=-1)
        return self.head(h)

    def path1(self, f1: torch.Tensor) -> torch.Tensor:
        """Network 1's logits from its features."""
        return self.classify(self.body(self.proj1(f1)))

    def path2(self, f2: torch.Tensor) -> torch.Tensor:
        """Network 2's logits from its features."""
        return self.classify(self.body(self.proj2(f2)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor] | torch.Tensor:
        """Network 1's logits (``x`` of width ``d1``) or the objective's terms (packed rows)."""
        if x.shape[-1] == self.d1:
            return self.path1(x)
        f1, f2 = x[..., :self.d1], x[..., self.d1:self.d1 + self.d2]
        z1, z2 = self.proj1(f1), self.proj2(f2)
        h1, h2 = self.body(z1), self.body(z2)
        out = {"z1": z1, "z2": z2, "h1": h1, "h2": h2, "logit1": self.classify(h1),
               "logit2": self.classify(h2), "w": self.term_weight}
        if self.disc is not None:
            out["dom1"] = self.disc(grad_reverse(z1, self.adv_lambda)).squeeze(-1)
            out["dom2"] = self.disc(grad_reverse(z2, self.adv_lambda)).squeeze(-1)
        return out


def pack(f1: torch.Tensor, f2: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """Rows ``[f1·m1 | f2·m2 | m1 | m2]``: a network's features are zero where it may not see."""
    m1, m2 = m1.float()[..., None], m2.float()[..., None]
    return torch.cat([f1 * m1, f2 * m2, m1, m2], dim=-1)


def bridge_pick(y: torch.Tensor, case: Case, n_bridge: int, seed: int) -> torch.Tensor:
    """Indices of the ``n_bridge`` transfer-digit images that bridging shows Network 1 (by ``seed``)."""
    where = torch.nonzero(y == case.transfer).flatten()
    n_bridge = check_int("n_bridge", n_bridge, 1, len(where))
    gen = torch.Generator().manual_seed(seed)
    return where[torch.randperm(len(where), generator=gen)[:n_bridge].to(y.device)]


def oversample(pick: torch.Tensor, n: int) -> torch.Tensor:
    """``pick`` repeated and cut to exactly ``n`` entries (class-balanced oversampling)."""
    return pick.repeat(-(-n // len(pick)))[:n]


def visible_rows(approach: str, feats: Features, case: Case, seeds: Sequence[int],
                 n_bridge: int = 0, use_donor: bool = True) -> list[Split]:
    """The training rows of ``approach``, one split per replica (labels are class indices).

    Row i is image i of the pool: Network 1's features are visible (m1 = 1) if its digit is in
    ``digits1``, Network 2's (m2 = 1) if it is in ``digits2``; the features a network may not see
    are zeroed. For ``bridging`` only, ``n_bridge`` transfer-digit images per replica (chosen by
    its seed) are added as Network-1-only rows, repeated so that the transfer digit weighs as
    much as any other class in Network 1's loss (class-balanced oversampling: always as many
    rows as the pool has transfer-digit images, so every ``n_bridge`` gives splits of one
    length). With ``use_donor=False`` Network 2 sees nothing at all.
    """
    check_choice("approach", approach, APPROACHES)
    y = feats.y
    in1 = torch.isin(y, case_tensor(case.digits1, y))
    in2 = torch.isin(y, case_tensor(case.digits2, y)) & bool(use_donor)
    labels = relabel(y, case.classes)
    where = torch.nonzero(y == case.transfer).flatten()
    if approach == "bridging":
        n_bridge = check_int("n_bridge", n_bridge, 1, len(where))
    out = []
    for k, seed in enumerate(seeds):
        x = pack(feats.f1[k], feats.f2[k], in1, in2)
        if approach == "bridging":
            pick = oversample(bridge_pick(y, case, n_bridge, seed), len(where))
            ones = torch.ones(len(pick), dtype=torch.bool, device=y.device)
            extra = pack(feats.f1[k][pick], feats.f2[k][pick], ones, ~ones)
            out.append(Split(torch.cat([x, extra]), torch.cat([labels, labels[pick]])))
        else:
            out.append(Split(x, labels))
    return out


def val_rows(val: Features, case: Case, k: int) -> list[Split]:
    """Network 1's validation task, one split per replica: its features of its own digits and
    the transfer digit, labelled (the target task; used to stop training and choose weights)."""
    v = val.only((*case.digits1, case.transfer))
    return [Split(v.f1[j], relabel(v.y, case.classes)) for j in range(k)]


def _masked_mean(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (v * m).sum() / m.sum().clamp_min(1.0)


def contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor, m1: torch.Tensor,
                     m2: torch.Tensor, margin: float) -> torch.Tensor:
    """Cross-network contrastive loss over all (Network 1 row i, Network 2 row j) pairs of a batch.

    Same class: squared distance pulled to 0; different class: ``relu(margin - distance)²``.
    """
    d2 = (z1.pow(2).sum(-1)[:, None] + z2.pow(2).sum(-1)[None, :] - 2 * z1 @ z2.T).clamp_min(0.0)
    valid = m1[:, None] * m2[None, :]
    same = (y[:, None] == y[None, :]).float()
    pos = _masked_mean(d2, valid * same)
    neg = _masked_mean(F.relu(margin - (d2 + 1e-8).sqrt()).pow(2), valid * (1 - same))
    return pos + neg


@dataclass(frozen=True)
class Settings:
    """Knobs of the shared-layer training.

    ``epochs`` is the most any run may train: with a validation set (``train_approach(val=...)``)
    every replica stops after ``patience`` epochs without improving and keeps its best epoch, and
    an approach with an extra loss term (:data:`WEIGHTED`) gets its weight chosen from ``grid``
    (extended by ×10 while the choice sits at an edge, at most ``max_extend`` times). Without a
    validation set, every replica trains ``epochs`` epochs with the weights given here.
    """

    epochs: int = 150
    lr: float = 5e-3
    batch_size: int = 256
    width: int = 64
    proj_dim: int = 32
    n_bridge: int = 100
    align_weight: float = 1.0
    adv_weight: float = 1.0
    adv_lambda: float = 1.0
    contrast_weight: float = 1.0
    margin: float = 2.0
    memory_slots: int = 32
    use_donor: bool = True  # False: Network 2 sees nothing (bridging without a donor)
    patience: int = 8
    grid: tuple[float, ...] = (0.1, 1.0, 10.0)
    max_extend: int = 2

    def weight(self, approach: str) -> float:
        """The weight of ``approach``'s extra loss term given here (0 for approaches without one)."""
        return float(getattr(self, WEIGHTED[approach])) if approach in WEIGHTED else 0.0


WEIGHTED = {"alignment": "align_weight", "prototypes": "align_weight", "adversarial": "adv_weight",
            "contrastive": "contrast_weight"}


def make_objective(approach: str, d1: int, d2: int, s: Settings = Settings()):
    """The per-replica objective of ``approach`` for :func:`fit_replicas`.

    Every approach: cross-entropy of each network's path on the rows it may see. Then
    ``alignment``/``prototypes``: + w · MSE between the two projections of the same (shared-digit)
    image; ``adversarial``: + w · the discriminator's cross-entropy (network 1 = 0, network 2 = 1),
    whose gradient reaches the projections reversed; ``contrastive``: + w ·
    :func:`contrastive_loss`. The weight w is each replica's ``term_weight``.
    """
    check_choice("approach", approach, APPROACHES)

    def objective(fmodel, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = fmodel(xb)
        m1, m2, w = xb[:, d1 + d2], xb[:, d1 + d2 + 1], out["w"]
        loss = (_masked_mean(F.cross_entropy(out["logit1"], yb, reduction="none"), m1)
                + _masked_mean(F.cross_entropy(out["logit2"], yb, reduction="none"), m2))
        if approach in ("alignment", "prototypes"):
            loss = loss + w * _masked_mean((out["z1"] - out["z2"]).pow(2).mean(-1), m1 * m2)
        elif approach == "adversarial":
            dom = (_masked_mean(F.binary_cross_entropy_with_logits(out["dom1"], torch.zeros_like(m1),
                                                                   reduction="none"), m1)
                   + _masked_mean(F.binary_cross_entropy_with_logits(out["dom2"], torch.ones_like(m2),
                                                                     reduction="none"), m2))
            loss = loss + w * dom
        elif approach == "contrastive":
            loss = loss + w * contrastive_loss(out["z1"], out["z2"], yb, m1, m2, s.margin)
        return loss

    return objective


def class_prototypes(h: torch.Tensor, y: torch.Tensor, n_classes: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``h`` per class 0..n_classes-1 over rows where ``mask`` (NaN for an absent class)."""
    w = F.one_hot(y, n_classes).float()
    if mask is not None:
        w = w * mask.float()[:, None]
    return (w.T @ h) / w.sum(0)[:, None]


def nearest_prototype(h: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Index of the nearest (Euclidean) prototype of every row; absent (NaN) prototypes never win."""
    d = torch.cdist(h, torch.nan_to_num(prototypes, nan=0.0))
    d[:, torch.isnan(prototypes).any(-1)] = float("inf")
    return d.argmin(-1)


@torch.no_grad()
def prototypes_of(models: Sequence[SharedNet], rows: Sequence[Split], case: Case) -> list[torch.Tensor]:
    """Per replica, class prototypes in the last hidden layer: the donor's digits from Network 2's
    path, Network 1's other digits from its own."""
    out = []
    for m, r in zip(models, rows):
        d1, d2 = m.d1, m.d2
        m1, m2 = r.x[:, d1 + d2], r.x[:, d1 + d2 + 1]
        n = len(case.classes)
        in2 = torch.isin(case_tensor(case.classes, r.y), case_tensor(case.digits2, r.y))
        p2 = class_prototypes(m.body(m.proj2(r.x[:, d1:d1 + d2])), r.y, n, m2)
        p1 = class_prototypes(m.body(m.proj1(r.x[:, :d1])), r.y, n, m1)
        out.append(torch.where(in2[:, None], p2, p1))
    return out


@dataclass
class Outcome:
    """One approach trained for K seeds: its models, cost and Network 1's predictions.

    ``weight`` is the weight of its extra loss term (chosen on validation when it has one),
    ``scores`` the validation score of every weight tried, ``epochs`` the epoch each replica kept.
    """

    approach: str
    case: Case
    models: list[SharedNet]
    seconds: float
    cpu_seconds: float
    trainable: int
    history: list[History]
    prototypes: list[torch.Tensor] | None = None
    bridge_idx: list[torch.Tensor] | None = None  # bridging: the transfer images Network 1 saw
    weight: float | None = None
    scores: dict[float, float] = field(default_factory=dict)
    # every weight trained, {w: (models, histories)}, and what they were trained with (for reuse)
    tried: dict = field(default_factory=dict, repr=False)
    seeds: list[int] = field(default_factory=list)
    settings: Settings | None = None
    rows_of: Features | None = field(default=None, repr=False)  # the features it trained on

    @property
    def epochs(self) -> list[int]:
        """The epoch each replica kept (its training budget)."""
        return [h.best_epoch or h.epochs for h in self.history]

    @property
    def interior(self) -> bool:
        """Whether the chosen weight lies inside the grid tried (not at an edge)."""
        grid = sorted(self.scores)
        return len(grid) < 3 or grid[0] < (self.weight or 0) < grid[-1]

    @torch.no_grad()
    def predict1(self, f1: torch.Tensor) -> torch.Tensor:
        """Digits that Network 1's path predicts, (K, n), from its features (K, n, 64)."""
        classes = torch.tensor(self.case.classes, device=f1.device)
        out = []
        for k, m in enumerate(self.models):
            if self.prototypes is not None:
                out.append(nearest_prototype(m.body(m.proj1(f1[k])), self.prototypes[k]))
            else:
                out.append(m.path1(f1[k]).argmax(-1))
        return classes[torch.stack(out)]

    @torch.no_grad()
    def logits1(self, f1: torch.Tensor) -> torch.Tensor:
        """Network 1's logits over ``case.classes``, (K, n, classes) (classifier approaches only)."""
        return torch.stack([m.path1(f1[k]) for k, m in enumerate(self.models)])

    @torch.no_grad()
    def predict2(self, f2: torch.Tensor) -> torch.Tensor:
        """Digits that Network 2's path predicts, (K, n)."""
        classes = torch.tensor(self.case.classes, device=f2.device)
        return classes[torch.stack([m.path2(f2[k]).argmax(-1) for k, m in enumerate(self.models)])]

    def target_score(self, val: Features) -> list[float]:
        """Per replica, mean per-digit accuracy of Network 1 on its digits and the transfer digit."""
        v = val.only((*self.case.digits1, self.case.transfer))
        pred = self.predict1(v.f1)
        return torch.stack([(pred[:, v.y == d] == d).float().mean(-1)
                            for d in (*self.case.digits1, self.case.transfer)]).mean(0).tolist()


def fit_shared(approach: str, case: Case, rows: list[Split], vrows: list[Split] | None, seeds: list[int],
               weights: list[float], s: Settings, d1: int, d2: int) -> tuple[list[SharedNet], list[History], int]:
    """Train one shared network per (rows, seed, weight), all at once as replicas
    (:func:`~xferutils.core.ensemble.fit_replicas`, early stopping on ``vrows``): the models,
    their histories and the trainable parameters of one (chapters 4 and 5)."""

    def make(w: float) -> SharedNet:
        return SharedNet(d1, d2, len(case.classes), s.width, s.proj_dim,
                         memory_slots=s.memory_slots if approach == "memory" else 0,
                         discriminator=approach == "adversarial", adv_lambda=s.adv_lambda, term_weight=w)

    models = []
    for seed, w in zip(seeds, weights):
        torch.manual_seed(seed)
        models.append(make(w))
    reps = fit_replicas(models, rows, seeds, epochs=s.epochs, lr=s.lr, batch_size=s.batch_size,
                        objective=make_objective(approach, d1, d2, s), val=vrows,
                        patience=s.patience if vrows is not None else None)
    return [m.requires_grad_(False) for m in reps.unstack()], reps.history, count_parameters(make(1.0))


def outcome_of(approach: str, case: Case, models: list[SharedNet], history: list[History],
               rows: list[Split], feats: Features, seeds: list[int], s: Settings, trainable: int,
               weight: float | None) -> Outcome:
    """The :class:`Outcome` of trained shared networks: prototypes computed for ``prototypes``,
    the labelled transfer-digit rows bridging saw recorded (timings left at 0 for the caller)."""
    protos = prototypes_of(models, rows, case) if approach == "prototypes" else None
    seen = ([bridge_pick(feats.y, case, s.n_bridge, sd) for sd in seeds]
            if approach == "bridging" else None)
    return Outcome(approach, case, models, 0.0, 0.0, trainable, history, protos, seen, weight)


SAME_TRAINING = {"prototypes": "alignment"}  # approach -> the approach whose shared layers it trains


def train_approach(approach: str, feats: Features, case: Case, seeds: Sequence[int],
                   settings: Settings = Settings(), *, val: Features | None = None,
                   grid: Sequence[float] | None = None, reuse: Outcome | None = None) -> Outcome:
    """Train the shared parts of ``approach`` on cached features for every seed (vectorized).

    The bases are not involved: only projections, shared layers (and the discriminator or the
    memory) have parameters here. ``prototypes`` trains as ``alignment`` and then classifies
    Network 1's path by the nearest class prototype in the last hidden layer: prototypes of the
    donor's digits come from Network 2's path, those of Network 1's other digits from its own.

    With ``val`` (features of held-out images): early stopping on Network 1's validation task
    (:func:`val_rows`) and, for an approach with a loss weight, every weight of ``grid``
    (default ``settings.grid``) trained at once and the one with the best mean
    :meth:`Outcome.target_score` kept; a choice at the grid's edge extends the grid.

    ``reuse``: the :class:`Outcome` of the approach whose training this one shares
    (:data:`SAME_TRAINING`: ``prototypes`` trains exactly as ``alignment``, same objective,
    rows, seeds and weights), trained on the same features, case, seeds and settings: its shared
    layers of every weight it tried are taken instead of training them again (bit for bit the
    same networks), and its training time is added to this one's. Anything else is refused.
    """
    check_choice("approach", approach, APPROACHES)
    seeds = check_seeds("seeds", seeds)
    s = settings
    if reuse is not None:
        if SAME_TRAINING.get(approach) != reuse.approach:
            raise ParameterError(f"{approach} cannot reuse {reuse.approach}'s training: only "
                                 f"{', '.join(f'{a} <- {b}' for a, b in SAME_TRAINING.items())} train alike")
        if reuse.case != case or reuse.seeds != list(seeds) or reuse.settings != s or reuse.rows_of is not feats:
            raise ParameterError(f"reuse was trained on another case, seeds, settings or features than "
                                 f"{approach} is asked for; train it anew (reuse=None)")
    d1, d2 = feats.f1.shape[-1], feats.f2.shape[-1]
    rows = visible_rows(approach, feats, case, seeds, s.n_bridge, s.use_donor)
    vrows = val_rows(val, case, len(seeds)) if val is not None else None
    if val is None or approach not in WEIGHTED:
        todo = [s.weight(approach)]
    else:
        todo = sorted(float(check_float("grid", w, 0.0)) for w in (grid or s.grid))
    k = len(seeds)
    tried: dict[float, tuple[list[SharedNet], list[History]]] = dict(reuse.tried) if reuse else {}
    scores: dict[float, float] = {}
    trainable = reuse.trainable if reuse else 0
    with timed(feats.y.device) as t:
        for _ in range(s.max_extend + 1):
            ws = [w for w in todo if w not in tried]
            if ws:  # the j-th weight asked for trains with seeds + 10007·j (whoever trained it)
                models, hist, trainable = fit_shared(
                    approach, case, rows * len(ws), vrows * len(ws) if vrows else None,
                    [sd + 10007 * (len(scores) + todo.index(w)) for w in ws for sd in seeds],
                    [w for w in ws for _ in seeds], s, d1, d2)
                for i, w in enumerate(ws):
                    tried[w] = (models[i * k:(i + 1) * k], hist[i * k:(i + 1) * k])
            for w in todo:
                if val is not None and w not in scores:
                    o = outcome_of(approach, case, *tried[w], rows, feats, seeds, s, trainable, w)
                    scores[w] = sum(o.target_score(val)) / k
            if val is None or approach not in WEIGHTED:
                break
            grid_now = sorted(scores)  # the weights this approach asked for (reuse may hold more)
            best = max(grid_now, key=lambda w: scores[w])
            if best == grid_now[-1]:
                todo = [best * 10]
            elif best == grid_now[0] and best > 0:
                todo = [best / 10]
            else:
                break
    weight = max(scores, key=lambda w: scores[w]) if scores else todo[0]
    out = outcome_of(approach, case, *tried[weight], rows, feats, seeds, s, trainable,
                   weight if approach in WEIGHTED else None)
    out.seconds, out.cpu_seconds, out.scores = t.wall, t.cpu, scores if approach in WEIGHTED else {}
    if reuse is not None:  # the training it stands on is part of its cost
        out.seconds, out.cpu_seconds = out.seconds + reuse.seconds, out.cpu_seconds + reuse.cpu_seconds
    out.tried, out.seeds, out.settings, out.rows_of = tried, list(seeds), s, feats
    return out


def transfer_metrics(pred: torch.Tensor, y: torch.Tensor, case: Case) -> dict[str, list[float]]:
    """Document 000's metrics from Network 1's predicted digits ``pred`` (K, n) on test digits ``y`` (n,).

    - ``transfer``: share of transfer-digit images predicted as the transfer digit;
    - ``retention``: share of images of Network 1's own digits predicted as their digit;
    - ``isolation``: share of images of the untransferred donor digits (``case.untransferred``)
      predicted as their own digit: the donor's other knowledge leaking into Network 1 (want 0);
    - ``leak``: share of *all* test images of the case's digits that Network 1 labels with an
      untransferred donor digit.
    """
    pred = pred if pred.dim() == 2 else pred[None]
    correct = (pred == y).float()

    def share(digits: Sequence[int]) -> list[float]:
        sel = torch.isin(y, case_tensor(digits, y))
        return correct[:, sel].mean(-1).tolist()

    untr = case_tensor(case.untransferred, y)
    in_case = torch.isin(y, case_tensor(case.classes, y))
    return {"transfer": share([case.transfer]), "retention": share(case.digits1),
            "isolation": share(case.untransferred),
            "leak": torch.isin(pred[:, in_case], untr).float().mean(-1).tolist()}


def bias_sweep(out: Outcome, test: Features, offsets: Sequence[float]) -> dict[float, dict[str, list[float]]]:
    """Transfer and retention when the transfer digit's logit of Network 1's path is raised by each
    offset (no retraining): the trade-off one threshold can buy."""
    if out.prototypes is not None:
        raise ParameterError(f"bias_sweep needs a classifier head; approach {out.approach!r} has prototypes")
    logits = out.logits1(test.f1)
    col = out.case.classes.index(out.case.transfer)
    classes = case_tensor(out.case.classes, test.y)
    res = {}
    for b in offsets:
        shifted = logits.clone()
        shifted[..., col] += float(b)
        res[float(b)] = transfer_metrics(classes[shifted.argmax(-1)], test.y, out.case)
    return res


def choose_bias(val_sweep: dict[float, dict[str, list[float]]], min_retention: float = CRITERIA["retention"],
                target: float | None = None) -> float | None:
    """The operating point, chosen on a *validation* :func:`bias_sweep`.

    Without ``target``: the offset with the highest mean transfer among those whose mean retention
    is at least ``min_retention`` (ties: the smallest offset). With ``target``: the smallest offset
    whose mean transfer reaches ``target`` (retention ignored). ``None`` if no offset qualifies.
    """
    def mean(v: list[float]) -> float:
        return sum(v) / len(v)

    offsets = sorted(val_sweep)
    if target is not None:
        return next((b for b in offsets if mean(val_sweep[b]["transfer"]) >= target), None)
    ok = [b for b in offsets if mean(val_sweep[b]["retention"]) >= min_retention]
    return max(ok, key=lambda b: (mean(val_sweep[b]["transfer"]), -b)) if ok else None


def epochs_to_converge(loss: Sequence[float], frac: float = 0.95) -> int:
    """First epoch (1-based) by which the training loss made ``frac`` of its total decrease."""
    frac = check_float("frac", frac, 0.0, 1.0)
    first, last = loss[0], min(loss)
    if first <= last:
        return 1
    target = first - frac * (first - last)
    return next(i + 1 for i, v in enumerate(loss) if v <= target)


def prediction_shares(pred: torch.Tensor, y: torch.Tensor, digit: int) -> torch.Tensor:
    """Share of images of ``digit`` that each replica labels 0..9, shape (K, 10)."""
    p = pred[:, y == digit]
    return torch.stack([torch.bincount(row, minlength=10).float() / len(row) for row in p])


def fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, l2: float = 1e-4,
                 max_iter: int = 500) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """Multinomial logistic regression on (K, n, d) features and (n,) labels, K problems at once,
    fitted by L-BFGS (features standardised, L2 penalty ``l2``) until the gradient vanishes or
    ``max_iter`` iterations have run.

    Returns the fitted classifier (features (K, m, d) → logits (K, m, classes)) and the number
    of L-BFGS iterations it took; ``classify.grad_norm`` is the largest entry of the gradient of
    the (mean) loss at the end, the check that the problem was solved. The K problems are
    independent, so minimising their sum minimises each.
    """
    l2 = check_float("l2", l2, 0.0)
    max_iter = check_int("max_iter", max_iter, 1)
    x = x.double()
    mu, sd = x.mean(1, keepdim=True), x.std(1, keepdim=True).clamp_min(1e-6)
    z = (x - mu) / sd
    k, _, d = z.shape
    w = torch.zeros(k, d, n_classes, dtype=torch.float64, device=x.device, requires_grad=True)
    b = torch.zeros(k, 1, n_classes, dtype=torch.float64, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
    target = y.expand(k, -1).reshape(-1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = z @ w + b
        loss = F.cross_entropy(logits.reshape(-1, n_classes), target) * k + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        closure()  # the gradient at the solution
    iters = int(opt.state[opt._params[0]]["n_iter"])
    grad_norm = max(float(w.grad.abs().max()), float(b.grad.abs().max()))  # each problem's own gradient
    w_, b_ = w.detach(), b.detach()

    def classify(f: torch.Tensor) -> torch.Tensor:
        return (((f.double() - mu) / sd) @ w_ + b_).float()

    classify.grad_norm = grad_norm  # type: ignore[attr-defined]
    return classify, iters


def labelled_rows(y: torch.Tensor, case: Case, seeds: Sequence[int], n_labelled: int) -> torch.Tensor:
    """Per seed, the rows of a pool (digits ``y``) that a method with ``n_labelled`` labelled
    transfer-digit images may learn from, shape (K, m): every image of Network 1's digits and the
    *same* ``n_labelled`` transfer-digit images bridging shows under that seed
    (:func:`bridge_pick`), repeated to as many rows as the pool has of that digit (class-balanced
    oversampling, as bridging does). Row j holds the same digit for every seed."""
    seeds = check_seeds("seeds", seeds)
    own = torch.nonzero(torch.isin(y, case_tensor(case.digits1, y))).flatten()
    n_rows = int((y == case.transfer).sum())
    return torch.stack([torch.cat([own, oversample(bridge_pick(y, case, n_labelled, sd), n_rows)])
                        for sd in seeds])


def linear_probe(train: Features, test: Features, digits: Sequence[int], seeds: Sequence[int], *,
                 epochs: int = 500, lr: float = 1.0, batch_size: int = 0, l2: float = 1e-4,
                 rows: torch.Tensor | None = None) -> dict[str, list[float]]:
    """A linear read-out of Network 1's frozen features, given labels of ``digits``.

    Logistic regression fitted to convergence (:func:`fit_logistic`, at most ``epochs`` L-BFGS
    iterations; ``lr`` and ``batch_size`` are kept for old callers and unused). It measures what
    the frozen features carry about each digit *given labels*: a lower bound on the information
    in them, and a reference for what a head with those labels can do, not an upper bound on
    transfer (a non-linear head, or more labels, can do better). ``rows`` (K, m), e.g. from
    :func:`labelled_rows`, restricts replica k to the training rows ``rows[k]`` (the same digit
    in every replica's row j); without it every replica sees all rows of ``digits``.

    Returns per-replica accuracy on each digit of the test set (``"d3"``...), overall (``"all"``),
    on its own training rows (``"train"``, ``"train_d3"``...) and the iterations used.
    """
    cls = list(digits)
    if rows is not None:
        if rows.dim() != 2 or rows.shape[0] != len(seeds):
            raise ParameterError(f"rows must have shape (len(seeds)={len(seeds)}, m), got {tuple(rows.shape)}")
        y0 = train.y[rows[0]]
        if not all(torch.equal(train.y[r], y0) for r in rows):
            raise ParameterError("rows must hold the same digit in every replica's row j")
        train = Features(torch.stack([train.f1[k][r] for k, r in enumerate(rows)]),
                         torch.stack([train.f2[k][r] for k, r in enumerate(rows)]), y0)
    tr, te = train.only(cls), test.only(cls)
    ytr, yte = relabel(tr.y, cls), relabel(te.y, cls)
    classify, iters = fit_logistic(tr.f1, ytr, len(cls), l2=l2, max_iter=epochs)
    out: dict[str, list[float]] = {}
    for tag, f, y, digit_y in (("", te.f1, yte, te.y), ("train_", tr.f1, ytr, tr.y)):
        pred = classify(f).argmax(-1)
        for j, d in enumerate(cls):
            out[f"{tag}d{d}"] = (pred[:, digit_y == d] == j).float().mean(-1).tolist()
        out[f"{tag}all" if tag == "" else "train"] = (pred == y).float().mean(-1).tolist()
    out["iterations"] = [float(iters)] * len(seeds)
    out["grad_norm"] = [classify.grad_norm] * len(seeds)  # type: ignore[attr-defined]
    return out


def probe(feats: CaseFeatures, case: Case, seeds: Sequence[int], n_labelled: int, *,
          max_iter: int = 500) -> dict[str, list[float]]:
    """The linear probe of ``case`` with the labelled budget of bridging: Network 1's features of
    its own digits and of the same ``n_labelled`` transfer-digit images (:func:`labelled_rows`)."""
    rows = labelled_rows(feats.train.y, case, seeds, n_labelled)
    return linear_probe(feats.train, feats.test, sorted((*case.digits1, case.transfer)), seeds,
                        epochs=max_iter, rows=rows)


@dataclass
class Scratch:
    """Network 1 trained from scratch on its digits plus the transfer digit."""

    metrics: dict[str, list[float]]
    seconds: float
    cpu_seconds: float
    trainable: int
    epochs: list[int]
    history: list[History] = field(default_factory=list)


def _scratch(reps: Replicas, case: Case, cls: Sequence[int], test: Split, seconds: float, cpu: float) -> Scratch:
    pred = case_tensor(cls, test.y)[reps.predict(test.x)]
    return Scratch(transfer_metrics(pred, test.y, case), seconds, cpu, count_parameters(wide_nn(len(cls))),
                   [h.best_epoch for h in reps.history], reps.history)


def train_scratch(case: Case, pools: Pools, test: Split, seeds: Sequence[int], recipe: Recipe) -> Scratch:
    """The efficiency baseline: a fresh WideNN on ``digits1 + [transfer]`` with every label of the
    base pool, trained by ``recipe`` (kept in the store like the bases)."""
    cls = sorted((*case.digits1, case.transfer))
    with timed(test.x.device) as t:
        reps = trained_nets("wide", cls, pools, seeds, recipe)
    return _scratch(reps, case, cls, test, t.wall, t.cpu)


def train_few_shot(case: Case, pools: Pools, test: Split, seeds: Sequence[int], n_bridge: int,
                   recipe: Recipe) -> Scratch:
    """Few-shot scratch: a fresh WideNN given exactly the labelled images bridging's Network-1
    path trains on (:func:`labelled_rows` of the shared pool: Network 1's digits and the *same*
    ``n_bridge`` transfer-digit images per seed, oversampled alike), trained by ``recipe``."""
    cls = sorted((*case.digits1, case.transfer))
    seeds = check_seeds("seeds", seeds)
    idx = labelled_rows(pools.shared.y, case, seeds, n_bridge)
    rows = [Split(pools.shared.x[i], relabel(pools.shared.y[i], cls)) for i in idx]
    with timed(test.x.device) as t:
        reps = trained_nets("wide", cls, pools, seeds, recipe, rows=rows, tag={"few_shot": n_bridge})
    return _scratch(reps, case, cls, test, t.wall, t.cpu)


PIXEL_BASELINES = {"pixels": "logistic regression on pixels", "prototypes": "nearest class prototype (pixels)"}


def pixel_baselines(case: Case, pools: Pools, test: Split, seeds: Sequence[int],
                    n_labelled: int) -> dict[str, dict[str, list[float]]]:
    """Trivial baselines on raw pixels with the labelled budget of bridging and the probe: per
    seed, the shared pool's images of Network 1's digits and the same ``n_labelled``
    transfer-digit images (:func:`labelled_rows`, oversampled alike). ``pixels``: multinomial
    logistic regression (:mod:`xferutils.core.baselines`' settings: L-BFGS, ``C`` fixed, tuned on
    nothing); ``prototypes``: the nearest class mean. Returns :func:`transfer_metrics` of each on
    the test images of ``case.classes``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from xferutils.core.baselines import C, _threads

    rows = labelled_rows(pools.shared.y, case, seeds, n_labelled)
    keep = torch.isin(test.y, case_tensor(case.classes, test.y))
    xt, yt = test.x[keep].flatten(1), test.y[keep]
    xt_np = xt.double().cpu().numpy()
    preds: dict[str, list[torch.Tensor]] = {k: [] for k in PIXEL_BASELINES}
    for k, sd in enumerate(seeds):
        x, y = pools.shared.x[rows[k]].flatten(1), pools.shared.y[rows[k]]
        clf = LogisticRegression(C=C, solver="lbfgs", max_iter=1000, random_state=sd)
        with warnings.catch_warnings(), _threads():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x.double().cpu().numpy(), y.cpu().numpy())
            preds["pixels"].append(torch.as_tensor(clf.predict(xt_np), device=yt.device))
        digits = torch.unique(y)
        protos = torch.stack([x[y == d].mean(0) for d in digits])
        preds["prototypes"].append(digits[torch.cdist(xt, protos).argmin(-1)])
    return {name: transfer_metrics(torch.stack(p), yt, case) for name, p in preds.items()}


@torch.no_grad()
def alignment_ratio(out: Outcome, test: Features) -> list[float]:
    """Per replica: mean squared distance between the two projections of the *same* shared-digit
    image, divided by that between projections of two *random* shared-digit images (1 = unaligned)."""
    sel = torch.isin(test.y, case_tensor(out.case.shared, test.y))
    perm = torch.randperm(int(sel.sum()), generator=torch.Generator().manual_seed(0)).to(test.y.device)
    ratios = []
    for k, m in enumerate(out.models):
        z1, z2 = m.proj1(test.f1[k][sel]), m.proj2(test.f2[k][sel])
        ratios.append(((z1 - z2).pow(2).sum(-1).mean() / (z1 - z2[perm]).pow(2).sum(-1).mean()).item())
    return ratios


def outcome_metrics(out: Outcome, test: Features, feats_time: float = 0.0, feats_cpu: float = 0.0,
                    train: Features | None = None) -> dict[str, object]:
    """Every metric of one trained approach on the cached test features.

    With the ``train`` features, bridging also reports ``seen``: its accuracy on the very
    transfer-digit images it was trained on (a training-set number, not a test result).
    ``seconds`` (wall) and ``cpu_seconds`` (this process's CPU time, steadier on a shared
    machine) include the one-off feature extraction ``feats_time``/``feats_cpu``; ``epochs`` is
    the epoch each replica kept (its budget), ``epochs95`` when its loss made 95 % of its fall.
    """
    m = transfer_metrics(out.predict1(test.f1), test.y, out.case)
    d2 = torch.isin(test.y, case_tensor(out.case.digits2, test.y))
    m["donor"] = (out.predict2(test.f2[:, d2]) == test.y[d2]).float().mean(-1).tolist()
    m["align"] = alignment_ratio(out, test)
    if train is not None and out.bridge_idx is not None:
        f1 = torch.stack([train.f1[k][idx] for k, idx in enumerate(out.bridge_idx)])
        m["seen"] = (out.predict1(f1) == out.case.transfer).float().mean(-1).tolist()
    m.update(seconds=out.seconds + feats_time, cpu_seconds=out.cpu_seconds + feats_cpu, trainable=out.trainable,
             epochs=out.epochs, epochs95=[epochs_to_converge(h.loss) for h in out.history],
             weight=out.weight, interior=out.interior, scores=out.scores)
    return m


SCALES: dict[str, dict[str, int]] = {  # per preset: images per network, and per digit in the other pools
    "smoke": dict(base_images=120, max_per_class=40, shared_per_class=30, val_per_class=10),
    "book": dict(base_images=13500, max_per_class=4500, shared_per_class=300, val_per_class=200),
    "full": dict(base_images=27000, max_per_class=4900, shared_per_class=300, val_per_class=200),
}


def pool_sizes(preset: str, case: Case) -> dict[str, int]:
    """The pool sizes of ``case`` at ``preset`` (arguments of :func:`case_pools`): every base sees
    the same number of training images whatever its number of digits (``base_images``, at most
    ``max_per_class`` per digit), so the cost of a case does not grow with its digits."""
    sc = SCALES[check_choice("preset", preset, list(SCALES))]
    per = min(sc["max_per_class"], sc["base_images"] // len(case.digits1))
    return {"base_per_class": per, "shared_per_class": sc["shared_per_class"], "val_per_class": sc["val_per_class"]}


MAX_PER_CLASS = 4900  # the largest base pool every digit allows beside its shared and validation pools


def curve_sizes(preset: str, case: Case) -> list[int]:
    """Images per digit at which chapter 4 measures a base's accuracy against the size of its pool:
    the ``book`` and ``full`` pools of ``case`` and every image (:data:`MAX_PER_CLASS`); at
    ``smoke``, its own pool and twice it."""
    own = pool_sizes(preset, case)["base_per_class"]
    if preset == "smoke":
        return [own, 2 * own]
    return sorted({pool_sizes("book", case)["base_per_class"], pool_sizes("full", case)["base_per_class"],
                   MAX_PER_CLASS})


def size_curve(case: Case, train: Split, test: Split, sizes: Sequence[int], seed: int, recipe: Recipe,
               donor_recipe: Recipe | None = None, *, preset: str = "book",
               data_seed: int = 0) -> dict[int, tuple[float, float]]:
    """Test accuracy (%) of Network 1 and the donor on their own digits, one seed, trained by
    :func:`trained_bases` on ``size`` images per digit for each of ``sizes`` (the other pools as
    at ``preset``). Chapter 4 uses it where a base stays below its target: does the gap close
    with more images? A size the main run used is read back from the store."""
    sizes = [check_int(f"sizes[{i}]", s, 1, MAX_PER_CLASS) for i, s in enumerate(sizes)]
    if not sizes:
        raise ParameterError("sizes is empty; give at least one number of images per digit")
    other = pool_sizes(preset, case)
    out = {}
    for per in sizes:
        pools = case_pools(train, case, base_per_class=per, shared_per_class=other["shared_per_class"],
                           val_per_class=other["val_per_class"], data_seed=data_seed)
        b = trained_bases(case, pools, test, [seed], recipe, donor_recipe)
        out[per] = (100 * b.acc1[0], 100 * b.acc2[0])
    return out


RECIPES: dict[str, Recipe] = {  # how the bases and scratch networks train, per preset
    "smoke": Recipe(epochs=2, lr=2e-3, batch_size=128, patience=1),
    "book": Recipe(epochs=5, lr=3e-3, batch_size=512, patience=None, schedule="onecycle", init="he"),
    "full": Recipe(epochs=100, lr=1e-3, batch_size=128, patience=10, init="he"),
}


def preset_settings(preset: str, n_bridge: int = 100) -> Settings:
    """The shared-layer settings of a preset, with ``n_bridge`` labelled transfer-digit images (at
    most the preset's ``shared_per_class``; ``smoke`` caps it there instead of refusing)."""
    check_choice("preset", preset, list(SCALES))
    cap = SCALES[preset]["shared_per_class"]
    n_bridge = check_int("n_bridge", n_bridge, 1, None if preset == "smoke" else cap)
    n_bridge = min(n_bridge, cap)
    base = {"smoke": Settings(epochs=3, patience=1, max_extend=0), "book": Settings(max_extend=1, patience=4),
            "full": Settings(epochs=400, patience=20)}[preset]
    return replace(base, n_bridge=n_bridge)
