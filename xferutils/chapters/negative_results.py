"""Negative results, reproduced and diagnosed (chapter 7).

- :func:`doc001_data`: document 001's synthetic transfer task built the way the document ran it
  (``"as_run"``: every call of 004's generator draws *fresh* class centres, so the target test
  set has other classes than the target training set) or fixed (``"fixed"``: centres drawn once;
  source, target training, validation and test sets share them).
- :func:`fit_to_accuracy`: NumPy training with early stopping on validation accuracy (the best epoch kept);
  :func:`strategy_run` fine-tunes a pretrained :class:`~xferutils.core.numpynet.NumpyNet` or trains
  one from scratch.
- :func:`chance_p_value`: is an accuracy above chance? (the check that would have caught 001's
  tables); :func:`nearest_centre_accuracy`: what the class means of the training data alone
  reach; :func:`bayes_accuracy`: the best any method can do on a fixed blob task;
  :func:`as_is`: the source network applied without training (the lower reference).
- :func:`pipeline_diagram`, :func:`doc001_figure`, :func:`claims_table`: the chapter's figures
  and tables.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from xferutils.core.config import ParameterError, check_choice, check_float, check_int, check_seeds
from xferutils.core.numpynet import NumpyNet, blobs, train
from xferutils.pages.plotting import data_ticks

PROTOCOLS = ("as_run", "fixed")
Data = tuple[np.ndarray, np.ndarray]


@dataclass
class Task:
    """Source data, and target training / validation / test data; under the fixed protocol also
    the class centres and the target's input transform (what :func:`bayes_accuracy` needs)."""

    source: Data
    train: Data
    val: Data
    test: Data
    centres: np.ndarray | None = None
    transform: np.ndarray | None = None


def doc001_data(seed: int, protocol: str = "fixed", *, shift: float = 0.1, n_target: int = 100,
                n_val: int = 200, n_test: int = 1000, n_source: int = 1000, n_classes: int = 5,
                n_features: int = 10, noise: float = 0.5, spread: float = 2.0,
                test_draws: int = 1) -> Task:
    """Document 004's blobs (centres N(0, spread²), samples N(centre, noise²)), target seen through
    ``I + shift·N(0, 1)``.

    ``"as_run"`` calls the generator once per data set, as document 001's experiments did with 004's
    ``generate_classification_data``: each call draws new class centres, so class ``c`` of the
    test set has nothing to do with class ``c`` of the training set. ``"fixed"`` draws the
    centres once. ``test_draws`` > 1 makes the test set that many calls of ``n_test`` points
    (under ``"as_run"`` each with its own centres), so that its accuracy is the mean over
    repetitions of the document's procedure rather than the luck of one draw."""
    check_choice("protocol", protocol, PROTOCOLS)
    check_float("shift", shift, 0.0)
    check_float("noise", noise, 0.0)
    check_int("test_draws", test_draws, 1)
    for name, v in (("n_target", n_target), ("n_val", n_val), ("n_test", n_test),
                    ("n_source", n_source)):
        check_int(name, v, n_classes)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    transform = np.eye(n_features) + rng.standard_normal((n_features, n_features)) * shift
    centres = rng.standard_normal((n_classes, n_features)) * spread

    def draw() -> np.ndarray:
        fresh = protocol == "as_run"
        return rng.standard_normal((n_classes, n_features)) * spread if fresh else centres

    source = blobs(draw(), n_source, noise, rng)
    train_ = blobs(draw(), n_target, noise, rng, transform)
    val = blobs(draw(), n_val, noise, rng, transform)
    tests = [blobs(draw(), n_test, noise, rng, transform) for _ in range(test_draws)]
    test = (np.concatenate([t[0] for t in tests]), np.concatenate([t[1] for t in tests]))
    fixed = protocol == "fixed"
    return Task(source, train_, val, test, centres if fixed else None, transform if fixed else None)


