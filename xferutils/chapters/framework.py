"""The formal framework of transfer learning made computable (chapter 2, documents 003 and 004).

- Shifts between a source and a target: covariate shift (:func:`covariate_shift`), label shift
  (:func:`label_shift`, :func:`prior_accuracy`) and a change of task (:func:`permute_labels`).
- Trainable-parameter counts of full fine-tuning, feature extraction, LoRA and adapters
  (:func:`parameter_table`); the objectives themselves live in :mod:`xferutils.chapters.strategies`.
- The proxy A-distance 2(1 − 2ε) of Ben-David et al. from a held-out domain classifier
  (:func:`proxy_a_distances`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from xferutils.core import data as xdata
from xferutils.core import ensemble, models, peft
from xferutils.pages.claims import Question, table
from xferutils.pages.claims import verb as claim_verb
from xferutils.core.config import ParameterError, check_float, check_int, check_seeds
from xferutils.core.data import Split, per_class
from xferutils.core.metrics import per_class_accuracy, spread

# --- the chapter's parameters ------------------------------------------------------------------


def check_parameters(seed0: int, source_digits, target_digits, rotations, noise_stds,
                     few_shot: int) -> tuple[list[int], list[int], list[float], list[float]]:
    """Validate chapter 2's knobs before any work (lists may be papermill strings); return the lists."""
    from xferutils.core.config import check_digits, parse_list

    check_int("seed0", seed0, 0)
    source_digits = check_digits("source_digits", source_digits)
    target_digits = check_digits("target_digits", target_digits)
    if len(source_digits) < 2 or len(target_digits) != len(source_digits):
        raise ParameterError(f"source_digits and target_digits must have the same length (at least 2); "
                             f"got {source_digits} and {target_digits}")
    rotations = [check_float(f"rotations[{i}]", r, -180.0, 180.0)
                 for i, r in enumerate(parse_list("rotations", rotations))]
    noise_stds = [check_float(f"noise_stds[{i}]", s, 0.0, 2.0) for i, s in enumerate(parse_list("noise_stds", noise_stds))]
    if not rotations or not noise_stds:
        raise ParameterError("rotations and noise_stds must not be empty")
    check_int("few_shot", few_shot, 1, 500)
    return source_digits, target_digits, rotations, noise_stds


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


def affordable_n(split: Split, priors: Sequence[float], n: int) -> int:
    """``n``, lowered if needed so that :func:`label_shift` can draw every class of ``split``
    without replacement (class c needs n·priors[c] images)."""
    counts = torch.bincount(split.y.cpu(), minlength=len(priors)).tolist()
    limit = min(int(k / p) for k, p in zip(counts, priors) if p > 0)
    return max(1, min(check_int("n", n, 1), limit))


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


def renamed_accuracy(source: ensemble.Replicas, split: Split, perm: Sequence[int]) -> list[float]:
    """Accuracy of every replica whose output c is renamed ``perm[c]`` on ``split`` (labels
    already permuted): the source network *is* a network trained on the permuted task."""
    table = torch.tensor([int(p) for p in perm], device=split.y.device)
    return (table[source.predict(split.x)] == split.y).float().mean(1).tolist()


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


# --- chapter 2's studies: what the chapter measures, with its tables, figures and glue values ----

def _pct(values: Sequence[float]) -> list[float]:
    return [100.0 * float(v) for v in values]


def skewed_priors(n_classes: int, c: int, p: float = 0.6) -> list[float]:
    """Priors with class ``c`` at ``p`` and the other classes sharing ``1 - p`` equally."""
    check_int("c", c, 0, n_classes - 1)
    p = check_float("p", p, 0.0, 1.0)
    return [p if k == c else (1 - p) / (n_classes - 1) for k in range(n_classes)]


