"""Shared-layer transfer between two frozen networks (chapter 4, seed 000).

Network 1 (a WideNN, the test subject) knows ``digits1``; Network 2 (a DeepNN, the donor) knows
``digits2``. Both bases stay frozen, so their penultimate features are computed once and cached.
Two projections map the 64-d and 32-d features into one space, where shared layers (3 hidden
layers and a classifier over every digit of either network) serve both networks. Six approaches
(and a no-transfer reference) differ only in what they see and in the terms of their objective;
all train K seeds at once with :func:`xferutils.ensemble.fit_replicas`.

What each approach sees (the rows of :func:`visible_rows`):

- every approach: Network 1's features of its own digits, labelled; Network 2's features of its
  own digits (the transfer digit included), labelled;
- ``bridging`` additionally: Network 1's features of ``n_bridge`` labelled transfer-digit images;
- the alignment terms (``alignment``, ``contrastive``, ``prototypes``) pair the two networks'
  features of the same image, which exist only for digits both networks know (the shared digits).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .config import ParameterError, check_choice, check_digits, check_float, check_int, check_seeds
from .data import Split, per_class, relabel
from .domain import grad_reverse
from .ensemble import Replicas, fit_replicas, replicate
from .models import MLP, count_parameters, deep_nn, embed, wide_nn
from .train import History

TEST_CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "small": ((0, 1, 2), (2, 3, 4), 3),
    "medium": ((0, 1, 2, 3, 4), (2, 3, 4, 5, 6), 5),
    "large": ((0, 1, 2, 3, 4, 5, 6, 7), (2, 3, 4, 5, 6, 7, 8, 9), 8),
}
APPROACHES = ("none", "bridging", "alignment", "adversarial", "contrastive", "prototypes", "memory")
ZERO_SHOT = ("alignment", "adversarial", "contrastive", "prototypes", "memory")
CRITERIA = {"transfer": 0.80, "retention": 0.90, "isolation": 0.10}  # seed 000's success criteria


# --- test cases -------------------------------------------------------------------------------

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


# --- base networks and cached features --------------------------------------------------------

def pool(data: Split, digits: Sequence[int], n_per_class: int, seed: int) -> Split:
    """``n_per_class`` images of each of ``digits`` (labels stay digits), drawn by ``seed``."""
    n_per_class = check_int("n_per_class", n_per_class, 1)
    return per_class(data, dict.fromkeys(digits, n_per_class), seed)


def case_tensor(classes: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """``classes`` as a tensor on the device of ``like``."""
    return torch.tensor(list(classes), device=like.device)


@dataclass
class Bases:
    """K trained copies of Network 1 and Network 2 (one per seed), frozen from here on."""

    net1: list[MLP]
    net2: list[MLP]
    acc1: list[float]
    acc2: list[float]
    seconds: float


def train_base(arch: str, train: Split, test: Split, digits: Sequence[int], seeds: Sequence[int], *,
               epochs: int, lr: float = 2e-3, batch_size: int = 256) -> tuple[list[MLP], list[float], Replicas]:
    """K replicas of ``wide`` (Network 1) or ``deep`` (Network 2) trained on ``digits``, vectorized."""
    make = {"wide": wide_nn, "deep": deep_nn}[check_choice("arch", arch, ["wide", "deep"])]
    cls = list(digits)
    tr = Split(train.x[relabel(train.y, cls) >= 0], relabel(train.y, cls)[relabel(train.y, cls) >= 0])
    te_keep = relabel(test.y, cls) >= 0
    te = Split(test.x[te_keep], relabel(test.y, cls)[te_keep])
    reps = fit_replicas(replicate(lambda: make(len(cls)), seeds), tr, seeds, epochs=epochs, lr=lr,
                        batch_size=batch_size)
    nets = [m.requires_grad_(False) for m in reps.unstack()]
    return nets, reps.evaluate(te), reps


def train_bases(case: Case, train: Split, test: Split, seeds: Sequence[int], *, epochs: int,
                lr: float = 2e-3, batch_size: int = 256) -> Bases:
    """Network 1 (WideNN) on ``case.digits1`` and Network 2 (DeepNN) on ``case.digits2``."""
    t0 = time.perf_counter()
    net1, acc1, _ = train_base("wide", train, test, case.digits1, seeds, epochs=epochs, lr=lr,
                               batch_size=batch_size)
    net2, acc2, _ = train_base("deep", train, test, case.digits2, [s + 1000 for s in seeds],
                               epochs=epochs, lr=lr, batch_size=batch_size)
    return Bases(net1, net2, acc1, acc2, time.perf_counter() - t0)


@dataclass
class Features:
    """Cached penultimate features of one image set through every replica of both bases."""

    f1: torch.Tensor  # (K, n, 64): Network 1
    f2: torch.Tensor  # (K, n, 32): Network 2
    y: torch.Tensor   # (n,) digits

    def __len__(self) -> int:
        return len(self.y)


def extract(bases: Bases, data: Split) -> Features:
    """Features of ``data`` through every frozen base, computed once (no gradients)."""
    return Features(torch.stack([embed(m, data.x) for m in bases.net1]),
                    torch.stack([embed(m, data.x) for m in bases.net2]), data.y)


# --- shared layers ----------------------------------------------------------------------------

def memory_read(h: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention read of a memory bank: weights ``softmax(h Mᵀ/√d)`` and their convex mix of rows."""
    weights = torch.softmax(h @ memory.T / math.sqrt(memory.shape[-1]), dim=-1)
    return weights @ memory, weights


