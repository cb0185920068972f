"""Chapter 2: document 004's experiment, in NumPy: its synthetic source and target, its four
strategies, the learning-rate grid, and the page's tables, figures and claims.

- :func:`make_transfer_data`: document 004's synthetic source/target blobs, under 004's protocol
  (``"seed004"``: target class centres drawn afresh) or the corrected one (``"shifted"``: the
  target task is the source task seen through a linear distortion).
- :func:`compare_strategies`: 004's four strategies (scratch, feature extraction, full
  fine-tuning, discriminative fine-tuning) with 004's hyperparameters, scored on the target
  training data (004's protocol) *and* on held-out target data, plus lower/upper references.

The network and its trainer are the core's (:mod:`xferutils.core.numpynet`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from xferutils.core.config import ParameterError, check_choice, check_float, check_int
from xferutils.core.metrics import epochs_to_fraction
from xferutils.core.numpynet import NumpyNet, blobs, train

PROTOCOLS = ("seed004", "shifted")
STRATEGIES = ("From scratch", "Feature extraction", "Full fine-tuning", "Discriminative FT")


@dataclass
class TransferData:
    """Source training and validation data; a small labelled target set, a target validation set
    (for early stopping only), a held-out target test set and a large target pool."""

    source: tuple[np.ndarray, np.ndarray]
    source_val: tuple[np.ndarray, np.ndarray]
    target: tuple[np.ndarray, np.ndarray]
    target_val: tuple[np.ndarray, np.ndarray]
    target_test: tuple[np.ndarray, np.ndarray]
    target_pool: tuple[np.ndarray, np.ndarray]
    source_centers: np.ndarray
    target_centers: np.ndarray


def make_transfer_data(seed: int, protocol: str = "seed004", *, n_features: int = 10, n_classes: int = 5,
                       n_source: int = 1000, n_target: int = 100, n_val: int = 100, n_test: int = 1000,
                       noise: float = 0.5, shift: float = 0.1, spread: float = 2.0) -> TransferData:
    """Document 004's data: class centres N(0, spread²), samples N(centre, noise²), target distorted by I + shift·N(0,1).

    ``protocol="seed004"`` draws the target's class centres afresh, as 004 does (the target task
    then shares nothing with the source); ``"shifted"`` keeps the source centres, so the target
    is the source task under a linear domain shift. ``n_val`` labelled samples of each domain
    are set aside for early stopping.
    """
    check_choice("protocol", protocol, PROTOCOLS)
    noise = check_float("noise", noise, 0.0)
    shift = check_float("shift", shift, 0.0)
    n_val = check_int("n_val", n_val, n_classes)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    src_centers = rng.standard_normal((n_classes, n_features)) * spread
    source = blobs(src_centers, n_source, noise, rng)
    transform = np.eye(n_features) + rng.standard_normal((n_features, n_features)) * shift
    tgt_centers = rng.standard_normal((n_classes, n_features)) * spread if protocol == "seed004" else src_centers
    target = blobs(tgt_centers, n_target, noise, rng, transform)
    test = blobs(tgt_centers, n_test, noise, rng, transform)
    pool = blobs(tgt_centers, n_source, noise, rng, transform)
    return TransferData(source, blobs(src_centers, n_val, noise, rng), target,
                        blobs(tgt_centers, n_val, noise, rng, transform), test, pool, src_centers, tgt_centers)


# (lr, lr multipliers as a function of the number of layers) of each of 004's strategies
def _strategy_settings(n_layers: int, gamma: float = 0.5) -> dict[str, tuple[float, dict[str, float]]]:
    head = n_layers - 1
    frozen = {f"{p}{i}": 0.0 for i in range(head) for p in "Wb"}
    decay = {f"{p}{i}": gamma ** (head - i) for i in range(n_layers) for p in "Wb"}
    return {"From scratch": (0.1, {}), "Feature extraction": (0.1, frozen),
            "Full fine-tuning": (0.01, {}), "Discriminative FT": (0.05, decay)}


DOC004_RATES = {"From scratch": 0.1, "Feature extraction": 0.1, "Full fine-tuning": 0.01,
                "Discriminative FT": 0.05}  # document 004's fixed per-strategy learning rates
RATE_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # chapter 2: every strategy chooses its rate in this grid


def compare_strategies(data: TransferData, seed: int, *, hidden: Sequence[int] = (32, 16),
                       max_epochs: int = 300, patience: int = 20, batch_size: int = 16,
                       reg: float = 1e-3, rates: Sequence[float] | None = None) -> dict:
    """Pre-train on the source, then run 004's four strategies on the small target set.

    Every network trains until its validation loss has not improved for ``patience`` epochs
    (at most ``max_epochs``) and keeps its best epoch: the source network on source validation
    data, the strategies and the oracle on target validation data. Returns ``{"histories":
    {strategy: NumpyHistory}, "source_as_is": (train acc, test acc), "oracle": test acc of a network
    trained from scratch on the large target pool, "epochs": {"source": …, "oracle": …}, "sizes":
    {"source": …, "target": …, "pool": …, "val": …, "test": …}}`` (the numbers of samples).
    Hyperparameters are 004's: pre-training lr 0.1 and batch 64; target batch 16; decay γ = 0.5
    for discriminative fine-tuning; learning rates 0.1 / 0.1 / 0.01 / 0.05 (:data:`DOC004_RATES`)
    unless ``rates`` is given: then every strategy trains once per rate of that grid, from the
    same pretrained network, and ``out["grid"][strategy][rate]`` holds each run's history
    (``histories`` then holds the first rate's; :func:`select_rates` chooses over seeds and
    :func:`with_rates` files the chosen runs).
    """
    grid = None if rates is None else [check_float("rates", r, 0.0, 10.0) for r in rates]
    if grid is not None and not grid:
        raise ParameterError("rates must hold at least one learning rate (or be None for document 004's)")
    seed = check_int("seed", seed, 0)
    (xs, ys), (xt, yt), test = data.source, data.target, data.target_test
    dims = [xs.shape[1], *hidden, int(ys.max()) + 1]
    stop = {"epochs": max_epochs, "patience": patience, "reg": reg}
    rng = np.random.default_rng([seed, 0])
    source = NumpyNet(dims, rng)
    src_hist = train(source, xs, ys, lr=0.1, batch_size=64, val=data.source_val, rng=rng, **stop)
    out = {"histories": {}, "source_as_is": (source.accuracy(xt, yt), source.accuracy(*test))}
    if grid is not None:
        out["grid"] = {}
    for k, (name, (lr, mult)) in enumerate(_strategy_settings(source.n_layers).items()):
        for rate in ([lr] if grid is None else grid):
            # one stream per strategy, restarted at every rate: the rates of a strategy share
            # its initialisation and batch order (a paired choice), and adding a rate to the
            # grid changes no other run
            rng = np.random.default_rng([seed, 1, k])
            net = NumpyNet(dims, rng) if name == "From scratch" else source.copy()
            if name != "From scratch":
                net.init_layer(net.n_layers - 1, rng)  # a new head g on the pretrained φ
            hist = train(net, xt, yt, lr=rate, batch_size=batch_size, lr_mult=mult,
                         val=data.target_val, test=test, rng=rng, **stop)
            out["histories"].setdefault(name, hist)
            if grid is not None:
                out["grid"].setdefault(name, {})[rate] = hist
    rng = np.random.default_rng([seed, 2])
    oracle = NumpyNet(dims, rng)
    ora_hist = train(oracle, *data.target_pool, lr=0.1, batch_size=64, val=data.target_val, rng=rng, **stop)
    out["oracle"] = oracle.accuracy(*test)
    out["baselines"] = trivial_baselines(data, dims, seed)
    out["epochs"] = {"source": src_hist.best_epoch, "oracle": ora_hist.best_epoch}
    out["sizes"] = {"source": len(data.source[1]), "target": len(data.target[1]), "pool": len(data.target_pool[1]),
                    "val": len(data.target_val[1]), "test": len(data.target_test[1])}
    return out


def rate_table(runs: Sequence[dict]) -> dict[str, dict[float, float]]:
    """Mean (over seeds) best validation loss of every strategy at every rate of the grid runs
    of :func:`compare_strategies` (the criterion of early stopping, on target validation data)."""
    if not runs or any("grid" not in r for r in runs):
        raise ParameterError("runs must be compare_strategies results run with rates=[...]")
    return {name: {rate: float(np.mean([r["grid"][name][rate].val_loss[r["grid"][name][rate].best_epoch - 1]
                                        for r in runs])) for rate in runs[0]["grid"][name]}
            for name in runs[0]["grid"]}


def select_rates(runs: Sequence[dict]) -> dict[str, float]:
    """Each strategy's rate with the lowest validation loss averaged over the seeds' runs: the
    choice uses target validation data only, never the test set."""
    return {name: min(table, key=table.get) for name, table in rate_table(runs).items()}


def edge_rates(chosen: Mapping[str, float], grid: Sequence[float] = RATE_GRID) -> dict[str, str]:
    """The strategies whose chosen rate sits at an end of ``grid`` ("lowest"/"highest"): a
    better rate may lie beyond it (chapter 2 says so on the page)."""
    lo, hi = min(grid), max(grid)
    return {name: "lowest" if rate == lo else "highest" for name, rate in chosen.items() if rate in (lo, hi)}


def edge_words(chosen: Mapping[str, float], grid: Sequence[float] = RATE_GRID) -> str:
    """One sentence for chapter 2's page: which choices (if any) sit at an end of the grid."""
    edges = edge_rates(chosen, grid)
    if not edges:
        return "every chosen rate lies inside the grid, so the grid brackets each strategy's best rate"
    parts = [f"{name.lower()} chose the {end} rate ({chosen[name]:g})" for name, end in edges.items()]
    return "; ".join(parts) + ": a rate beyond the grid's end was not tried and might do better"


