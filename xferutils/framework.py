"""The formal framework of transfer learning made computable (chapter 2, seeds 003 and 004).

- Shifts between a source and a target: covariate shift (:func:`covariate_shift`), label shift
  (:func:`label_shift`, :func:`prior_accuracy`) and a change of task (:func:`permute_labels`).
- Trainable-parameter counts of full fine-tuning, feature extraction, LoRA and adapters
  (:func:`parameter_table`); the objectives themselves live in :mod:`xferutils.strategies`.
- The proxy A-distance 2(1 − 2ε) of Ben-David et al. from a held-out domain classifier
  (:func:`proxy_a_distances`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import data as xdata
from . import ensemble, models, peft
from .config import ParameterError, check_float, check_int, check_seeds
from .data import Split, per_class

# --- shifts between source and target -------------------------------------------------------


def covariate_shift(split: Split, kind: str, strength: float, seed: int = 0) -> Split:
    """The same digits and labels with P(X) moved: ``rotate`` (degrees) or ``noise`` (std)."""
    return Split(xdata.shift(split.x, kind, strength, seed), split.y)


def check_priors(priors: Sequence[float], n_classes: int) -> np.ndarray:
    """Class priors as an array: ``n_classes`` non-negative numbers summing to 1."""
    p = np.asarray(priors, dtype=float)
    if p.shape != (n_classes,) or not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1) > 1e-6:
        raise ParameterError(f"priors={list(priors)} is not allowed; give {n_classes} non-negative "
                             f"numbers that sum to 1")
    return p


def label_shift(split: Split, priors: Sequence[float], n: int, seed: int) -> Split:
    """Resample ``split`` to ``n`` samples whose class c has frequency ``priors[c]``.

    P(Y) changes while P(X|Y) stays: each class's images are drawn (without replacement) from
    that class of ``split``. Counts are ``n·priors`` rounded by largest remainder.
    """
    n_classes = int(split.y.max().item()) + 1
    p = check_priors(priors, n_classes)
    n = check_int("n", n, 1)
    raw = n * p
    counts = np.floor(raw).astype(int)
    counts[np.argsort(counts - raw)[: n - counts.sum()]] += 1
    return per_class(split, {c: int(k) for c, k in enumerate(counts)}, check_int("seed", seed, 0),
                     name=f"n={n} with priors {[round(float(v), 3) for v in p]}")


def prior_accuracy(per_class: Sequence[float], priors: Sequence[float]) -> float:
    """Accuracy expected under label shift: Σ_c π_T(c)·acc_c (P(X|Y) unchanged, chapter 2)."""
    p = check_priors(priors, len(per_class))
    return float(np.dot(p, np.asarray(per_class, dtype=float)))


def derangement(n: int, seed: int) -> list[int]:
    """A random permutation of 0..n-1 that moves every element (no fixed point)."""
    n = check_int("n", n, 2)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    while True:
        perm = rng.permutation(n)
        if np.all(perm != np.arange(n)):
            return perm.tolist()


def permute_labels(split: Split, perm: Sequence[int]) -> Split:
    """The same images with class c renamed ``perm[c]``: P(X) stays, P(Y|X) changes."""
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(len(perm))):
        raise ParameterError(f"perm={perm} is not a permutation of 0..{len(perm) - 1}")
    table = torch.tensor(perm, device=split.y.device)
    return Split(split.x, table[split.y])


# --- trainable parameters of each update rule ------------------------------------------------


def parameter_table(archs: Mapping[str, Callable[[], nn.Module]], ranks: Sequence[int] = (1, 4, 16),
                    bottlenecks: Sequence[int] = (8, 32)) -> list[dict]:
    """Trainable parameters of each update rule on each architecture, beside full fine-tuning.

    Rows: full fine-tuning, feature extraction (head only), LoRA of rank r on every backbone
    layer (+ head), adapters of bottleneck b after every hidden activation (+ head).
    """
    rows = []
    for arch, make in archs.items():
        full = models.count_parameters(make())
        head = make()
        head.features.requires_grad_(False)
        variants = [("full fine-tuning", make()), ("feature extraction (head only)", head)]
        variants += [(f"LoRA r={r}", peft.add_lora(make(), rank=r, alpha=2.0 * r)) for r in ranks]
        variants += [(f"adapters b={b}", peft.add_adapters(make(), bottleneck=b)) for b in bottlenecks]
        for method, m in variants:
            k = models.count_parameters(m, trainable_only=True)
            rows.append({"architecture": arch, "method": method, "trainable": k,
                         "percent": 100.0 * k / full, "total": models.count_parameters(m)})
    return rows


# --- the proxy A-distance ---------------------------------------------------------------------


def a_distance(error: float) -> float:
    """Proxy A-distance 2(1 − 2ε) from a domain classifier's held-out error ε (ε above ½ counts as ½)."""
    error = check_float("error", error, 0.0, 1.0)
    return 2.0 * (1.0 - 2.0 * min(error, 0.5))