@dataclass
class ShiftStudy:
    """How the unchanged source models score under each kind of shift (chapter 2, first section).

    Per-class accuracies come from the source *validation* images; the label-shift targets are
    resampled from the *test* images, so the prediction Σ_c π_T(c)·acc_c is made on images
    disjoint from those it predicts.
    """

    targets: dict[str, Split]
    accuracy: dict[str, list[float]]
    per_class_val: np.ndarray
    worst: int
    best: int
    predicted: dict[str, list[float]]
    digits: list[int]
    perm: list[int]

    @property
    def label_shift_names(self) -> list[str]:
        return [n for n in self.targets if n.startswith("label shift")]

    def figure(self):
        """Bars: the source models' accuracy (%) on every target, with seeds as dots."""
        import matplotlib.pyplot as plt

        from xferutils.pages.plotting import bars

        fig, ax = plt.subplots(figsize=(8, 3.4))
        bars(ax, self.accuracy, "source model accuracy (%)", scale=100)
        ax.axhline(100 / len(self.digits), color="k", ls=":", lw=1, label="chance")
        ax.legend(loc="lower left")
        fig.tight_layout()
        return fig

    def examples_figure(self, n: int = 6):
        """The first ``n`` images of every target, titled with the label the target gives them."""
        from xferutils.pages.plotting import show_digits

        x = torch.cat([s.x[:n] for s in self.targets.values()])
        short = {"source test": "source", "rotated 45°": "rot 45°", "noise σ=0.4": "noise",
                 "permuted labels": "permuted"}
        tags = [short.get(name, name.replace("label shift → ", "prior→")) for name in self.targets]
        labels = [f"{tag}: {y}" for tag, s in zip(tags, self.targets.values()) for y in s.y[:n].tolist()]
        return show_digits(x, labels, ncols=n)

    def label_shift_table(self) -> str:
        """Markdown: predicted Σ π_c·acc_c (per-class accuracy from validation images) and measured (%)."""
        from xferutils.pages.plotting import markdown_table

        rows = [[name, spread(self.predicted[name]).fmt(), spread(self.accuracy[name]).fmt()]
                for name in self.label_shift_names]
        return markdown_table(["target", "predicted Σ π_c·acc_c (%)", "measured (%)"], rows, "lrr")

    def add_claims(self, family) -> None:
        """``ch2-label-shift-predicted-<digit>``: measured equals predicted within 1 point."""
        for name, c, slug in zip(self.label_shift_names, (self.worst, self.best), ("hardest", "easiest")):
            family.value(f"ch2-label-shift-predicted-{slug}", "book",
                         f"under label shift toward digit {self.digits[c]} the accuracy is "
                         "Σ π_c·acc_c within 1 point", _pct(np.subtract(self.accuracy[name],
                                                                          self.predicted[name])),
                         0.0, tol=1.0, unit="points")

    def glue_values(self) -> dict:

        out = {"worst_digit": self.digits[self.worst], "best_digit": self.digits[self.best],
               "chance": 100 / len(self.digits)}
        for key, name in zip(("src", "rot", "noise", "ls_worst", "ls_best", "perm"), self.targets):
            s = spread(self.accuracy[name])
            out[f"acc_{key}"], out[f"acc_{key}_std"] = 100 * s.mean, 100 * s.std
        for key, name in zip(("worst", "best"), self.label_shift_names):
            out[f"ls_pred_{key}"] = 100 * spread(self.predicted[name]).mean
        return out


def measure_shifts(source: ensemble.Replicas, val: Split, test: Split, digits: Sequence[int], *,
                   n_label_shift: int, seed: int) -> ShiftStudy:
    """The source models on covariate shift (45°, noise 0.4), label shift toward the hardest and
    the easiest class (60 %), and permuted labels, all built from ``test``."""
    n_cls = len(digits)
    per_val = np.array([per_class_accuracy(p, val.y, n_cls) for p in source.predict(val.x)])
    worst, best = int(per_val.mean(0).argmin()), int(per_val.mean(0).argmax())
    targets = {"source test": test,
               "rotated 45°": covariate_shift(test, "rotate", 45),
               "noise σ=0.4": covariate_shift(test, "noise", 0.4, seed=seed)}
    for c in (worst, best):
        priors = skewed_priors(n_cls, c)
        targets[f"label shift → {digits[c]}"] = label_shift(test, priors, affordable_n(test, priors, n_label_shift), seed)
    perm = derangement(n_cls, seed)
    targets["permuted labels"] = permute_labels(test, perm)
    acc = {name: source.evaluate(split) for name, split in targets.items()}
    predicted = {f"label shift → {digits[c]}": [prior_accuracy(pc, skewed_priors(n_cls, c)) for pc in per_val]
                 for c in (worst, best)}
    return ShiftStudy(targets, acc, per_val, worst, best, predicted, list(digits), perm)


@dataclass
class LabelShiftDistance:
    """Proxy A-distances that test seed 003's "P(X) is unchanged under label shift" (chapter 2)."""

    shifted: np.ndarray
    same: np.ndarray
    file_order: np.ndarray

    def add_claims(self, family) -> None:
        """``003-label-shift-keeps-px``: the label-shifted half is no farther (±0.1) from the
        other half than two unchanged halves are."""
        family.value("003-label-shift-keeps-px", "document 003",
                     "under label shift P_S(X) = P_T(X) (distance to the shifted sample minus distance "
                     "between unchanged halves is 0 ± 0.1)", self.shifted - self.same, 0.0, tol=0.1)

    def glue_values(self) -> dict:

        out = {}
        for key, v in (("dA_labelshift", self.shifted), ("dA_same", self.same), ("dA_order", self.file_order)):
            s = spread(v)
            out[key], out[f"{key}_std"] = s.mean, s.std
        return out


