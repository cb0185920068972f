"""Chapter 1's measurements of the dense baseline, and the tables and figures that show them.

- :func:`check_parameters` validates the chapter's knobs before any work.
- :func:`seeds_needed` (how many seeds tell two methods apart, from a measured spread) and
  :func:`confusion_matrix` are the reference solutions of two of the chapter's exercises.
- :func:`accuracy_table`, :func:`curves_figure`, :func:`per_class_figure`, :func:`measure_speed`
  and :func:`speed_table` build what the page shows; :func:`glue_values` the numbers its prose quotes.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from xferutils.core.config import ParameterError, Run, check_float, check_int
from xferutils.core.data import MNIST, Split
from xferutils.core.ensemble import Replicas
from xferutils.core.metrics import Spread, per_class_accuracy
from xferutils.pages.results import plural

ANCHOR = 97.09  # public Keras notebook "MLP-ReLu-Adam(784-512-256-128-10)": Adam, 5 epochs (one run)
ANCHOR_SOURCE = 'a public Keras notebook, "MLP-ReLu-Adam(784-512-256-128-10)"'


def check_parameters(seed0: int, n_seeds: int, epochs: int, patience: int, batch_size: int, lr: float) -> None:
    """Validate chapter 1's knobs (raises :class:`~xferutils.core.config.ParameterError`)."""
    check_int("seed0", seed0, 0)
    check_int("n_seeds", n_seeds, 0, 100)
    check_int("epochs", epochs, 1, 100)
    check_int("patience", patience, 1, 100)
    check_int("batch_size", batch_size, 1, 60000)
    check_float("lr", lr, 1e-6, 1.0)


def seeds_needed(std: float, delta: float, z: float = 2.0) -> int:
    """Seeds per method so that a true difference ``delta`` between two methods is ``z`` standard
    errors of the difference of their means, each measured over n independent seeds with
    standard deviation ``std``: z·std·√(2/n) ≤ delta, i.e. n ≥ 2·(z·std/delta)² (at least 2)."""
    std = check_float("std", std, 0.0)
    delta = check_float("delta", delta, 0.0)
    z = check_float("z", z, 0.0)
    if delta == 0.0:
        raise ParameterError("delta=0.0 is not allowed; give the difference to detect (> 0)")
    return max(2, math.ceil(2.0 * (z * std / delta) ** 2 - 1e-9))


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts ``m[i, j]`` of images of class i predicted as j (chapter 1's exercise)."""
    n_classes = check_int("n_classes", n_classes, 1)
    if pred.shape != y.shape:
        raise ParameterError(f"pred has shape {tuple(pred.shape)} but y has {tuple(y.shape)}")
    return torch.bincount(n_classes * y + pred, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def most_confused(pred: torch.Tensor, y: torch.Tensor, n_classes: int = 10) -> tuple[int, int, int]:
    """(true class, predicted class, count) of the largest off-diagonal entry, summed over
    replicas if ``pred`` is (K, n)."""
    preds = pred if pred.dim() == 2 else pred[None]
    m = sum(confusion_matrix(p, y, n_classes) for p in preds)
    m = m - torch.diag(torch.diag(m))
    i = int(m.argmax())
    return i // n_classes, i % n_classes, int(m.flatten()[i])


def digit_accuracy(rep: Replicas, test: Split, n_classes: int = 10) -> np.ndarray:
    """Per-class test accuracy of every replica, shape (replicas, classes)."""
    return np.array([per_class_accuracy(p, test.y, n_classes) for p in rep.predict(test.x)])


def references_list(test_acc: Sequence[float], anchor: float = ANCHOR) -> list[dict[str, object]]:
    """The results file's ``references`` of chapter 1: the dense network's test accuracy per
    seed (fractions in, % out) against the published run of the same recipe."""
    if not test_acc:
        raise ParameterError("test_acc is empty; give one test accuracy per seed")
    return [{"name": "dense network 784-512-256-128-10 on MNIST", "measured": [100 * a for a in test_acc],
             "target": anchor, "source": f"one published run of the same recipe ({ANCHOR_SOURCE})"}]


def accuracy_table(acc: Spread, anchor: float = ANCHOR) -> str:
    """Markdown: the measured accuracy beside document 002 (which lost its number) and a published run."""
    from xferutils.pages.plotting import markdown_table

    rows = [["measured here (test set)", f"{acc.fmt(digits=2)} %", f"{acc.n} seed{'s' if acc.n != 1 else ''}"],
            ["document 002", "not reported", "its output cell was cut off"],
            ["published run, same network, 5 epochs, Adam", f"{anchor:.2f} %", "1 run (a public Keras notebook)"]]
    return markdown_table(["source", "test accuracy", "runs"], rows, "lrl")


def curves_figure(rep: Replicas):
    """Two panels: training loss and validation accuracy (%) per epoch, mean ± std over replicas,
    with the epoch each replica kept marked on the accuracy curve."""
    import matplotlib.pyplot as plt

    from xferutils.pages.plotting import curves

    n = min(len(h.loss) for h in rep.history)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.4))
    curves(ax1, {"dense net": [h.loss[:n] for h in rep.history]}, "training loss")
    curves(ax2, {"dense net": [[100 * a for a in h.val_acc[:n]] for h in rep.history]}, "validation accuracy (%)")
    kept = [(h.best_epoch, 100 * h.val_acc[h.best_epoch - 1]) for h in rep.history if h.val_acc]
    if kept:
        ax2.plot(*zip(*kept), "k*", ms=9, label="epoch kept (one per seed)")
        ax2.legend(loc="lower right")
    fig.tight_layout()
    return fig