def with_rates(runs: Sequence[dict], chosen: Mapping[str, float]) -> list[dict]:
    """The runs with each strategy's history taken from the grid at its ``chosen`` rate."""
    out = []
    for r in runs:
        for name, rate in chosen.items():
            if rate not in r.get("grid", {}).get(name, {}):
                raise ParameterError(f"chosen rate {rate} of {name!r} was not run; rates run: "
                                     f"{sorted(r.get('grid', {}).get(name, {}))}")
        out.append(r | {"histories": {name: r["grid"][name][chosen[name]] for name in r["histories"]}})
    return out


def rates_markdown(chosen: Mapping[str, float], table: Mapping[str, Mapping[float, float]]) -> str:
    """Markdown: per strategy, document 004's rate, the mean validation loss at each grid rate
    (the chosen one in bold) and the chosen rate."""
    from xferutils.pages.plotting import markdown_table

    rates = sorted({r for t in table.values() for r in t})
    rows = [[name, f"{DOC004_RATES[name]:g}",
             *(("**{:.3f}**" if rate == chosen[name] else "{:.3f}").format(table[name][rate])
               if rate in table[name] else "–" for rate in rates), f"{chosen[name]:g}"]
            for name in table]
    return markdown_table(["strategy", "document 004's rate", *[f"loss at {r:g}" for r in rates], "chosen"],
                          rows, "l" + "r" * (len(rates) + 2))