def fit_to_accuracy(net: NumpyNet, data: Data, val: Data, *, lr: float, rng: np.random.Generator,
        lr_mult: Mapping[str, float] | None = None, batch_size: int = 16, max_epochs: int = 300,
        patience: int = 20, reg: float = 1e-3) -> int:
    """Train ``net`` in place until validation accuracy has not improved for ``patience`` epochs;
    keep the best epoch's weights and return that epoch (the budget this run used)."""
    check_int("max_epochs", max_epochs, 1)
    check_int("patience", patience, 1)
    best, best_acc, best_epoch = {k: v.copy() for k, v in net.params.items()}, net.accuracy(*val), 0
    for epoch in range(1, max_epochs + 1):
        train(net, *data, epochs=1, lr=lr, batch_size=batch_size, rng=rng, reg=reg, lr_mult=lr_mult)
        acc = net.accuracy(*val)
        if acc > best_acc:
            best, best_acc, best_epoch = {k: v.copy() for k, v in net.params.items()}, acc, epoch
        elif epoch - best_epoch >= patience:
            break
    net.params = best
    return best_epoch


def pretrain(task: Task, seed: int, hidden: Sequence[int] = (32, 16), epochs: int = 100) -> NumpyNet:
    """Document 004's source network: lr 0.1, batch 64, ``epochs`` epochs on the source data."""
    rng = np.random.default_rng(check_int("seed", seed, 0))
    xs, ys = task.source
    net = NumpyNet([xs.shape[1], *hidden, int(ys.max()) + 1], rng)
    train(net, xs, ys, epochs=epochs, lr=0.1, batch_size=64, rng=rng)
    return net


def feature_mult(net: NumpyNet, m: float) -> dict[str, float]:
    """Rate multiplier ``m`` for every layer of φ (the head keeps the full rate); 0 freezes φ."""
    return {f"{p}{i}": m for i in range(net.n_layers - 1) for p in "Wb"}


def strategy_run(source: NumpyNet | None, task: Task, seed: int, *, mult: float = 1.0, lr: float = 0.1,
                 epochs: int | None = None, **fit_kw) -> dict[str, float]:
    """Fine-tune a copy of ``source`` (new head, φ at ``mult`` × ``lr``) or, with ``source=None``,
    train from scratch; ``epochs`` fixes the budget (as the documents did), else early stopping.

    Returns train, validation and test accuracy and the epochs used."""
    check_float("mult", mult, 0.0)
    rng = np.random.default_rng(check_int("seed", seed, 0) + 10_000)
    x, y = task.train
    if source is None:
        dims = [x.shape[1], 32, 16, int(max(y.max(), task.test[1].max())) + 1]
        net, lr_mult = NumpyNet(dims, rng), None
    else:
        net = source.copy()
        net.init_layer(net.n_layers - 1, rng)
        lr_mult = feature_mult(net, mult)
    if epochs is not None:
        fit_kw.pop("max_epochs", None)
        train(net, x, y, epochs=epochs, lr=lr, batch_size=16, rng=rng, lr_mult=lr_mult)
        used = epochs
    else:
        used = fit_to_accuracy(net, task.train, task.val, lr=lr, rng=rng, lr_mult=lr_mult, **fit_kw)
    return {"train": net.accuracy(x, y), "val": net.accuracy(*task.val), "test": net.accuracy(*task.test),
            "epochs": float(used)}


def pretrain_all(seeds: Sequence[int], protocol: str, noise: float, epochs: int = 100) -> dict[int, NumpyNet]:
    """One source network per seed (the source data of a seed does not depend on the shift)."""
    return {s: pretrain(doc001_data(s, protocol, noise=noise), s, epochs=epochs) for s in seeds}