def per_class_figure(per_class_acc: np.ndarray):
    """Bars of the per-class test accuracy (%), mean ± std over replicas, seeds as dots."""
    import matplotlib.pyplot as plt

    from xferutils.pages.plotting import bars

    fig, ax = plt.subplots(figsize=(7, 3))
    bars(ax, {str(d): per_class_acc[:, d] for d in range(per_class_acc.shape[1])}, "test accuracy (%)", scale=100)
    ax.set_xlabel("digit")
    ax.tick_params(axis="x", rotation=0)
    ax.set_ylim(max(0.0, 100 * per_class_acc.mean(0).min() - 3), 100)
    fig.tight_layout()
    return fig


SPEED_IMAGES = {"smoke": 2048, "book": 12800, "full": None}  # images timed (None: a whole epoch)


def measure_speed(mnist: MNIST, run: Run, batch_size: int, lr: float, amp: bool) -> dict[str, float]:
    """Seconds per 60,000-image epoch of document 002's loop (DataLoader, batch 64) and of the book's
    single-model trainer in fp32 (and bf16 when ``amp``), each timed once on ``run.device`` on the
    first ``SPEED_IMAGES[preset]`` training images and scaled to the whole epoch (per-image cost
    is flat after the first batches; ``full`` times whole epochs)."""
    from xferutils import bench

    device, limit = run.device, SPEED_IMAGES[run.preset]
    scale = len(mnist.train) / limit if limit else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        _, seed_s = bench.seed_loop(bench.torchvision_root(Path(tmp)), 1, device, limit)
    out = {"document 002's loop (DataLoader, batch 64)": seed_s * scale,
           f"xferutils fp32 (batch {batch_size})":
               bench.package_fit(mnist, 1, batch_size, lr, False, limit)[1] * scale}
    if amp:
        out[f"xferutils bf16 (batch {batch_size})"] = \
            bench.package_fit(mnist, 1, batch_size, lr, True, limit)[1] * scale
    return out


def speed_table(speed: Mapping[str, float]) -> str:
    """Markdown: seconds per epoch of each loop and its speed-up over the first (the document's)."""
    from xferutils.pages.plotting import markdown_table

    base = next(iter(speed.values()))
    rows = [[name, f"{s:.2f}", f"{base / s:.1f}×"] for name, s in speed.items()]
    return markdown_table(["training loop", "seconds per epoch", "speed-up"], rows, "lrr")