def trivial_baselines(data: TransferData, dims: Sequence[int], seed: int) -> dict[str, float]:
    """The baselines on the same labelled target samples as the strategies (held-out accuracy):
    logistic regression on the raw inputs, the same NumPy network at its random initialisation
    (frozen) with a logistic-regression head, nearest class prototypes; and the linear model on
    the oracle's large target pool (what the oracle should beat)."""
    from xferutils.core import baselines as bl

    (xt, yt), test = data.target, data.target_test
    return {"inputs": bl.pixel_logistic((xt, yt), test, seed=seed),
            "random": bl.random_frozen(lambda rng: NumpyNet(dims, rng), (xt, yt), test, seed=seed),
            "prototypes": bl.prototype_accuracy((xt, yt), test),
            "inputs_pool": bl.pixel_logistic(data.target_pool, test, seed=seed)}


# --- summaries, claims and figures ---------------------------------------------------------------

BASELINE_NAMES = {"inputs": "logistic regression on the inputs", "random": "random frozen network + linear head",
                  "prototypes": "nearest class prototype"}

SHORT = {"From scratch": "scratch", "Feature extraction": "fe", "Full fine-tuning": "ft",
         "Discriminative FT": "dft"}


def summarise(runs: Mapping[str, Sequence[dict]]) -> dict[str, dict]:
    """Per setting: spreads over seeds of the references and of each strategy's final accuracies.

    ``runs[setting]`` is a list of :func:`compare_strategies` results, one per seed. Each
    strategy gets ``train`` (004's score), ``test`` (held-out), ``epochs`` (the epoch kept by
    early stopping) and ``epochs90`` (004's convergence metric: first epoch at 90 % of the kept
    held-out accuracy), and the raw per-seed ``values``. The references carry theirs too.
    """
    from xferutils.core.metrics import spread

    out = {}
    for name, per_seed in runs.items():
        refs = {"source_as_is": [r["source_as_is"][1] for r in per_seed],
                "oracle": [r["oracle"] for r in per_seed]}
        row: dict = {k: spread(v) for k, v in refs.items()} | {"values": refs}
        row["sizes"] = per_seed[0].get("sizes", {})
        for k in STRATEGIES:
            hs = [r["histories"][k] for r in per_seed]
            vals = {"train": [h.final_train for h in hs], "test": [h.final_test for h in hs],
                    "epochs": [h.best_epoch for h in hs],
                    "epochs90": [epochs_to_fraction(h.test_acc[:h.best_epoch]) for h in hs]}
            row[k] = {m: spread(v) for m, v in vals.items()} | {"values": vals}
        if all("baselines" in r for r in per_seed):
            bvals = {b: [r["baselines"][b] for r in per_seed] for b in per_seed[0]["baselines"]}
            row["baselines"] = {b: spread(v) for b, v in bvals.items()} | {"values": bvals}
        out[name] = row
    return out