class SharedNet(nn.Module):
    """Projections of both networks' features, 3 shared hidden layers and a shared classifier.

    Optional parts: a memory bank read by attention and concatenated with the hidden layer before
    the classifier (``memory_slots``), and a domain discriminator on the projected features
    behind a gradient-reversal layer of strength ``adv_lambda`` (``discriminator``).
    """

    def __init__(self, d1: int, d2: int, n_classes: int, width: int = 64, proj_dim: int = 32,
                 memory_slots: int = 0, discriminator: bool = False, adv_lambda: float = 1.0) -> None:
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

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything an objective needs from a packed row batch (see :func:`pack`)."""
        f1, f2 = x[..., :self.d1], x[..., self.d1:self.d1 + self.d2]
        z1, z2 = self.proj1(f1), self.proj2(f2)
        h1, h2 = self.body(z1), self.body(z2)
        out = {"z1": z1, "z2": z2, "h1": h1, "h2": h2, "logit1": self.classify(h1), "logit2": self.classify(h2)}
        if self.disc is not None:
            out["dom1"] = self.disc(grad_reverse(z1, self.adv_lambda)).squeeze(-1)
            out["dom2"] = self.disc(grad_reverse(z2, self.adv_lambda)).squeeze(-1)
        return out


# --- what each approach sees ------------------------------------------------------------------

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


def visible_rows(approach: str, feats: Features, case: Case, seeds: Sequence[int],
                 n_bridge: int = 0, use_donor: bool = True) -> list[Split]:
    """The training rows of ``approach``, one split per replica (labels are class indices).

    Row i is image i of the pool: Network 1's features are visible (m1 = 1) if its digit is in
    ``digits1``, Network 2's (m2 = 1) if it is in ``digits2``; the features a network may not see
    are zeroed. For ``bridging`` only, ``n_bridge`` transfer-digit images per replica (chosen by
    its seed) are added as Network-1-only rows, repeated so that the transfer digit weighs as
    much as any other class in Network 1's loss (class-balanced oversampling). With
    ``use_donor=False`` Network 2 sees nothing at all.
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
            pick = bridge_pick(y, case, n_bridge, seed).repeat(max(1, len(where) // n_bridge))
            ones = torch.ones(len(pick), dtype=torch.bool, device=y.device)
            extra = pack(feats.f1[k][pick], feats.f2[k][pick], ones, ~ones)
            out.append(Split(torch.cat([x, extra]), torch.cat([labels, labels[pick]])))
        else:
            out.append(Split(x, labels))
    return out


# --- objectives -------------------------------------------------------------------------------

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
    """Knobs of the shared-layer training (one set for every approach)."""

    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 512
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


def make_objective(approach: str, d1: int, d2: int, s: Settings):
    """The per-replica objective of ``approach`` for :func:`fit_replicas`.

    Every approach: cross-entropy of each network's path on the rows it may see. Then
    ``alignment``/``prototypes``: + MSE between the two projections of the same (shared-digit)
    image; ``adversarial``: + the discriminator's cross-entropy (network 1 = 0, network 2 = 1),
    whose gradient reaches the projections reversed; ``contrastive``: + :func:`contrastive_loss`.
    """
    check_choice("approach", approach, APPROACHES)

    def objective(fmodel, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = fmodel(xb)
        m1, m2 = xb[:, d1 + d2], xb[:, d1 + d2 + 1]
        loss = (_masked_mean(F.cross_entropy(out["logit1"], yb, reduction="none"), m1)
                + _masked_mean(F.cross_entropy(out["logit2"], yb, reduction="none"), m2))
        if approach in ("alignment", "prototypes"):
            loss = loss + s.align_weight * _masked_mean((out["z1"] - out["z2"]).pow(2).mean(-1), m1 * m2)
        elif approach == "adversarial":
            dom = (_masked_mean(F.binary_cross_entropy_with_logits(out["dom1"], torch.zeros_like(m1),
                                                                   reduction="none"), m1)
                   + _masked_mean(F.binary_cross_entropy_with_logits(out["dom2"], torch.ones_like(m2),
                                                                     reduction="none"), m2))
            loss = loss + s.adv_weight * dom
        elif approach == "contrastive":
            loss = loss + s.contrast_weight * contrastive_loss(out["z1"], out["z2"], yb, m1, m2, s.margin)
        return loss

    return objective


# --- prototypes -------------------------------------------------------------------------------

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


# --- training one approach --------------------------------------------------------------------

@dataclass
class Outcome:
    """One approach trained for K seeds: its models, cost and Network 1's predictions."""

    approach: str
    case: Case
    models: list[SharedNet]
    seconds: float
    cpu_seconds: float
    trainable: int
    history: list[History]
    prototypes: list[torch.Tensor] | None = None
    bridge_idx: list[torch.Tensor] | None = None  # bridging: the transfer images Network 1 saw

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


def train_approach(approach: str, feats: Features, case: Case, seeds: Sequence[int],
                   settings: Settings = Settings()) -> Outcome:
    """Train the shared parts of ``approach`` on cached features for every seed (vectorized).

    The bases are not involved: only projections, shared layers (and the discriminator or the
    memory) have parameters here. ``prototypes`` trains as ``alignment`` and then classifies
    Network 1's path by the nearest class prototype in the last hidden layer: prototypes of the
    donor's digits come from Network 2's path, those of Network 1's other digits from its own.
    """
    check_choice("approach", approach, APPROACHES)
    seeds = check_seeds("seeds", seeds)
    s = settings
    t0, c0 = time.perf_counter(), time.process_time()
    rows = visible_rows(approach, feats, case, seeds, s.n_bridge, s.use_donor)
    d1, d2 = feats.f1.shape[-1], feats.f2.shape[-1]

    def make() -> SharedNet:
        return SharedNet(d1, d2, len(case.classes), s.width, s.proj_dim,
                         memory_slots=s.memory_slots if approach == "memory" else 0,
                         discriminator=approach == "adversarial", adv_lambda=s.adv_lambda)

    reps = fit_replicas(replicate(make, seeds), rows, seeds, epochs=s.epochs, lr=s.lr,
                        batch_size=s.batch_size, objective=make_objective(approach, d1, d2, s))
    models = [m.requires_grad_(False) for m in reps.unstack()]
    protos = None
    if approach == "prototypes":
        protos = []
        in2 = torch.isin(case_tensor(case.classes, feats.y), torch.tensor(case.digits2, device=feats.y.device))
        for k, m in enumerate(models):
            r = rows[k]
            m1, m2 = r.x[:, d1 + d2], r.x[:, d1 + d2 + 1]
            with torch.no_grad():
                p2 = class_prototypes(m.body(m.proj2(r.x[:, d1:d1 + d2])), r.y, len(case.classes), m2)
                p1 = class_prototypes(m.body(m.proj1(r.x[:, :d1])), r.y, len(case.classes), m1)
            protos.append(torch.where(in2[:, None], p2, p1))
    seen = [bridge_pick(feats.y, case, s.n_bridge, sd) for sd in seeds] if approach == "bridging" else None
    return Outcome(approach, case, models, time.perf_counter() - t0, time.process_time() - c0,
                   count_parameters(make()), reps.history, protos, seen)


# --- metrics ----------------------------------------------------------------------------------

def transfer_metrics(pred: torch.Tensor, y: torch.Tensor, case: Case) -> dict[str, list[float]]:
    """Seed 000's metrics from Network 1's predicted digits ``pred`` (K, n) on test digits ``y`` (n,).

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


# --- references: linear probe (upper bound) and Network 1 from scratch ------------------------

def linear_probe(train: Features, test: Features, digits: Sequence[int], seeds: Sequence[int], *,
                 epochs: int, lr: float = 1e-2, batch_size: int = 512) -> dict[str, list[float]]:
    """A linear classifier on Network 1's frozen features, given labels of ``digits``.

    Returns per-replica test accuracy on each digit (``"d3"``...) and overall. As a linear read-out
    it bounds from below what the features hold, and it is what any head could reach with labels.
    """
    cls = list(digits)
    keep = relabel(train.y, cls) >= 0
    splits = [Split(train.f1[k][keep], relabel(train.y, cls)[keep]) for k in range(len(seeds))]
    reps = fit_replicas(replicate(lambda: nn.Linear(train.f1.shape[-1], len(cls)), seeds), splits, seeds,
                        epochs=epochs, lr=lr, batch_size=batch_size)
    tkeep = relabel(test.y, cls) >= 0
    pred = case_tensor(cls, test.y)[reps.predict(test.f1[:, tkeep])]
    yt = test.y[tkeep]
    out = {f"d{d}": (pred[:, yt == d] == d).float().mean(-1).tolist() for d in cls}
    out["all"] = (pred == yt).float().mean(-1).tolist()
    return out


@dataclass
class Scratch:
    """Network 1 trained from scratch on its digits plus the transfer digit."""

    metrics: dict[str, list[float]]
    seconds: float
    cpu_seconds: float
    trainable: int
    epochs: list[int]
    history: list[History] = field(default_factory=list)


def train_scratch(case: Case, train: Split, test: Split, seeds: Sequence[int], *, epochs: int,
                  lr: float = 2e-3, batch_size: int = 256) -> Scratch:
    """The efficiency baseline: a fresh WideNN on ``digits1 + [transfer]`` with all their labels."""
    cls = sorted((*case.digits1, case.transfer))
    t0, c0 = time.perf_counter(), time.process_time()
    nets, _, reps = train_base("wide", train, test, cls, seeds, epochs=epochs, lr=lr, batch_size=batch_size)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    pred = case_tensor(cls, test.y)[reps.predict(test.x)]
    return Scratch(transfer_metrics(pred, test.y, case), seconds, cpu, count_parameters(nets[0]),
                   [epochs_to_converge(h.loss) for h in reps.history], reps.history)


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
    machine) include the one-off feature extraction ``feats_time``/``feats_cpu``.
    """
    m = transfer_metrics(out.predict1(test.f1), test.y, out.case)
    d2 = torch.isin(test.y, case_tensor(out.case.digits2, test.y))
    m["donor"] = (out.predict2(test.f2[:, d2]) == test.y[d2]).float().mean(-1).tolist()
    m["align"] = alignment_ratio(out, test)
    if train is not None and out.bridge_idx is not None:
        f1 = torch.stack([train.f1[k][idx] for k, idx in enumerate(out.bridge_idx)])
        m["seen"] = (out.predict1(f1) == out.case.transfer).float().mean(-1).tolist()
    m.update(seconds=out.seconds + feats_time, cpu_seconds=out.cpu_seconds + feats_cpu, trainable=out.trainable,
             epochs=[epochs_to_converge(h.loss) for h in out.history])
    return m


# --- one test case, end to end ----------------------------------------------------------------

@dataclass
class CaseResult:
    """Everything chapter 4 measures on one test case (lists hold one value per seed)."""

    case: Case
    seeds: list[int]
    base_acc1: list[float]
    base_acc2: list[float]
    base_seconds: float
    feature_seconds: float
    feature_cpu_seconds: float
    metrics: dict[str, dict[str, object]]
    shares: dict[str, list[list[float]]]
    probe: dict[str, list[float]]
    scratch: Scratch
    train: Features
    test: Features


def run_case(case: Case, train: Split, test: Split, seeds: Sequence[int], settings: Settings = Settings(), *,
             base_per_class: int = 1000, base_epochs: int = 6, base_batch: int = 128,
             shared_per_class: int = 300, probe_epochs: int = 30, seed0: int = 0) -> CaseResult:
    """Bases, cached features, every approach, the linear probe and the scratch baseline for ``case``.

    The bases and the scratch network train on ``base_per_class`` images per digit; the shared
    parts and the probe on the features of another ``shared_per_class`` per digit.
    """
    seeds = check_seeds("seeds", seeds)
    base_pool = pool(train, case.classes, base_per_class, seed0)
    bases = train_bases(case, base_pool, test, seeds, epochs=base_epochs, batch_size=base_batch)
    t0, c0 = time.perf_counter(), time.process_time()
    keep = torch.isin(test.y, case_tensor(case.classes, test.y))
    ftrain = extract(bases, pool(train, case.classes, shared_per_class, seed0 + 1))
    ftest = extract(bases, Split(test.x[keep], test.y[keep]))
    feat_s, feat_c = time.perf_counter() - t0, time.process_time() - c0
    metrics, shares = {}, {}
    for approach in APPROACHES:
        out = train_approach(approach, ftrain, case, seeds, settings)
        metrics[approach] = outcome_metrics(out, ftest, feat_s, feat_c)
        shares[approach] = prediction_shares(out.predict1(ftest.f1), ftest.y, case.transfer).tolist()
    probe = linear_probe(ftrain, ftest, sorted((*case.digits1, case.transfer)), seeds, epochs=probe_epochs)
    scratch = train_scratch(case, base_pool, test, seeds, epochs=base_epochs, batch_size=base_batch)
    return CaseResult(case, seeds, bases.acc1, bases.acc2, bases.seconds, feat_s, feat_c, metrics, shares,
                      probe, scratch, ftrain, ftest)


def bridge_sweep(result: CaseResult, n_bridges: Sequence[int], settings: Settings = Settings()) -> dict[int, dict]:
    """Feature bridging with each number of labelled transfer-digit images ``n_bridges``."""
    out = {}
    for n in n_bridges:
        s = Settings(**{**settings.__dict__, "n_bridge": n})
        out[int(n)] = outcome_metrics(train_approach("bridging", result.train, result.case, result.seeds, s),
                                      result.test, train=result.train)
    return out


def criteria(metrics: dict[str, object], scratch_cpu_seconds: float) -> dict[str, bool]:
    """Seed 000's success criteria on the seed-mean of each metric (True = pass).

    "Faster than scratch" compares CPU time (features included) with the scratch network's.
    """
    def mean(v: object) -> float:
        return sum(v) / len(v) if isinstance(v, list) else float(v)

    return {"transfer": mean(metrics["transfer"]) > CRITERIA["transfer"],
            "retention": mean(metrics["retention"]) > CRITERIA["retention"],
            "isolation": mean(metrics["isolation"]) < CRITERIA["isolation"],
            "faster": mean(metrics["cpu_seconds"]) < scratch_cpu_seconds}
