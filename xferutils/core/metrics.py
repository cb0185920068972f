"""Accuracy, per-class accuracy and the spread of a metric over seeds (every chapter)."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from scipy import stats

from xferutils.core.config import ParameterError, check_float


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of predictions equal to the labels (predictions or logits)."""
    if pred.dim() == y.dim() + 1:
        pred = pred.argmax(-1)
    return (pred == y).float().mean().item()


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> list[float]:
    """Accuracy on the samples of each class 0..n_classes-1 (NaN for an absent class)."""
    correct = torch.bincount(y[pred == y], minlength=n_classes).float()
    total = torch.bincount(y, minlength=n_classes).float()
    return (correct / total).tolist()  # 0/0 gives NaN: no samples of that class


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation and 95% t-interval half-width (``scipy.stats.t``) over n seeds."""

    mean: float
    std: float
    ci95: float
    n: int

    def __str__(self) -> str:
        return self.fmt()

    def fmt(self, scale: float = 100.0, digits: int = 1) -> str:
        """``97.8 ± 0.2`` (mean ± std, in percent by default), with no-break spaces around "±"
        (a table cell never breaks it) and no negative zero."""
        from xferutils.pages.results import tidy

        return tidy(f"{self.mean * scale:.{digits}f}\u00a0±\u00a0{self.std * scale:.{digits}f}")

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "ci95": self.ci95, "n": self.n}


def spread(values: Sequence[float]) -> Spread:
    """Summarise a metric measured once per seed."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("spread() needs at least one value")
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    if n == 1:
        return Spread(mean, std, float("nan"), n)
    return Spread(mean, std, float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n), n)


def epochs_to_fraction(curve: Sequence[float], fraction: float = 0.9) -> int:
    """First epoch (1-based) at which ``curve`` reaches ``fraction`` of its final value (document 004)."""
    target = check_float("fraction", fraction, 0.0, 1.0) * curve[-1]
    return next(i + 1 for i, v in enumerate(curve) if v >= target)


def one_se(scores: Mapping[Any, Sequence[float]], simplicity: Callable[[Any], float]) -> Any:
    """The one-standard-error rule (chapters 3 and 6): among the options whose mean score over
    seeds lies within one standard error of the best mean (the standard error of that best
    option's scores), the simplest, i.e. the smallest ``simplicity`` (ties: the higher mean). An
    option is preferred to a simpler one only when its gain is larger than its own noise."""
    if not scores:
        raise ParameterError("scores is empty; give at least one option with its scores")
    means = {k: float(sum(v) / len(v)) for k, v in scores.items()}
    best = max(means, key=means.get)
    vals = [float(v) for v in scores[best]]
    se = spread(vals).std / math.sqrt(len(vals)) if len(vals) > 1 else 0.0
    near = [k for k in scores if means[k] >= means[best] - se]
    return min(near, key=lambda k: (simplicity(k), -means[k]))