def add_claims(family, row: dict) -> list[str]:
    """Register seed 004's six claims (split into paired comparisons) and the book's headroom
    claims, measured on one setting of :func:`summarise`, in ``family``; return their ids.

    Ids: ``004-transfer-beats-scratch-<s>``, ``004-ft-highest-vs-<s>``, ``004-fe-best-vs-<s>``
    (the rivals other than scratch: that comparison is ``004-transfer-beats-scratch-<s>``),
    ``004-dft-beats-ft``, ``004-fe-converges-fast``, ``004-transfer-converges-faster-<s>``;
    ``ch2-np-<s>-beats-as-is`` and ``ch2-np-headroom`` (oracle above the source model as is).
    """
    def acc(k: str) -> list[float]:
        return [100 * v for v in row[k]["values"]["test"]]

    def ep(k: str) -> list[float]:
        return row[k]["values"]["epochs90"]

    src, ids = "document 004", []
    pairs: dict[tuple[str, str], str] = {}

    def direction(cid, text, a, b, pair=None, **kw):
        """One test per pair of strategies: the pair asked the other way round is a mirror."""
        source = kw.pop("source", src)
        if pair is not None and pair[::-1] in pairs:
            family.mirror(cid, pairs[pair[::-1]], source, text)
        else:
            family.direction(cid, source, text, a, b, **kw)
            if pair is not None:
                pairs[pair] = cid
        ids.append(cid)

    transfer = STRATEGIES[1:]
    for k in transfer:
        direction(f"004-transfer-beats-scratch-{SHORT[k]}", f"{k} beats training from scratch "
                  "with little target data", acc(k), acc("From scratch"), (k, "From scratch"),
                  unit="points")
    for who, slug in (("Full fine-tuning", "ft-highest"), ("Feature extraction", "fe-best")):
        for k in transfer:  # against scratch: the comparisons of 004-transfer-beats-scratch-*
            if k != who:
                direction(f"004-{slug}-vs-{SHORT[k]}", f"{who} is more accurate than {k}",
                          acc(who), acc(k), (who, k), unit="points")
    direction("004-dft-beats-ft", "Discriminative FT improves on full fine-tuning",
              acc("Discriminative FT"), acc("Full fine-tuning"), ("Discriminative FT", "Full fine-tuning"),
              unit="points")
    direction("004-fe-converges-fast", "Feature extraction needs fewer epochs to 90 % of its "
              "final accuracy than training from scratch", ep("Feature extraction"),
              ep("From scratch"), expect="less", unit="epochs")
    for k in transfer[1:]:
        direction(f"004-transfer-converges-faster-{SHORT[k]}", f"{k} needs fewer epochs to 90 % "
                  "of its final accuracy than training from scratch", ep(k), ep("From scratch"),
                  expect="less", unit="epochs")
    as_is = [100 * v for v in row["values"]["source_as_is"]]
    for k in STRATEGIES:
        direction(f"ch2-np-{SHORT[k]}-beats-as-is", f"{k} beats the source model as is",
                  acc(k), as_is, source="book", unit="points")
    sizes = row["sizes"]
    direction("ch2-np-headroom", f"a network trained on {sizes['pool']:,} target samples beats the source "
              "model as is", [100 * v for v in row["values"]["oracle"]], as_is, source="book",
              unit="points")
    if "baselines" in row:  # every strategy against the linear model on the same target samples
        lin = [100 * v for v in row["baselines"]["values"]["inputs"]]
        for k in STRATEGIES:
            direction(f"ch2-baseline-np-{SHORT[k]}-vs-inputs", f"{k} beats {BASELINE_NAMES['inputs']} "
                      f"(same {sizes['target']} target samples)", acc(k), lin, source="book", unit="points")
    return ids


