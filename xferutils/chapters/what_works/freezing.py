"""Which layers to copy, freeze or retrain (chapter 5: partial unfreezing, Yosinski's design).

A network here is an :class:`~xferutils.core.models.MLP`: linear layers 1..L-1 form the feature
extractor and layer L is the head. Everything trains K seeds (and variants) at once with
:func:`xferutils.core.ensemble.fit_replicas`, stopping early on a validation split.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from xferutils.core.config import ParameterError, check_choice, check_int, check_seeds
from xferutils.core.data import Split, relabel
from xferutils.core.ensemble import Replicas, fit_replicas, replicate
from xferutils.core.models import MLP, linear_layers


@dataclass(frozen=True)
class Fit:
    """How the chapter trains: Adam, batch size, and early stopping on validation."""

    lr: float = 2e-3
    batch_size: int = 128
    max_epochs: int = 40
    patience: int = 3
    min_steps: int = 8

    def batch(self, n: int) -> int:
        """The batch size for ``n`` training rows: ``batch_size``, cut so that an epoch takes at
        least ``min_steps`` steps (never below 16). With a few hundred rows and 2 steps an epoch,
        ``patience`` epochs are too few steps for a deep net to leave its starting plateau, and
        early stopping ends it at chance (chapter 5's donor did, at epoch 1)."""
        return max(16, min(self.batch_size, n // self.min_steps))


# Chapter 5's scale per preset: images per digit, label grid, tasks, epochs (see the chapter).
# ``teacher``/``student``: Hinton et al.'s omitted-3 experiment (hidden units per layer, dropout,
# training images, 0 = all; the teacher's epoch cap and seeds, kept in the store). At ``full``
# their sizes (2 × 1200 teacher, 2 × 800 student on all images); smaller students at ``book``.
# ``meta``: training images per source digit (0-4) of section 5.
# ``ft_epochs``: the fixed budget of few-shot fine-tuning (set before any run, not validated).
SCALES = {
    "smoke": dict(ft_epochs=3, teacher=dict(hidden=64, dropout=0.2, images=3000, epochs=2, seeds=1),
                  student=dict(hidden=32, images=600),
                  meta=30, per_digit=30, val=20, unlabelled=20, pool=40, ns=[1, 5], tasks=10, episodes=3,
                  halves=(50, 20), epochs=3, temps=[2, 20], steps=30),
    "book": dict(ft_epochs=15, teacher=dict(hidden=800, dropout=0.2, images=0, epochs=8, seeds=1),
                 student=dict(hidden=200, images=3000),
                 meta=500, per_digit=60, val=50, unlabelled=60, pool=1000, ns=[1, 10, 100, 1000], tasks=50,
                 episodes=8, halves=(200, 50), epochs=120, temps=[0.25, 0.5, 1, 2, 5, 20],
                 steps=100),
    "full": dict(ft_epochs=60, teacher=dict(hidden=1200, dropout=0.5, images=0, epochs=60, seeds=3),
                 student=dict(hidden=800, images=0),
                 meta=5000, per_digit=1000, val=500, unlabelled=1000, pool=3000,
                 ns=[1, 3, 10, 30, 100, 300, 1000], tasks=600, episodes=100, halves=(5000, 500), epochs=200,
                 temps=[0.25, 0.5, 1, 2, 5, 10, 20, 50], steps=300),
}


def chapter_scale(preset: str, *, seed0: int, n_seeds: int, omit: int, n_way: int, n_partial: int) -> dict:
    """Chapter 5's knobs validated (a clear error names a bad one) and its scale for ``preset``."""
    scale = SCALES[check_choice("preset", preset, list(SCALES))]
    check_int("seed0", seed0, 0)
    check_int("n_seeds", n_seeds, 0, 100)
    check_int("omit", omit, 0, 9)
    check_int("n_way", n_way, 2, 5)
    check_int("n_partial", n_partial, 1, scale["pool"])
    return scale


def bridging_settings(preset: str, n_bridge: int):
    """Chapter 4's feature-bridging settings for ``preset`` (early stopping on validation features,
    its cap and patience) with ``n_bridge`` labelled transfer-digit images (chapter 5)."""
    from dataclasses import replace

    from xferutils.core.sharing import preset_settings

    return replace(preset_settings(preset, 1), n_bridge=check_int("n_bridge", n_bridge, 1))


@dataclass(frozen=True)
class Pair:
    """Network 1 and Network 2, one trained copy per seed (what ``shared_layers.extract`` reads)."""

    net1: Sequence[MLP]
    net2: Sequence[MLP]


def relabelled(data: Split, digits: Sequence[int]) -> Split:
    """Only the images of ``digits``, labelled 0..len(digits)-1 in that order."""
    cls = relabel(data.y, list(digits))
    keep = cls >= 0
    return Split(data.x[keep], cls[keep])


def train_classifier(make: Callable[[int], nn.Module], train: Split, val: Split, digits: Sequence[int],
                     seeds: Sequence[int], fit: Fit = Fit()) -> Replicas:
    """K replicas of ``make(n_classes)`` trained on ``digits`` (relabelled 0..), stopped on validation."""
    models, rows = replicate(lambda: make(len(digits)), seeds), relabelled(train, digits)
    return fit_replicas(models, rows, seeds, epochs=fit.max_epochs, lr=fit.lr,
                        batch_size=fit.batch(len(rows)), val=relabelled(val, digits), patience=fit.patience)


# --- copying, growing and freezing layers -----------------------------------------------------

def copy_layers(src: nn.Module, dst: nn.Module, n: int, freeze: bool = False) -> nn.Module:
    """Copy the weights and biases of the first ``n`` linear layers of ``src`` into ``dst`` (in
    place; returned). With ``freeze`` those copied layers stop training; nothing else changes."""
    s, d = linear_layers(src), linear_layers(dst)
    n = check_int("n", n, 0, min(len(s), len(d)))
    for a, b in zip(s[:n], d[:n]):
        if a.weight.shape != b.weight.shape:
            raise ParameterError(f"layer shapes differ: {tuple(a.weight.shape)} vs {tuple(b.weight.shape)}")
        with torch.no_grad():
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
        b.requires_grad_(not freeze)
    return dst


def grow_head(model: MLP, n_new: int, seed: int = 0) -> MLP:
    """A copy of ``model`` whose head has ``n_new`` more outputs: the old rows are kept, the new
    ones start small and random (seeded); every parameter is trainable."""
    n_new = check_int("n_new", n_new, 1)
    out = copy.deepcopy(model).requires_grad_(True)
    old = model.head
    head = nn.Linear(old.in_features, old.out_features + n_new)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.cat([old.weight, 0.01 * torch.randn(n_new, old.in_features, generator=g)
                                     .to(old.weight)]))
        head.bias.copy_(torch.cat([old.bias, old.bias.new_zeros(n_new)]))
    out.head = head.to(old.weight.device)
    return out


def train_top(model: nn.Module, k: int) -> nn.Module:
    """Freeze every layer but the head and the ``k`` linear layers below it (in place)."""
    layers = linear_layers(model)
    k = check_int("k", k, 0, len(layers) - 1)
    model.requires_grad_(False)
    for layer in layers[len(layers) - 1 - k:]:
        layer.requires_grad_(True)
    return model


# --- partial base adaptation (document 000, recommended solution 1) -------------------------------

@dataclass
class Partial:
    """Network 1 adapted with its top ``k`` layers unfrozen, for each k (lists: one per seed)."""

    ks: list[int]
    transfer: dict[int, list[float]]
    retention: dict[int, list[float]]
    base_retention: list[float]
    epochs: dict[int, list[int]]
    cpu_seconds: float

    def forgetting(self, k: int) -> list[float]:
        """Retention lost on Network 1's own digits, per seed (base minus adapted)."""
        return [b - a for b, a in zip(self.base_retention, self.retention[k])]

    def as_dict(self) -> dict:
        return {"ks": self.ks, "transfer": self.transfer, "retention": self.retention,
                "base_retention": self.base_retention, "epochs": self.epochs, "cpu_seconds": self.cpu_seconds,
                "forgetting": {k: self.forgetting(k) for k in self.ks}}


def balanced_rows(own: Split, extra: Split, digits: Sequence[int], per_class: int) -> Split:
    """Own-digit images plus the ``extra`` (transfer-digit) images tiled (or cut) to ``per_class``
    rows, so the new digit weighs as much as an old one; labels are positions in ``digits``."""
    per_class = check_int("per_class", per_class, 1)
    if len(extra) == 0:
        raise ParameterError("extra is empty; give at least one transfer-digit image")
    reps = -(-per_class // len(extra))
    tiled = Split(extra.x.repeat(reps, 1)[:per_class], extra.y.repeat(reps)[:per_class])
    both = Split(torch.cat([own.x, tiled.x]), torch.cat([own.y, tiled.y]))
    return relabelled(both, digits)


def partial_unfreeze(nets: Sequence[MLP], own: Split, extras: Sequence[Split], val: Split, test: Split,
                     digits1: Sequence[int], transfer: int, seeds: Sequence[int], ks: Sequence[int] | None = None,
                     fit: Fit = Fit()) -> Partial:
    """Grow Network 1's head by the transfer digit and train it with the top k layers unfrozen, for
    every k at once (k = 0: the head only; k = L-1: the whole network). Replica (k, seed) sees
    Network 1's own labelled digits ``own`` and that seed's labelled transfer images ``extras[i]``."""
    seeds = check_seeds("seeds", seeds)
    if len(nets) != len(seeds) or len(extras) != len(seeds):
        raise ParameterError("give one Network 1 and one set of transfer images per seed")
    digits = [*digits1, transfer]
    n_layers = len(linear_layers(nets[0]))
    ks = list(range(n_layers)) if ks is None else [check_int("k", k, 0, n_layers - 1) for k in ks]
    per_class = len(own) // len(digits1)
    models, rows, rseeds = [], [], []
    for k in ks:
        for i, (net, s) in enumerate(zip(nets, seeds)):
            models.append(train_top(grow_head(net, 1, s), k))
            rows.append(balanced_rows(own, extras[i], digits, per_class))
            rseeds.append(s * 100 + k)
    t0 = time.process_time()
    reps = fit_replicas(models, rows, rseeds, epochs=fit.max_epochs, lr=fit.lr,
                        batch_size=fit.batch(len(rows[0])), val=relabelled(val, digits), patience=fit.patience)
    cpu = time.process_time() - t0
    pred = torch.tensor(digits, device=test.y.device)[reps.predict(test.x)]
    ok = (pred == test.y).float()
    is_t = test.y == transfer
    own_t = torch.isin(test.y, torch.tensor(list(digits1), device=test.y.device))
    with torch.no_grad():
        base_pred = torch.stack([torch.tensor(list(digits1), device=test.y.device)[m(test.x).argmax(-1)]
                                 for m in nets])
    base_ret = (base_pred == test.y).float()[:, own_t].mean(-1).tolist()
    n = len(seeds)
    tr, re_ = ok[:, is_t].mean(-1).tolist(), ok[:, own_t].mean(-1).tolist()
    eps = [h.best_epoch for h in reps.history]
    return Partial(ks, {k: tr[j * n:(j + 1) * n] for j, k in enumerate(ks)},
                   {k: re_[j * n:(j + 1) * n] for j, k in enumerate(ks)}, base_ret,
                   {k: eps[j * n:(j + 1) * n] for j, k in enumerate(ks)}, cpu)


def partial_figure(p: Partial) -> plt.Figure:
    """Transfer against retention, one point per k (mean ± std over seeds)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    t = np.array([p.transfer[k] for k in p.ks]) * 100
    r = np.array([p.retention[k] for k in p.ks]) * 100
    ax.errorbar(r.mean(1), t.mean(1), xerr=r.std(1, ddof=1), yerr=t.std(1, ddof=1), marker="o", capsize=3)
    for k, x, y in zip(p.ks, r.mean(1), t.mean(1)):
        ax.annotate(f"k={k}", (x, y), textcoords="offset points", xytext=(6, 5), fontsize=9,
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.axvline(100 * np.mean(p.base_retention), color="gray", ls=":", lw=1, label="Network 1 before")
    ax.set_xlabel("retention: own digits (%)")
    ax.set_ylabel("transfer digit (%)")
    ax.legend(fontsize=9, loc="lower left")
    fig.tight_layout()
    return fig


# --- Yosinski et al. 2014 on MNIST halves -----------------------------------------------------

VARIANTS = ("AnB", "AnB+", "BnB", "BnB+")


HALVES_WIDTHS = (784, 256, 192, 128, 64)  # the first hidden layer is the widest, not the bottleneck


def halves_net(n_classes: int = 5) -> MLP:
    """The network of the MNIST-halves experiment: hidden layers of 256, 192, 128 and 64 units,
    narrowing towards the head, so that freezing an early layer does not freeze the network's
    narrowest layer (an earlier version had four 64-unit layers: copying layer 1 then fixed its
    bottleneck and measured capacity, not generality)."""
    return MLP(list(HALVES_WIDTHS), n_classes)


@dataclass
class Transferability:
    """Test accuracy on task B per variant and copied depth n (lists: one per seed)."""

    ns: list[int]
    acc: dict[str, dict[int, list[float]]]
    base_b: list[float]
    base_a: list[float]
    epochs: dict[str, dict[int, list[int]]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"ns": self.ns, "acc": self.acc, "base_b": self.base_b, "base_a": self.base_a,
                "epochs": self.epochs}


def transfer_nets(make: Callable[[], MLP], src: Sequence[MLP], ns: Sequence[int], seeds: Sequence[int],
                  fine_tune: bool) -> list[MLP]:
    """For every (n, seed): a fresh ``make()`` (seeded) with ``src[seed]``'s first n layers copied,
    frozen unless ``fine_tune``. Order: n-major."""
    out = []
    for n in ns:
        for i, s in enumerate(seeds):
            torch.manual_seed(10_000 + 97 * n + s)
            out.append(copy_layers(src[i], make(), n, freeze=not fine_tune))
    return out


def yosinski(make: Callable[[], MLP], a: tuple[Split, Split], b: tuple[Split, Split], test_b: Split,
             seeds: Sequence[int], fit: Fit = Fit()) -> Transferability:
    """Yosinski et al.'s design: base A and base B, then for n = 1..L-1 the first n layers copied
    from A (AnB) or from B itself (BnB, the selffer), frozen or fine-tuned (+), the rest retrained
    on B. ``a``, ``b``: (train, val) splits labelled 0.. of each task."""
    seeds = check_seeds("seeds", seeds)
    base_a = fit_replicas(replicate(make, seeds), a[0], seeds, epochs=fit.max_epochs, lr=fit.lr,
                          batch_size=fit.batch(len(a[0])), val=a[1], patience=fit.patience)
    base_b = fit_replicas(replicate(make, seeds), b[0], seeds, epochs=fit.max_epochs, lr=fit.lr,
                          batch_size=fit.batch(len(b[0])), val=b[1], patience=fit.patience)
    na, nb = base_a.unstack(), base_b.unstack()
    ns = list(range(1, len(linear_layers(na[0]))))
    models, names = [], []
    for v in VARIANTS:
        models += transfer_nets(make, na if v.startswith("A") else nb, ns, seeds, fine_tune=v.endswith("+"))
        names += [(v, n) for n in ns for _ in seeds]
    rseeds = list(range(len(models)))
    reps = fit_replicas(models, b[0], [1000 + s for s in rseeds], epochs=fit.max_epochs, lr=fit.lr,
                        batch_size=fit.batch(len(b[0])), val=b[1], patience=fit.patience)
    acc, eps = reps.evaluate(test_b), [h.best_epoch for h in reps.history]
    out: dict[str, dict[int, list[float]]] = {v: {n: [] for n in ns} for v in VARIANTS}
    ep: dict[str, dict[int, list[int]]] = {v: {n: [] for n in ns} for v in VARIANTS}
    for (v, n), x, e in zip(names, acc, eps):
        out[v][n].append(x)
        ep[v][n].append(e)
    return Transferability(ns, out, base_b.evaluate(test_b), base_a.evaluate(a[1]), ep)


def yosinski_figure(t: Transferability) -> plt.Figure:
    """Accuracy on B against the number of copied layers n, per variant, with base B as a band."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    styles = {"AnB": ("#d62728", "o", "-"), "AnB+": ("#d62728", "s", "--"),
              "BnB": ("#1f77b4", "o", "-"), "BnB+": ("#1f77b4", "s", "--")}
    for v in VARIANTS:
        arr = np.array([t.acc[v][n] for n in t.ns]) * 100
        c, m, ls = styles[v]
        ax.errorbar(t.ns, arr.mean(1), yerr=arr.std(1, ddof=1), color=c, marker=m, ls=ls, capsize=3, label=v)
    b = np.array(t.base_b) * 100
    ax.axhspan(b.mean() - b.std(ddof=1), b.mean() + b.std(ddof=1), color="gray", alpha=0.25,
               label="base B (±1 std)")
    ax.set_xticks(t.ns)
    ax.set_xlabel("layers copied, n")
    ax.set_ylabel("test accuracy on task B (%)")
    ax.legend(fontsize=9, ncol=3, loc="lower left")
    fig.tight_layout()
    return fig


def check_variant(v: str) -> str:
    """One of :data:`VARIANTS`."""
    return check_choice("variant", v, VARIANTS)