def experiment2(sources: Mapping[int, NumpyNet], protocol: str, mults: Sequence[float], *, noise: float,
                shift: float = 0.1, epochs: int | None = None, max_epochs: int = 300, test_draws: int = 1,
                n_target: int = 100) -> dict[float, list[dict[str, float]]]:
    """Document 001's experiment 2: fine-tune with φ at ``mult`` × the rate, per seed; ``{mult: runs}``.

    ``epochs`` fixes the budget (as the document did); ``None`` stops early on validation.
    ``n_target`` labelled target points (document 001: 100)."""
    out: dict[float, list[dict[str, float]]] = {float(m): [] for m in mults}
    for s, src in sources.items():
        task = doc001_data(s, protocol, shift=shift, noise=noise, test_draws=test_draws, n_target=n_target)
        for m in mults:
            out[float(m)].append(strategy_run(src, task, s, mult=m, epochs=epochs, max_epochs=max_epochs))
    return out


def experiment3(sources: Mapping[int, NumpyNet], protocol: str, shifts: Sequence[float], *, noise: float,
                mult: float = 0.1, lrs: Sequence[float] = (0.1,), epochs: int | None = None,
                max_epochs: int = 300, test_draws: int = 1, n_target: int = 100
                ) -> dict[str, dict[float, list[dict[str, float]]]]:
    """Document 001's experiment 3: transfer (fine-tuning, φ at ``mult``) and scratch at each shift.

    With several ``lrs`` each method's rate is chosen per seed and shift on validation accuracy
    (the chosen rate is stored as ``"lr"``). Returns ``{"transfer"|"scratch"|"source": {shift:
    runs}}``; ``"source"`` is the pretrained network as is (:func:`as_is`, no training), and
    under the fixed protocol each run of it also holds the task's ceiling ``"bayes"``
    (:func:`bayes_accuracy`)."""
    out: dict[str, dict[float, list[dict[str, float]]]] = {"transfer": {}, "scratch": {}, "source": {}}
    for shift in shifts:
        for s, src in sources.items():
            task = doc001_data(s, protocol, shift=shift, noise=noise, test_draws=test_draws, n_target=n_target)
            ref = as_is(src, task)
            if protocol == "fixed":
                ref["bayes"] = bayes_accuracy(task)
            out["source"].setdefault(float(shift), []).append(ref)
            for method, net in (("transfer", src), ("scratch", None)):
                runs = [dict(strategy_run(net, task, s, mult=mult, lr=lr, epochs=epochs, max_epochs=max_epochs),
                             lr=lr) for lr in lrs]
                out[method].setdefault(float(shift), []).append(max(runs, key=lambda r: r["val"]))
    return out


def per_seed(runs: Mapping[float, Sequence[Mapping[str, float]]], key: str = "test") -> list[float]:
    """Per seed, the mean of ``key`` over the settings of ``runs`` (``{setting: [run per seed]}``)."""
    cols = [[r[key] for r in rs] for rs in runs.values()]
    return [float(np.mean(v)) for v in zip(*cols)]