def results_table(summary: Mapping[str, dict]) -> str:
    """Markdown: per setting, the references and each strategy's 004-score / **held-out** accuracy (%)."""
    from xferutils.pages.plotting import markdown_table

    rows = [[name, row["source_as_is"].fmt(),
             *(f"{100 * row[k]['train'].mean:.0f} / **{row[k]['test'].fmt()}**" for k in STRATEGIES),
             row["oracle"].fmt()] for name, row in summary.items()]
    return markdown_table(["setting", "source as is", *STRATEGIES, "oracle"], rows)


def baseline_table(summary: Mapping[str, dict]) -> str:
    """Markdown: one row per strategy and baseline, one column per setting: held-out target
    accuracy (%) on the same labelled target samples; then the oracle and the linear model on
    the oracle's pool."""
    from xferutils.pages.plotting import markdown_table

    names = list(summary)
    rows = [[k, *(summary[n][k]["test"].fmt() for n in names)] for k in STRATEGIES]
    rows += [[label, *(summary[n]["baselines"][b].fmt() if "baselines" in summary[n] else "–" for n in names)]
             for b, label in BASELINE_NAMES.items()]
    rows += [["oracle (network, target pool)", *(summary[n]["oracle"].fmt() for n in names)],
             ["logistic regression on the inputs, target pool",
              *(summary[n]["baselines"]["inputs_pool"].fmt() if "baselines" in summary[n] else "–" for n in names)]]
    return markdown_table(["method", *names], rows, "l" + "r" * len(names))


def baselines_list(summary: Mapping[str, dict]) -> list[dict]:
    """The results file's ``baselines`` of the NumPy experiment: ``{name, setting, measured}`` (%)."""
    return [{"name": label, "setting": f"NumPy experiment, {n}, {row['sizes']['target']} target samples",
             "measured": [100 * v for v in row["baselines"]["values"][b]]}
            for n, row in summary.items() if "baselines" in row for b, label in BASELINE_NAMES.items()]