def random_halves(split: Split, seed: int) -> tuple[Split, Split]:
    """Two disjoint random halves of ``split`` (MNIST's test set is ordered by writer population)."""
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    order = torch.randperm(len(split), generator=gen).to(split.y.device)
    half = len(split) // 2
    return (Split(split.x[order[:half]], split.y[order[:half]]),
            Split(split.x[order[half:2 * half]], split.y[order[half:2 * half]]))


def label_shift_distance(test: Split, priors: Sequence[float], seeds: Sequence[int], *, n: int,
                         seed: int) -> LabelShiftDistance:
    """Proxy A-distance between a random half of ``test`` and the other half resampled with
    ``priors``, beside the same two halves unchanged and the two halves in file order."""
    a, b = random_halves(test, seed)
    n = affordable_n(b, priors, n)
    shifted = label_shift(b, priors, n, seed)
    half = len(test) // 2
    d = proxy_a_distances([(a.x, shifted.x), (a.x, b.x), (test.x[:half], test.x[half:])], seeds, n=n)
    return LabelShiftDistance(*d)


# --- a new task: transfer with a new head ------------------------------------------------------

TRANSFER_METHODS = ("from scratch", "frozen φ + new head", "fine-tuned φ + new head")
BASELINE_METHODS = {"pixels": "logistic regression on pixels", "random": "random frozen network + linear head",
                    "prototypes": "nearest class prototype"}  # xferutils.core.baselines, on the same images


@dataclass
class TransferStudy:
    """Few-shot transfer to a changed task with a new head (chapter 2), per task and method:
    test accuracies per seed and the epoch each replica kept (early stopping on a disjoint
    few-shot validation set)."""

    accuracy: dict[str, dict[str, list[float]]]
    epochs: dict[str, dict[str, list[int]]]
    n_upper: dict[str, int]

    def table(self) -> str:
        """Markdown: one row per method, reference and baseline, one column per task: test
        accuracy mean ± std (%)."""
        from xferutils.pages.plotting import markdown_table

        methods = list(dict.fromkeys(m for row in self.accuracy.values() for m in row))
        rows = [[m, *(spread(row[m]).fmt() if m in row else "— (not defined)" for row in self.accuracy.values())]
                for m in methods]
        return markdown_table(["method", *self.accuracy], rows, "l" + "r" * len(self.accuracy))

    def budget_table(self) -> str:
        """Markdown: the epoch each method kept, mean ± std over seeds."""
        from xferutils.pages.plotting import markdown_table

        rows = [[task, *(spread(row[m]).fmt(1.0, 0) for m in TRANSFER_METHODS)] for task, row in self.epochs.items()]
        return markdown_table(["target task", *TRANSFER_METHODS], rows)

    def add_claims(self, family) -> None:
        """``ch2-<frozen|tuned>-vs-scratch-<task>``: the transferred φ beats scratch on the task."""
        for task, row in self.accuracy.items():
            slug = "perm" if task.startswith("permuted") else "new"
            for key, m in (("frozen", "frozen φ + new head"), ("tuned", "fine-tuned φ + new head")):
                family.direction(f"ch2-{key}-vs-scratch-{slug}", "book",
                                 f"{m} beats a network from scratch on {task} (few-shot)",
                                 _pct(row[m]), _pct(row["from scratch"]), unit="points")
            pairs = (("frozen", "pixels"), ("tuned", "pixels"), ("tuned", "random"))
            for key, b in pairs if BASELINE_METHODS["pixels"] in row else ():
                m = "frozen φ + new head" if key == "frozen" else "fine-tuned φ + new head"
                family.direction(f"ch2-baseline-{key}-vs-{'randomnet' if b == 'random' else b}-{slug}", "book",
                                 f"{m} beats {BASELINE_METHODS[b]} on {task} (same few-shot images)",
                                 _pct(row[m]), _pct(row[BASELINE_METHODS[b]]), unit="points")

    def glue_values(self) -> dict:

        out = {}
        for task, row in self.accuracy.items():
            slug = "perm" if task.startswith("permuted") else "new"
            for key, m in (("frozen", "frozen φ + new head"), ("tuned", "fine-tuned φ + new head"),
                           ("scratch", "from scratch"), ("full", "upper reference")):
                out[f"{key}_{slug}"] = 100 * spread(row[m]).mean
            for key, m in BASELINE_METHODS.items():
                if m in row:
                    out[f"{key}_{slug}"] = 100 * spread(row[m]).mean
            out[f"full_n_{slug}"] = self.n_upper[task]
        return out