def speedup_words(speed: Mapping[str, float]) -> str:
    """Chapter 1's phrase on the trainer's speed-up over the document's loop (the first entry of
    ``speed``): in fp32 (the second) and in its fastest setting, said once when that is fp32."""
    names, secs = list(speed), list(speed.values())
    fastest = min(range(1, len(secs)), key=lambda i: secs[i])
    fp32 = f"{secs[0] / secs[1]:.1f}× faster"
    if fastest == 1:
        return f"{fp32} (in fp32, its fastest setting on this machine)"
    setting = names[fastest].removeprefix("xferutils ").split(" (")[0]
    return (f"{fp32} in fp32 and {secs[0] / secs[fastest]:.1f}× faster in {setting}, its fastest "
            "setting on this machine")


def convergence_words(gain: float, spread: float, kept_max: int, epochs_run: int) -> str:
    """Chapter 1's sentence on convergence, decided by the numbers: the last epoch's mean
    validation gain against the seed-to-seed spread, and whether a seed kept the final epoch."""
    if gain != gain or abs(gain) <= spread:  # nan (one epoch) counts as no evidence of a rise
        words = "the curve has flattened, and more epochs would buy little"
    else:
        words = ("the curve is still rising: more epochs would help" if gain > 0 else
                 "the last epoch lost accuracy, so the seeds keep earlier epochs")
    if kept_max >= epochs_run:
        words += ("; at least one seed kept the last epoch, so the cap, not the stopping rule, "
                  "ended its training")
    return words


def glue_values(acc: Spread, rep: Replicas, per_class_acc: np.ndarray, speed: Mapping[str, float],
                seconds: float, n_train: int, n_val: int, delta: float = 0.1) -> dict:
    """The numbers chapter 1's prose quotes (accuracies in %)."""
    mean = per_class_acc.mean(0)
    seed_s = next(iter(speed.values()))
    kept = [h.best_epoch for h in rep.history]
    n = min(len(h.val_acc) for h in rep.history)
    curves = 100 * np.array([h.val_acc[:n] for h in rep.history])
    gain = float(curves[:, -1].mean() - curves[:, -2].mean()) if n > 1 else float("nan")
    return {"acc_mean": 100 * acc.mean, "acc_std": 100 * acc.std, "acc_ci": 100 * acc.ci95,
            "n_seeds": acc.n, "n_train": n_train, "n_val": n_val, "train_s": seconds,
            "epochs_max": max(len(h.loss) for h in rep.history),
            "epochs_run": plural(max(len(h.loss) for h in rep.history), "epoch") + " run",
            "kept_min": min(kept), "kept_max": max(kept), "anchor": ANCHOR,
            "val_gain_last": gain, "val_std_last": float(curves[:, -1].std(ddof=1)) if len(curves) > 1 else 0.0,
            "worst_digit": int(mean.argmin()), "worst_acc": 100 * mean.min(),
            "best_digit": int(mean.argmax()), "best_acc": 100 * mean.max(),
            "flat_words": convergence_words(gain, float(curves[:, -1].std(ddof=1)) if len(curves) > 1 else 0.0,
                                            max(kept), max(len(h.loss) for h in rep.history)),
            "seed_epoch_s": seed_s, "fp32_speedup": seed_s / list(speed.values())[1],
            "best_speedup": seed_s / min(speed.values()), "speedup_words": speedup_words(speed),
            "delta": delta,
            "seeds_needed": seeds_needed(100 * acc.std, delta)}


__all__ = ["ANCHOR", "ANCHOR_SOURCE", "SPEED_IMAGES", "check_parameters", "seeds_needed", "confusion_matrix", "most_confused", "digit_accuracy",
           "accuracy_table", "speedup_words", "convergence_words", "curves_figure", "per_class_figure", "measure_speed", "speed_table",
           "glue_values"]