def references_list(summary: Mapping[str, dict]) -> list[dict]:
    """The results file's ``references`` of the NumPy experiment: the oracle against the linear
    model trained on the same target pool."""
    return [{"name": f"oracle ({n})", "measured": [100 * v for v in row["values"]["oracle"]],
             "target": 100 * row["baselines"]["inputs_pool"].mean,
             "source": "logistic regression on the inputs, same target pool (this run): the task's Bayes classifier is linear"}
            for n, row in summary.items() if "baselines" in row]


def oracle_values(summary: Mapping[str, dict], setting: str) -> dict[str, object]:
    """Chapter 2's glue on the oracle against logistic regression on the same target pool:
    both means (%), the gap (points) and a word saying which way it goes."""
    row = summary[setting]
    oracle, linear = 100 * row["oracle"].mean, 100 * row["baselines"]["inputs_pool"].mean
    best = max(STRATEGIES, key=lambda k: row[k]["test"].mean)
    small, top = 100 * row["baselines"]["inputs"].mean, 100 * row[best]["test"].mean
    return {"oracle": oracle, "linear": linear, "gap": abs(linear - oracle),
            "word": "falls short of" if oracle < linear else "matches or beats",
            "linear_small": small, "best": best.lower(), "best_acc": top,
            "small_word": "above" if small > top else "below",
            "reading": ("none of the four strategies beats a linear model trained on the same samples; the "
                        "comparisons below rank the strategies against each other, as document 004 asks, not "
                        "against the best method available" if small > top else
                        f"{best.lower()} beats the linear model trained on the same samples")}


def budget_table(summary: Mapping[str, dict]) -> str:
    """Markdown: the epoch each strategy kept (early stopping on target validation loss), mean ± std."""
    from xferutils.pages.plotting import markdown_table

    rows = [[name, *(row[k]["epochs"].fmt(scale=1.0, digits=0) for k in STRATEGIES)]
            for name, row in summary.items()]
    return markdown_table(["setting", *STRATEGIES], rows)


def protocol_figure(seed: int, settings: Mapping[str, dict]):
    """Source (dots) and target (crosses) samples on the source's first two principal components,
    one panel per data setting (``{title: make_transfer_data kwargs}``)."""
    import matplotlib.pyplot as plt

    from xferutils.pages.plotting import PALETTE

    fig, axes = plt.subplots(1, len(settings), figsize=(9, 3.8), sharex=True, sharey=True, squeeze=False)
    for ax, (title, kw) in zip(axes[0], settings.items()):
        d = make_transfer_data(seed, **kw)
        (xs, ys), (xt, yt) = d.source, d.target
        _, _, vt = np.linalg.svd(xs - xs.mean(0), full_matrices=False)
        ps, pt = (xs - xs.mean(0)) @ vt[:2].T, (xt - xs.mean(0)) @ vt[:2].T
        for c in range(len(d.source_centers)):
            ax.scatter(*ps[ys == c].T, s=4, alpha=0.3, color=PALETTE[c])
            ax.scatter(*pt[yt == c].T, s=30, marker="x", color=PALETTE[c])
        ax.set(title=title, xlabel="PC 1")
    axes[0, 0].set_ylabel("PC 2")
    fig.tight_layout()
    return fig