def nearest_centre_accuracy(task: Task) -> float:
    """Test accuracy of the nearest class mean of the target *training* data: a ceiling that
    needs no learning. At 1.0 the task cannot tell methods apart."""
    x, y = task.train
    means = np.stack([x[y == c].mean(0) for c in np.unique(y)])
    xt, yt = task.test
    pred = ((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    return float(np.mean(pred == yt))


def bayes_accuracy(task: Task) -> float:
    """Test accuracy of the best possible classifier of a fixed-protocol task: undo the target's
    input transform and take the nearest *true* class centre (Bayes-optimal for equally likely
    classes with isotropic Gaussian noise). The ceiling no method can beat on average."""
    if task.centres is None or task.transform is None:
        raise ParameterError("task has no single set of class centres (protocol='as_run'); the ceiling "
                             "needs protocol='fixed'")
    xt, yt = task.test
    z = np.linalg.solve(task.transform.T, xt.T).T  # x = (c + e) T  =>  x T^-1 = c + e
    d = ((z[:, None, :] - task.centres[None]) ** 2).sum(-1)
    return float(np.mean(d.argmin(1) == yt))


def as_is(source: NumpyNet, task: Task) -> dict[str, float]:
    """The pretrained source network applied to the target without any training (the lower
    reference "source model as is"): its train, validation and test accuracy, 0 epochs."""
    return {"train": source.accuracy(*task.train), "val": source.accuracy(*task.val),
            "test": source.accuracy(*task.test), "epochs": 0.0}


def chance_p_value(correct: int, n: int, n_classes: int) -> float:
    """P(at least ``correct`` of ``n`` right by guessing among ``n_classes``): the one-sided
    binomial test that an accuracy is above chance (a small value: it is)."""
    n = check_int("n", n, 1)
    correct = check_int("correct", correct, 0, n)
    n_classes = check_int("n_classes", n_classes, 2)
    p = 1.0 / n_classes
    # sum in log space so that n in the thousands does not underflow
    terms = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
             + k * math.log(p) + (n - k) * math.log1p(-p) for k in range(correct, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def zero_shot(seed: int, *, seen: Sequence[int] = (0, 1, 2), unseen: int = 3, n_per_class: int = 200,
              n_probe: int = 10, noise: float = 1.0, n_classes: int = 5) -> dict[str, float]:
    """Chapter 4's limit on blobs: a network trained with labels ``seen`` only (``n_classes``
    outputs), then asked about class ``unseen``.

    ``zero_shot``: fraction of ``unseen`` test points it labels ``unseen`` (its head never had a
    reason to); ``probe``: the same frozen features with a new head trained on ``n_probe``
    labelled points per class, all classes: how much the features *do* carry about ``unseen``."""
    seen = [check_int("seen", s, 0, n_classes - 1) for s in seen]
    check_int("unseen", unseen, 0, n_classes - 1)
    if unseen in seen:
        raise ParameterError(f"unseen={unseen} is among seen={seen}; pick a class the network never saw")
    rng = np.random.default_rng(check_int("seed", seed, 0))
    centres = rng.standard_normal((n_classes, 10)) * 2.0
    x, y = blobs(centres, n_per_class * n_classes, noise, rng)
    xt, yt = blobs(centres, n_per_class * n_classes, noise, rng)
    keep = np.isin(y, seen)
    net = NumpyNet([10, 32, 16, n_classes], rng)
    train(net, x[keep], y[keep], epochs=60, lr=0.1, batch_size=32, rng=rng)
    target = yt == unseen
    zero = float(np.mean(net.predict(xt[target]) == unseen))
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), n_probe, replace=False) for c in range(n_classes)])
    probe = net.copy()
    probe.init_layer(probe.n_layers - 1, rng)
    train(probe, x[idx], y[idx], epochs=200, lr=0.1, batch_size=16, rng=rng, lr_mult=feature_mult(probe, 0.0))
    return {"zero_shot": zero, "probe": float(np.mean(probe.predict(xt[target]) == unseen)),
            "seen_acc": float(np.mean(net.predict(xt[np.isin(yt, seen)]) == yt[np.isin(yt, seen)]))}


# --- figures and tables ---------------------------------------------------------------------------