def transfer_baselines(study: TransferStudy, few_shot: int) -> list[dict]:
    """The results file's ``baselines`` of the new-task section: ``{name, setting, measured}``
    (per-seed %), for each task."""
    return [{"name": m, "setting": f"{task}, {few_shot} labelled images per class", "measured": _pct(row[m])}
            for task, row in study.accuracy.items() for m in BASELINE_METHODS.values() if m in row]


def transfer_references(study: TransferStudy, targets: Mapping[str, tuple[float | None, str]]) -> list[dict]:
    """The results file's ``references``: each task's upper reference (per-seed %), with the
    target it should beat (``targets[task] = (value in %, where the value comes from)``)."""
    return [{"name": f"upper reference ({task}, {study.n_upper[task]} labelled images)",
             "measured": _pct(row["upper reference"]), "target": targets.get(task, (None, ""))[0],
             "source": targets.get(task, (None, "none"))[1]} for task, row in study.accuracy.items()]


def _with_new_heads(replicas: ensemble.Replicas, seed: int, device: torch.device) -> list[nn.Module]:
    """The source networks, on ``device``, each with a freshly initialised head."""
    torch.manual_seed(seed)
    nets = [m.to(device) for m in replicas.unstack()]
    for m in nets:
        m.head.reset_parameters()
    return nets


def transfer_to_new_tasks(source: ensemble.Replicas, tasks: Mapping[str, tuple[Split, Split, Split]],
                          seeds: Sequence[int], *, few_shot: int, max_epochs: int, patience: int,
                          upper: Mapping[str, tuple[ensemble.Replicas | list[float], int]],
                          make_net: Callable[[], nn.Module] | None = None) -> TransferStudy:
    """Few-shot transfer to each task ``name: (train pool, validation pool, test)``.

    Per seed, ``few_shot`` images per class from the train pool and as many (disjoint) from the
    validation pool. Three methods: a new linear head on frozen features φ (computed once), the
    whole source network fine-tuned with a new head, and the same network from scratch. Every
    replica stops early on its validation images (``patience``, at most ``max_epochs``).
    Everything is built on the device of the data. ``upper[name]`` is the upper reference's
    per-seed accuracy and the number of labelled images it used. With ``make_net`` (the
    chapter's network, built untrained), the baselines of :mod:`xferutils.core.baselines` run on each
    seed's few-shot images too: logistic regression on pixels, ``make_net()`` frozen at its
    random initialisation with a trained linear head, and nearest class prototypes.
    """
    seeds = check_seeds("seeds", seeds)
    device = next(iter(tasks.values()))[2].x.device
    backbones = [m.to(device) for m in source.unstack()]
    n_cls = backbones[0].head.out_features
    acc: dict[str, dict[str, list[float]]] = {}
    ep: dict[str, dict[str, list[int]]] = {}
    for t, (task, (pool, pool_val, test)) in enumerate(tasks.items()):
        shots = [xdata.few_shot(pool, few_shot, seed=s) for s in seeds]
        vals = [xdata.few_shot(pool_val, few_shot, seed=s) for s in seeds]

        def embedded(splits: Sequence[Split]) -> list[Split]:
            return [Split(models.embed(m, s.x), s.y) for m, s in zip(backbones, splits)]

        heads = ensemble.fit_replicas(
            [m.to(device) for m in ensemble.replicate(lambda: models.MLP([backbones[0].feature_dim], n_cls), seeds)],
            embedded(shots), seeds, epochs=max_epochs, lr=1e-2, batch_size=32, val=embedded(vals),
            patience=patience)
        nets = _with_new_heads(source, seeds[0] + t, device) + [
            m.to(device) for m in ensemble.replicate(lambda: models.dense_net(n_cls), [1000 * (t + 1) + s for s in seeds])]
        k = len(seeds)
        few = ensemble.fit_replicas(nets, shots + shots, list(range(2 * k)), epochs=max_epochs, lr=1e-3,
                                    batch_size=32, val=vals + vals, patience=patience)
        tuned_scratch = few.evaluate(test)
        scores, n_up = upper[task]
        acc[task] = {"source model as is": source.evaluate(test)} if task.startswith("permuted") else {}
        acc[task] |= {"from scratch": tuned_scratch[k:], "frozen φ + new head": heads.evaluate(embedded([test] * k)),
                      "fine-tuned φ + new head": tuned_scratch[:k], "upper reference": list(scores)}
        if make_net is not None:
            from xferutils.core import baselines as bl

            fns = {"pixels": lambda tr, s: bl.pixel_logistic(tr, test, seed=s),
                   "random": lambda tr, s: bl.random_frozen(make_net, tr, test, seed=s),
                   "prototypes": lambda tr, s: bl.prototype_accuracy(tr, test)}
            acc[task] |= {BASELINE_METHODS[k]: [f(tr, s) for tr, s in zip(shots, seeds)] for k, f in fns.items()}
        ends = [h.best_epoch for h in few.history]
        ep[task] = {"from scratch": ends[k:], "frozen φ + new head": [h.best_epoch for h in heads.history],
                    "fine-tuned φ + new head": ends[:k]}
    return TransferStudy(acc, ep, {task: n for task, (_, n) in upper.items()})