def domain_splits(source_x: torch.Tensor, target_x: torch.Tensor, n: int, seed: int) -> tuple[Split, Split]:
    """Source-vs-target data (label 0 / 1), ``n`` of each, halved into a train and a held-out split."""
    n = check_int("n", n, 2, min(len(source_x), len(target_x)))
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    xs = source_x[torch.randperm(len(source_x), generator=gen)[:n].to(source_x.device)]
    xt = target_x[torch.randperm(len(target_x), generator=gen)[:n].to(target_x.device)]
    half = n // 2
    dev = source_x.device
    zeros, ones = torch.zeros(half, dtype=torch.long, device=dev), torch.ones(half, dtype=torch.long, device=dev)
    train = Split(torch.cat([xs[:half], xt[:half]]), torch.cat([zeros, ones]))
    test = Split(torch.cat([xs[half:2 * half], xt[half:2 * half]]), torch.cat([zeros, ones]))
    return train, test


def proxy_a_distances(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], seeds: Sequence[int], *,
                      n: int = 2000, hidden: Sequence[int] = (), epochs: int = 30, lr: float = 3e-2,
                      batch_size: int = 512) -> np.ndarray:
    """Proxy A-distance of every (source_x, target_x) pair for every seed, shape (pairs, seeds).

    For each pair and seed: draw ``n`` inputs of each domain, train a domain classifier
    (logistic regression, or an MLP with ``hidden`` widths) on one half, measure its error ε on
    the other half, and return 2(1 − 2ε). All pairs × seeds train at once as vectorized replicas.
    """
    seeds = check_seeds("seeds", seeds)
    if not pairs:
        raise ParameterError("pairs is empty; give at least one (source_x, target_x) pair")
    dim = pairs[0][0].shape[1]
    trains, tests, rseeds = [], [], []
    for i, (xs, xt) in enumerate(pairs):
        for s in seeds:
            tr, te = domain_splits(xs, xt, n, seed=s * 1000 + i)
            trains.append(tr)
            tests.append(te)
            rseeds.append(s * 1000 + i)
    nets = ensemble.replicate(lambda: models.MLP([dim, *hidden], 2), rseeds)
    reps = ensemble.fit_replicas(nets, trains, rseeds, epochs=epochs, lr=lr, batch_size=batch_size)
    errors = 1.0 - np.asarray(reps.evaluate(tests))
    return np.array([a_distance(e) for e in errors]).reshape(len(pairs), len(seeds))


def proxy_a_distance(source_x: torch.Tensor, target_x: torch.Tensor, seed: int = 0, **kw) -> float:
    """Proxy A-distance between two samples of inputs, with one seed (see :func:`proxy_a_distances`)."""
    return float(proxy_a_distances([(source_x, target_x)], [seed], **kw)[0, 0])