def pipeline_diagram() -> plt.Figure:
    """Document 001's data pipeline as run (centres drawn per data set) beside the fixed one."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
    rows = {"as document 001 ran it": [("centres A", "train"), ("centres B", "test")],
            "fixed": [("centres A", "train"), ("centres A", "val / test")]}
    for ax, (title, pairs) in zip(axes, rows.items()):
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 6)
        ax.axis("off")
        ax.set_title(title, fontsize=11)
        for k, (centres, split) in enumerate(pairs):
            y = 4.2 - 2.6 * k
            for x0, text, colour in ((0.3, f"draw {centres}", "#dbe9f6"), (6.0, split, "#fde2c8")):
                ax.add_patch(plt.Rectangle((x0, y - 0.6), 3.6, 1.2, fc=colour, ec="black", lw=1))
                ax.text(x0 + 1.8, y, text, ha="center", va="center", fontsize=10)
            ax.annotate("", xy=(6.0, y), xytext=(3.9, y), arrowprops={"arrowstyle": "->", "lw": 1.2})
        verdict = "class c means different things: chance" if "ran" in title else "same classes: learnable"
        ax.text(5, 0.15, verdict, ha="center", fontsize=10, style="italic")
    fig.tight_layout()
    return fig


def doc001_figure(exp2: Mapping[str, Mapping[float, Sequence[float]]],
                  exp3: Mapping[str, Mapping[float, Sequence[float]]], chance: float) -> plt.Figure:
    """Two panels: test accuracy (%) against the multiplier (experiment 2) and against the shift
    (experiment 3), one line per protocol/method (mean ± std over seeds), with the chance level."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for ax, runs, xlabel, logx in ((axes[0], exp2, "feature learning-rate multiplier", True),
                                   (axes[1], exp3, "domain shift", False)):
        for label, by_x in runs.items():
            xs = sorted(by_x)
            m = np.array([100 * np.mean(by_x[x]) for x in xs])
            s = np.array([100 * np.std(by_x[x], ddof=1) if len(by_x[x]) > 1 else 0.0 for x in xs])
            ax.plot(xs, m, marker="o", label=label)
            ax.fill_between(xs, m - s, m + s, alpha=0.2)
        ax.axhline(100 * chance, color="grey", ls="--", lw=1, label="chance")
        if logx:
            ax.set_xscale("log")
            data_ticks(ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # under the axes
    fig.tight_layout()
    return fig


def claims_table(ids: Sequence[str], claims: Mapping[str, Mapping[str, Mapping[str, object]]]) -> str:
    """Markdown table of earlier chapters' verdicts by registry id (claim, measured, seeds,
    verdict and chapter), matched as the ledger matches them (a claim split into parts shows
    its tally); a claim no results file carries reads "not measured in this build"."""
    from xferutils.pages.ledger import NOT_MEASURED, chapter_link, ledger, row_cells
    from xferutils.pages.plotting import markdown_table

    rows = {r.entry.id: r for r in ledger(claims)}
    out = []
    for cid in ids:
        r = rows.get(cid)
        if r is None:
            raise ParameterError(f"claim id {cid!r} is not in the registry (xferutils.pages.ledger.REGISTRY)")
        if r.verdict is None or r.chapter is None:
            out.append([f"`{cid}`", r.entry.claim, "–", "–", NOT_MEASURED])
            continue
        cells = row_cells(r)
        out.append([cells[0], r.entry.claim, cells[2], cells[4], f"{r.status} ({chapter_link(r.chapter)})"])
    return markdown_table(["id", "claim", "measured", "seeds", "verdict (where)"], out)


def lr_summary(transfer: Sequence[Mapping[str, float]], scratch: Sequence[Mapping[str, float]]) -> str:
    """The learning rate each method chose most often on validation and on how many seeds, e.g.
    ``"0.1 (7/10) / 0.01 (6/10)"`` (transfer / scratch), for a table cell."""
    def one(runs: Sequence[Mapping[str, float]]) -> str:
        if not runs or any("lr" not in r for r in runs):
            raise ParameterError("every run needs its chosen 'lr' (experiment3 with lrs=...)")
        lrs = [float(r["lr"]) for r in runs]
        top = max(sorted(set(lrs)), key=lrs.count)
        return f"{top:g} ({lrs.count(top)}/{len(lrs)})"

    return f"{one(transfer)} / {one(scratch)}"


def source_centre_accuracy(task: Task) -> float:
    """Test accuracy of the nearest class mean of the *source* data (chapter 7's target for its
    source network on its own task: a network should beat a classifier with no parameters)."""
    x, y = task.source
    means = np.stack([x[y == c].mean(0) for c in np.unique(y)])
    xt, yt = task.test
    return float(np.mean(((xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1) == yt))


SOURCE_POINTS = 1000  # document 004's source set (doc001_data's n_source)


def source_curve(seeds: Sequence[int], sizes: Sequence[int], *, noise: float, epochs: int = 100,
                 trained: Mapping[int, NumpyNet] | None = None,
                 n_target: int = 100) -> dict[int, dict[str, list[float]]]:
    """Document 004's source network (:func:`pretrain`) against the nearest class mean of the same
    source data (:func:`source_centre_accuracy`), both scored on the fixed task at shift 0, for
    each number of source points in ``sizes``: per-seed test accuracies (%) under ``"network"``
    and ``"class mean"``. ``trained`` (seed → network, from :func:`pretrain_all` on the fixed task
    with the same ``noise`` and ``epochs``) is reused at :data:`SOURCE_POINTS` instead of training
    the same network again. ``n_target`` is the task's number of labelled target points: it decides
    which test points the task draws, so with the chapter's ``n_target`` the curve at
    :data:`SOURCE_POINTS` scores the very networks and test points of :func:`references_list`.
    Chapter 7 uses it to ask whether more data close the network's gap."""
    seeds = check_seeds("seeds", seeds)
    sizes = [check_int(f"sizes[{i}]", n, 5) for i, n in enumerate(sizes)]
    if not sizes:
        raise ParameterError("sizes is empty; give at least one number of source points")
    out: dict[int, dict[str, list[float]]] = {}
    for n in sizes:
        tasks = [doc001_data(s, "fixed", shift=0.0, noise=noise, n_source=n, n_target=n_target) for s in seeds]
        nets = [trained[s] if trained and n == SOURCE_POINTS and s in trained else pretrain(t, s, epochs=epochs)
                for s, t in zip(seeds, tasks)]
        out[n] = {"network": [100 * net.accuracy(*t.test) for net, t in zip(nets, tasks)],
                  "class mean": [100 * source_centre_accuracy(t) for t in tasks]}
    return out


def curve_point(curve: Mapping[int, Mapping[str, Sequence[float]]], n: int) -> dict[str, float]:
    """One point of :func:`source_curve`: the mean test accuracy (%) of the network and of the class
    mean at ``n`` source points, and their gap (class mean minus network, the mean of the per-seed
    differences). Every sentence that quotes the curve reads these numbers, each a mean as
    :func:`~xferutils.core.metrics.spread` takes it (the chapter's printed lines), so that one
    quantity is never rounded two ways."""
    from xferutils.core.metrics import spread

    if n not in curve:
        raise ParameterError(f"n={n} is not a point of the curve {sorted(curve)}")
    net, mean = curve[n]["network"], curve[n]["class mean"]
    return {"network": spread(net).mean, "class mean": spread(mean).mean,
            "gap": spread(np.subtract(mean, net)).mean}


def range_words(values: Sequence[float], unit: str = "points") -> str:
    """``"77.5 to 79.5 points"``: the smallest and the largest of ``values`` at one decimal, or
    ``"78.0 points"`` where the two read the same (for a sentence such as "the gap is … in every
    row")."""
    if not len(values):
        raise ParameterError("values is empty; give at least one value")
    lo, hi = f"{min(values):.1f}", f"{max(values):.1f}"
    return f"{lo} {unit}" if lo == hi else f"{lo} to {hi} {unit}"


def source_curve_words(curve: Mapping[int, Mapping[str, Sequence[float]]], level: float = 0.95) -> str:
    """What :func:`source_curve` shows, in words: the mean gap (class mean minus network, points)
    at the smallest and the largest number of source points, and its change between them paired
    by seed, with a Student-t interval at ``level``: it narrows or widens only where the interval
    excludes 0; otherwise the change is not shown either way."""
    from xferutils.pages.claims import interval, signed

    sizes = sorted(curve)
    gap = {n: np.subtract(curve[n]["class mean"], curve[n]["network"]) for n in sizes}
    lo, hi = sizes[0], sizes[-1]
    d = gap[lo] - gap[hi]  # > 0: the gap narrows with more points
    n, m = len(d), float(d.mean())
    low, high = interval(d, level)  # NaN below two seeds
    text = (f"the gap is {curve_point(curve, lo)['gap']:.1f} points with {lo:,} source points and "
            f"{curve_point(curve, hi)['gap']:.1f} with {hi:,} ({n} seeds, paired)")
    shown = f"{100 * level:g} % interval {signed(low, 'points')} to {signed(high, 'points')}"  # 0.03 never reads 0.0
    if low > 0:
        return (text + f": it narrows by {m:.1f} points ({shown}), so the network's shortfall is the variance "
                "of fitting a flexible model to few noisy points, which more data reduce, not a flaw of the "
                "experiment")
    if high < 0:
        return text + f": it widens by {-m:.1f} points ({shown}), so more data do not close it"
    bound = "an unbounded interval" if math.isnan(low) else shown
    return text + f": the change ({m:+.1f} points, {bound}) is not shown either way at {n} seeds"


def source_curve_figure(curve: Mapping[int, Mapping[str, Sequence[float]]]) -> plt.Figure:
    """The gap between the nearest class mean and the source network (points, class mean minus
    network, paired by seed: the seeds' tasks differ in difficulty far more than the two
    classifiers do) against the number of source points: mean ± std over seeds, and 0."""
    sizes = sorted(curve)
    gaps = [np.subtract(curve[n]["class mean"], curve[n]["network"]) for n in sizes]
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    ax.errorbar(sizes, [float(g.mean()) for g in gaps],
                yerr=[float(g.std(ddof=1)) if len(g) > 1 else 0.0 for g in gaps], marker="o", ms=4, capsize=3,
                label="class mean − source network, per seed")
    ax.axhline(0.0, ls="--", lw=1, color="0.3", label="no gap")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("source points")
    ax.set_ylabel("gap at shift 0 (points)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def references_list(exp3: Mapping[str, Mapping[float, Sequence[Mapping[str, float]]]], seeds: Sequence[int], *,
                    noise: float, n_target: int = 100,
                    curve: Mapping[int, Mapping[str, Sequence[float]]] | None = None) -> list[dict[str, object]]:
    """The results file's ``references`` of chapter 7: the source network on its own task (the
    fixed protocol's target at shift 0 is the source distribution), against the nearest class
    mean of the same source data; with ``curve`` (:func:`source_curve`), ``by_source_points``
    (source points → mean accuracy % of the network and of the class mean). Empty when shift 0
    was not run."""
    runs = exp3["source"].get(0.0)
    if not runs:
        return []
    if len(runs) != len(seeds):
        raise ParameterError(f"seeds has {len(seeds)} entries but exp3 has {len(runs)} runs at shift 0")
    target = [source_centre_accuracy(doc001_data(s, "fixed", shift=0.0, noise=noise, n_target=n_target))
              for s in seeds]
    out: dict[str, object] = {"name": "source network on its own task (shift 0, document 004's recipe)",
                              "measured": [100 * r["test"] for r in runs], "target": 100 * float(np.mean(target)),
                              "source": "nearest class mean of the same source data (this run)"}
    if curve:
        out["by_source_points"] = {str(n): {k: float(np.mean(v)) for k, v in curve[n].items()} for n in sorted(curve)}
    return [out]


def baselines_list(exp3: Mapping[str, Mapping[float, Sequence[Mapping[str, float]]]]) -> list[dict[str, object]]:
    """The results file's ``baselines`` from a fixed-protocol :func:`experiment3`: the source model
    as is and the ceiling at every shift (``{name, setting, measured (per-seed %)}``)."""
    out: list[dict[str, object]] = []
    for shift, runs in exp3["source"].items():
        out.append({"name": "source model as is", "setting": f"fixed task, shift {shift:g}",
                    "measured": [100 * r["test"] for r in runs]})
        if all("bayes" in r for r in runs):
            out.append({"name": "ceiling (Bayes: true centres, transform undone)",
                        "setting": f"fixed task, shift {shift:g}", "measured": [100 * r["bayes"] for r in runs]})
    return out