# --- the parts of f = g∘φ, the strategies, and what LoRA and adapters train -------------------

def architecture_table(archs: Mapping[str, Callable[[], nn.Module]]) -> str:
    """Markdown: linear layers, feature width and the parameters in φ and in g of each network."""
    from xferutils.pages.plotting import markdown_table

    rows = []
    for name, make in archs.items():
        m = make()
        rows.append([name, len(models.linear_layers(m)), f"784 → {m.feature_dim}",
                     f"{models.count_parameters(m.features):,}", f"{models.count_parameters(m.head):,}"])
    return markdown_table(["network", "linear layers", "φ", "parameters in φ", "parameters in g"], rows, "lrlrr")


def multiplier_table(model: nn.Module, gamma: float = 0.5, epochs: int = 4) -> str:
    """Markdown: per layer, the layer-wise decay multiplier and which epochs gradual unfreezing trains it."""
    from xferutils.core import finetune
    from xferutils.pages.plotting import markdown_table

    llrd = finetune.discriminative_multipliers(model, gamma)
    unfreeze = finetune.gradual_multipliers(model, every=1)
    rows = [[f"`{name}`", f"{llrd[name + '.weight']:g}",
             *("train" if unfreeze(t)[name + ".weight"] else "frozen" for t in range(epochs))]
            for name in finetune.layer_names(model)]
    return markdown_table(["layer", f"η_l / η (γ = {gamma:g})", *(f"epoch {t}" for t in range(epochs))], rows)