def strategy_figure(settings: Mapping[str, Sequence[dict]]):
    """Document 004's figure, redrawn two panels per row: per setting, accuracy per epoch (held-out
    solid, training dashed, until each run's kept epoch) and the final accuracies (held-out bars,
    training hatched) beside the two references (source as is, oracle). Accuracies in %."""
    import matplotlib.pyplot as plt

    from xferutils.pages.plotting import PALETTE

    fig, axes = plt.subplots(len(settings), 2, figsize=(10, 3.9 * len(settings)), squeeze=False)
    for (ax_acc, ax_bar), (title, per_seed) in zip(axes, settings.items()):
        for i, k in enumerate(STRATEGIES):
            hs = [r["histories"][k] for r in per_seed]
            n = min(h.best_epoch for h in hs)
            for key, style in (("test_acc", "-"), ("train_acc", "--")):
                a = 100 * np.array([getattr(h, key)[:n] for h in hs])
                x = np.arange(1, n + 1)
                ax_acc.plot(x, a.mean(0), style, color=PALETTE[i], lw=1.4, label=k if style == "-" else None)
                if style == "-":
                    ax_acc.fill_between(x, a.mean(0) - a.std(0), a.mean(0) + a.std(0), color=PALETTE[i],
                                        alpha=0.15)
            for key, off, hatch in (("final_test", 0.2, None), ("final_train", -0.2, "//")):
                v = 100 * np.array([getattr(h, key) for h in hs])
                ax_bar.bar(i + off, v.mean(), width=0.4, yerr=v.std(), capsize=3, color=PALETTE[i],
                           alpha=0.85 if hatch is None else 0.4, hatch=hatch, edgecolor="k", lw=0.5)
        for val, style, label in ((np.mean([r["source_as_is"][1] for r in per_seed]), ":", "source as is"),
                                  (np.mean([r["oracle"] for r in per_seed]), "-.", "oracle")):
            ax_bar.axhline(100 * val, color="k", ls=style, lw=1.2, label=label)
        ax_acc.set(title=f"{title}: accuracy per epoch", xlabel="epoch (log scale)", ylabel="accuracy (%)",
                   ylim=(0, 102))
        # a log epoch axis: runs that stop after 10 epochs stay readable beside one of 175
        ax_acc.set_xscale("log")
        ax_acc.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax_bar.set(title=f"{title}: kept epoch", ylabel="accuracy (%)", ylim=(0, 102))
        ax_bar.set_xticks(range(len(STRATEGIES)), [s.replace(" ", "\n", 1) for s in STRATEGIES])
    # one legend under the panels, not over the curves
    handles, labels = axes[0][0].get_legend_handles_labels()
    more = axes[0][1].get_legend_handles_labels()
    fig.legend(handles + more[0], labels + more[1], loc="lower center", ncol=3, fontsize=9)
    fig.tight_layout(rect=(0, 0.09 / len(settings), 1, 1))
    return fig


def fit_words(train_min: float) -> str:
    """How well every strategy fits its training samples, from the lowest mean training
    accuracy (%): "perfectly (100 %)", else "to at least 97.3 %" (rounded down)."""
    if train_min >= 100.0 - 1e-9:
        return "perfectly (100 %)"
    return f"to at least {math.floor(10 * train_min) / 10:.1f} %"


def glue_values(summary: Mapping[str, dict], seed004: str, corrected: str) -> dict:
    """The numbers chapter 2's prose quotes about the two protocols (accuracies in %, and the
    numbers of source, target and target-pool training samples)."""
    s4, sc = summary[seed004], summary[corrected]
    tests = {k: 100 * sc[k]["test"].mean for k in STRATEGIES}
    train_min = 100 * min(s4[k]["train"].mean for k in STRATEGIES)
    return {"np_asis_004": 100 * s4["source_as_is"].mean,
            "np_train_min_004": train_min, "np_train_fit_004": fit_words(train_min),
            "np_test_min_004": 100 * min(s4[k]["test"].mean for k in STRATEGIES),
            "np_asis_corr": 100 * sc["source_as_is"].mean, "np_oracle_corr": 100 * sc["oracle"].mean,
            "np_best_corr": max(tests.values()), "np_worst_corr": min(tests.values()),
            "np_scratch_train_corr": 100 * sc["From scratch"]["train"].mean,
            "np_scratch_test_corr": tests["From scratch"],
            "np_epochs_min_corr": min(sc[k]["epochs"].mean for k in STRATEGIES),
            "np_epochs_max_corr": max(sc[k]["epochs"].mean for k in STRATEGIES),
            **{f"np_n_{k}": v for k, v in sc["sizes"].items()}}