def parameter_markdown(rows: Sequence[dict]) -> str:
    """Markdown of :func:`parameter_table`: one row per method, one column per architecture."""
    from xferutils.pages.plotting import markdown_table

    archs = list(dict.fromkeys(r["architecture"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["architecture"], r["method"]): f"{r['trainable']:,} ({r['percent']:.2f} %)" for r in rows}
    return markdown_table(["method", *archs], [[m, *(cell[a, m] for a in archs)] for m in methods])


def add_efficiency_claims(family, rows: Sequence[dict], arch: str) -> dict[str, float]:
    """Seed 003's efficiency table as exact claims on ``arch``: LoRA r=16 trains ~0.1 % (±0.05),
    adapters 1–5 % (3 ± 2). Returns the percentages used (for the prose)."""
    pct = {r["method"]: r["percent"] for r in rows if r["architecture"] == arch}
    family.value("003-lora-r16-0.1pct", "document 003", "LoRA with r = 16 trains ~0.1 % of the parameters",
                 [pct["LoRA r=16"]], 0.1, tol=0.05, exact=True, unit="%")
    mid, tol = 3.0, 2.0  # 003's "1–5 %" as a value claim: its midpoint ± half its width
    for b in (8, 32):
        family.value(f"003-adapters-1-5pct-b{b}", "document 003", f"adapters (bottleneck {b}) train "
                     f"{mid - tol:g}–{mid + tol:g} % of the parameters (difference from the {mid:g} % "
                     "midpoint)", [pct[f"adapters b={b}"]], mid, tol=tol, exact=True, unit="%")
    return pct


def lora_break_even(d: int, k: int) -> float:
    """The rank r at which LoRA on a d×k layer trains as many numbers as the layer:
    r(d + k) = dk, so r = dk/(d + k) (chapter 2's exercise)."""
    d, k = check_int("d", d, 1), check_int("k", k, 1)
    return d * k / (d + k)


def identity_at_init(layer: nn.Linear, x: torch.Tensor, rank: int = 4, bottleneck: int = 16) -> tuple[float, float]:
    """max |LoRA(x) − W x| and max |adapter(h) − h| for freshly wrapped modules, built on ``x``'s device."""
    layer = layer.to(x.device)
    lora = peft.LoRALinear(layer, rank=rank).to(x.device)
    h = layer(x)
    adapter = peft.Adapter(h.shape[1], bottleneck).to(x.device)
    with torch.no_grad():
        return float((lora(x) - h).abs().max()), float((adapter(h) - h).abs().max())


# --- the bound: proxy A-distance and target error under growing shift -------------------------

@dataclass
class BoundStudy:
    """Proxy A-distance and the source models' target error at growing rotation and noise."""

    curves: dict[str, dict[str, np.ndarray]]
    source_error: np.ndarray

    def figure(self):
        """Two panels (rotation, noise): ½·d̂_A, the target error and ε_S + ½·d̂_A, in %."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
        xlabels = {"rotate": "rotation (degrees)", "noise": "pixel-noise std"}
        for ax, (kind, c) in zip(axes, self.curves.items()):
            s = np.asarray(c["strength"])
            for values, label, style in ((c["d_A"] / 2, r"$\frac{1}{2}\hat d_\mathcal{A}$", "-o"),
                                         (c["target_error"], r"$\epsilon_T$ (source model)", "-s"),
                                         (self.source_error[None, :] + c["d_A"] / 2,
                                          r"$\epsilon_S + \frac{1}{2}\hat d_\mathcal{A}$", "--")):
                v = 100 * values
                mean, std = v.mean(1), v.std(1, ddof=1) if v.shape[1] > 1 else np.zeros(len(v))
                ax.plot(s, mean, style, label=label, ms=4)
                ax.fill_between(s, mean - std, mean + std, alpha=0.2)
            ax.set_xlabel(xlabels[kind])
        axes[0].set_ylabel("error or distance (%)")
        axes[0].legend(loc="upper left")
        fig.tight_layout()
        return fig

    def add_claims(self, family) -> None:
        """``003-ben-david-<kind>``: ε_S + ½·d̂_A ≥ ε_T at every non-zero strength (per
        seed, the smallest margin over those strengths is at least 0; at strength 0 the two
        sides differ only by the noise of ½·d̂_A ≈ 0)."""
        for kind, c in self.curves.items():
            shifted = np.asarray(c["strength"], dtype=float) != 0
            rows = shifted if shifted.any() else np.ones_like(shifted)
            margin = (self.source_error[None, :] + c["d_A"] / 2 - c["target_error"])[rows].min(0)
            family.threshold(f"003-ben-david-{kind}", "document 003 (Ben-David et al. 2010)",
                             f"the computable part of the bound stays above the target error at every {kind} strength",
                             _pct(margin), 0.0, unit="points")

    def glue_values(self) -> dict:
        rot, noi = self.curves["rotate"], self.curves["noise"]
        r, z = list(rot["strength"]), list(noi["strength"])
        mid = r.index(45) if 45 in r else len(r) // 2
        small, j = min(1, len(r) - 1), min(1, len(z) - 1)
        return {"rot_mid": f"{r[mid]:g}", "rot_small": f"{r[small]:g}", "rot_max": f"{r[-1]:g}",
                "dA_rot0": rot["d_A"][0].mean(), "dA_rot_small": rot["d_A"][small].mean(),
                "err_rot_small": 100 * rot["target_error"][small].mean(),
                "dA_rot_mid": rot["d_A"][mid].mean(), "err_rot_mid": 100 * rot["target_error"][mid].mean(),
                "dA_rot_max": rot["d_A"][-1].mean(), "err_rot_max": 100 * rot["target_error"][-1].mean(),
                "noise_small": z[j], "dA_noise_small": noi["d_A"][j].mean(),
                "dA_noise_small_std": noi["d_A"][j].std(ddof=1) if noi["d_A"].shape[1] > 1 else 0.0,
                "err_noise_small": 100 * noi["target_error"][j].mean(), "noise_max": z[-1],
                "err_noise_max": 100 * noi["target_error"][-1].mean(), "err_src": 100 * self.source_error.mean()}

    def as_dict(self) -> dict:
        return {"curves": self.curves, "source_error": self.source_error}


def measure_bound(source: ensemble.Replicas, test: Split, strengths: Mapping[str, Sequence[float]],
                  seeds: Sequence[int], *, n: int, epochs: int, seed: int) -> BoundStudy:
    """For each shift kind and strength: the proxy A-distance between one random half of ``test``
    and the other half shifted, and the source models' error on the whole shifted ``test``."""
    a, b = random_halves(test, seed)
    curves = {}
    for kind, values in strengths.items():
        pairs = [(a.x, covariate_shift(b, kind, s, seed=seed).x) for s in values]
        err = np.array([[1 - v for v in source.evaluate(covariate_shift(test, kind, s, seed=seed))] for s in values])
        curves[kind] = {"strength": list(values),
                        "d_A": proxy_a_distances(pairs, seeds, n=n, epochs=epochs), "target_error": err}
    return BoundStudy(curves, 1 - np.array(source.evaluate(test)))


# --- the diagram of f = g∘φ and what each strategy trains -------------------------------------

DIAGRAM_STRATEGIES = {
    "from scratch": ["new"] * 4,
    "feature extraction": ["frozen"] * 3 + ["new"],
    "full fine-tuning": ["tuned"] * 3 + ["new"],
    "layer-wise decay": ["slow3", "slow2", "slow1", "new"],
    "gradual unfreezing": ["late3", "late2", "late1", "new"],
    "L2-SP": ["anchored"] * 3 + ["new"],
    "LoRA / adapters": ["lora"] * 3 + ["new"],
}
_LEGEND = {"new": ("#ff7f0e", "new, trained"), "frozen": ("#c7c7c7", "frozen (pretrained)"),
           "tuned": ("#1f77b4", "pretrained, trained"), "anchored": ("#9467bd", "trained, pulled to pretrained"),
           "lora": ("#2ca02c", "frozen + small trained update")}


def framework_diagram(layers: Sequence[str] = ("784→512", "512→256", "256→128", "128→k"),
                      strategies: Mapping[str, Sequence[str]] | None = None):
    """The network as f = g∘φ (φ: all layers but the last, g: the head) and, if ``strategies``
    is given, one row per strategy colouring what it trains (chapters 1 and 2)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    rows = dict(strategies or {})
    n = len(layers)
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.55 * len(rows)))
    ax.set_axis_off()
    top = len(rows) + 0.6
    for i, name in enumerate(layers):
        ax.add_patch(Rectangle((i * 1.6 + 1.3, top), 1.3, 0.8, fc="#dbe9f6" if i < n - 1 else "#fde0c5", ec="k"))
        ax.text(i * 1.6 + 1.95, top + 0.4, name, ha="center", va="center", fontsize=10)
        if i:
            ax.add_patch(FancyArrowPatch((i * 1.6 + 1.0, top + 0.4), (i * 1.6 + 1.3, top + 0.4), arrowstyle="->"))
    ax.text(0.9, top + 0.4, "x", ha="center", va="center", fontsize=12)
    ax.text(n * 1.6 + 1.2, top + 0.4, "ŷ = f(x)", ha="left", va="center", fontsize=11)
    ax.annotate("", (1.3, top + 1.05), ((n - 1) * 1.6 + 1.1, top + 1.05), arrowprops={"arrowstyle": "<->"})
    ax.text(((n - 1) * 1.6 + 2.4) / 2, top + 1.25, "feature extractor φ", ha="center", fontsize=10)
    ax.text((n - 1) * 1.6 + 1.95, top + 1.25, "head g", ha="center", fontsize=10)
    for r, (strategy, cells) in enumerate(rows.items()):
        y = len(rows) - 1 - r
        ax.text(1.1, y + 0.3, strategy, ha="right", va="center", fontsize=10)
        for i, kind in enumerate(cells):
            base = kind.rstrip("0123456789")
            k = int(kind[len(base):] or 0)
            color = _LEGEND["tuned" if base in ("slow", "late") else base][0]
            alpha = 1.0 if base != "slow" else 1.0 - 0.25 * k
            ax.add_patch(Rectangle((i * 1.6 + 1.3, y), 1.3, 0.6, fc=color, alpha=alpha, ec="k", lw=0.5))
            if base == "slow":
                ax.text(i * 1.6 + 1.95, y + 0.3, f"η·γ^{k}", ha="center", va="center", fontsize=9)
            if base == "late":
                ax.text(i * 1.6 + 1.95, y + 0.3, f"from epoch {k}", ha="center", va="center", fontsize=9)
    if rows:
        used = {c.rstrip("0123456789") for cells in rows.values() for c in cells}
        used = {"tuned" if u in ("slow", "late") else u for u in used}
        handles = [Rectangle((0, 0), 1, 1, fc=_LEGEND[k][0], ec="k", lw=0.5) for k in _LEGEND if k in used]
        ax.legend(handles, [_LEGEND[k][1] for k in _LEGEND if k in used], loc="upper center",
                  bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=9, frameon=False)
    ax.set_xlim(-1.6, n * 1.6 + 2.6)
    ax.set_ylim(-0.2, top + 1.6)
    fig.tight_layout()
    return fig


# --- verdict words for the prose --------------------------------------------------------------

QUESTIONS = (  # chapter 2's research questions, declared before any data (xferutils.pages.claims)
    Question("ch2-label-shift", "Does the framework predict what label shift does to accuracy and to P(X)?",
             claims=("ch2-label-shift-predicted-*", "003-label-shift-keeps-px"), margin=1.0),
    Question("ch2-new-task", "Do transferred features beat training from scratch on a new task?",
             claims=("ch2-*-vs-scratch-*",)),
    Question("ch2-bound", "Does the computable part of Ben-David et al.'s bound stay above the target error?",
             claims=("003-ben-david-*",), primary=False),
    Question("ch2-rank", "Under the corrected protocol, which of document 004's strategies is most accurate?",
             claims=("004-transfer-beats-scratch-*", "004-ft-highest-*", "004-fe-best-*", "004-dft-beats-ft")),
    Question("ch2-convergence", "Does transfer reach 90 % of its final accuracy in fewer epochs?",
             claims=("004-*-converges-*",), margin=1.0, unit="epochs", primary=False),
    Question("ch2-headroom", "Does the corrected protocol leave room between the references?",
             claims=("ch2-np-*",), primary=False),
    Question("ch2-baselines", "Do the transferred networks and document 004's strategies beat a linear model "
             "on the raw inputs and a random frozen network, on the same labelled images?",
             claims=("ch2-baseline-*",)),
)


PLURAL_SUBJECTS = ("ch2-baseline-frozen-vs-pixels-*",)  # claims whose subject in the prose is plural


def plural_verb(v, more: str = "beat", less: str = "trail") -> str:
    """:func:`xferutils.pages.claims.verb` for a plural subject ("the frozen features"): ``more``
    / ``less`` for a shown difference, "are equivalent to", "are not shown to differ from"."""
    return v.says(claim_verb(v, more, less), claim_verb(v, more, less), "are equivalent to",
                  "are not shown to differ from")


def verdict_glue(verdicts: Mapping[str, object], prefix: str = "v_",
                 plural: Sequence[str] = PLURAL_SUBJECTS) -> dict[str, str]:
    """For every claim: its label (``v_<id>``) and the verb generated from the verdict
    (``w_<id>``, :func:`xferutils.pages.claims.verb`: on accuracy beats / trails / is equivalent to / is
    not shown to differ from; on epochs needs more / fewer epochs than; other claims holds /
    fails / holds within its margin / is undecided). Claims whose id matches a pattern of
    ``plural`` (``fnmatch``) get the verbs of a plural subject (:func:`plural_verb`). Ids become
    glue names with ``-`` and ``.`` replaced by ``_``; the claims table on the page gives each
    verdict's evidence."""
    from fnmatch import fnmatchcase

    out = {}
    for cid, v in verdicts.items():
        key = cid.replace("-", "_").replace(".", "_")
        out[f"{prefix}{key}"] = v.label
        if v.kind == "direction" and v.unit == "epochs":
            words = claim_verb(v, "needs more epochs than", "needs fewer epochs than")
        elif v.kind == "direction" and any(fnmatchcase(cid, pat) for pat in plural):
            words = plural_verb(v)
        elif v.kind == "direction":
            words = claim_verb(v)
        else:
            words = v.says("holds", "fails", "sits at its threshold (within its margin)",
                           f"is undecided at {v.n} seed{'s' if v.n != 1 else ''}")
        out[f"w_{key}"] = words
    return out


def label_shift_words(verdicts: Mapping[str, object]) -> str:
    """Chapter 2's sentence on ``ch2-label-shift-predicted-<hardest|easiest>``: whether the
    prediction Σ π_c·acc_c agrees with the measured accuracy within the claims' tolerance, for
    the hardest and the easiest digit, each with its verdict; the verb said once when both read the same."""
    parts = []
    for slug in ("hardest", "easiest"):
        v = verdicts[f"ch2-label-shift-predicted-{slug}"]
        points = f"{v.tol:g} point{'s' if v.tol != 1 else ''}"
        parts.append((v.says(f"agrees within {points}", f"misses by more than {points}",
                             f"agrees within {points}", f"is not shown to agree within {points}"),
                      v.label.replace(" (", ", ").removesuffix(")")))  # "not shown, 10 seeds"
    (hard, hard_label), (easy, easy_label) = parts
    if hard == easy:
        return f"The prediction {hard} for the hardest digit ({hard_label}) and for the easiest ({easy_label})"
    return f"The prediction {hard} for the hardest digit ({hard_label}) but {easy} for the easiest ({easy_label})"


def claims_table(verdicts: Mapping[str, object], ids: Sequence[str] | None = None) -> str:
    """The book's claims table (:func:`xferutils.pages.claims.table`) for ``ids`` (default: all)."""
    return table([verdicts[cid] for cid in (ids if ids is not None else list(verdicts))])
