"""The framework in NumPy: seed 004's network with hand-written backprop and its experiment (chapter 2).

- :class:`NumpyNet`: ReLU layers φ and a softmax head g, forward and backward written out;
  :func:`gradient_check` compares the backward pass with finite differences.
- :func:`make_transfer_data`: seed 004's synthetic source/target blobs, under 004's protocol
  (``"seed004"``: target class centres drawn afresh) or the corrected one (``"shifted"``: the
  target task is the source task seen through a linear distortion).
- :func:`compare_strategies`: 004's four strategies (scratch, feature extraction, full
  fine-tuning, discriminative fine-tuning) with 004's hyperparameters, scored on the target
  training data (004's protocol) *and* on held-out target data, plus lower/upper references.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .config import ParameterError, check_choice, check_float, check_int
from .strategies import epochs_to_fraction

PROTOCOLS = ("seed004", "shifted")
STRATEGIES = ("From scratch", "Feature extraction", "Full fine-tuning", "Discriminative FT")


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stabilised by subtracting the row maximum."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class NumpyNet:
    """``softmax(W_L·relu(…relu(W_1 x + b_1)…) + b_L)``; layers 0..L-2 are φ, layer L-1 is the head g.

    Weights ``W{i}`` have shape (d_in, d_out) and He initialisation N(0, 2/d_in); biases start at 0.
    """

    def __init__(self, dims: Sequence[int], rng: np.random.Generator) -> None:
        self.dims = [check_int("dims", d, 1) for d in dims]
        if len(self.dims) < 2:
            raise ParameterError(f"dims={list(dims)} needs at least an input and an output width")
        self.params: dict[str, np.ndarray] = {}
        for i in range(len(self.dims) - 1):
            self.init_layer(i, rng)

    @property
    def n_layers(self) -> int:
        return len(self.dims) - 1

    def init_layer(self, i: int, rng: np.random.Generator) -> None:
        """(Re)initialise layer ``i`` (the head is ``n_layers - 1``)."""
        d_in, d_out = self.dims[i], self.dims[i + 1]
        self.params[f"W{i}"] = rng.standard_normal((d_in, d_out)) * np.sqrt(2.0 / d_in)
        self.params[f"b{i}"] = np.zeros(d_out)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Class probabilities and the inputs of every layer (x, φ_1(x), …, φ(x))."""
        acts = [x]
        h = x
        for i in range(self.n_layers - 1):
            h = np.maximum(0.0, h @ self.params[f"W{i}"] + self.params[f"b{i}"])
            acts.append(h)
        head = self.n_layers - 1
        return softmax(h @ self.params[f"W{head}"] + self.params[f"b{head}"]), acts

    def loss(self, x: np.ndarray, y: np.ndarray, reg: float = 0.0) -> float:
        """Mean cross-entropy plus (reg/2)·Σ||W||² (weights only, not biases)."""
        probs, _ = self.forward(x)
        ce = -np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12))
        return float(ce + 0.5 * reg * sum(np.sum(w ** 2) for k, w in self.params.items() if k[0] == "W"))

    def gradients(self, x: np.ndarray, y: np.ndarray, reg: float = 0.0) -> dict[str, np.ndarray]:
        """∂loss/∂θ by backpropagation: δ = p − onehot(y) at the logits, then down the layers."""
        return self.loss_and_gradients(x, y, reg)[1]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray,
                           reg: float = 0.0) -> tuple[float, dict[str, np.ndarray]]:
        """The loss and its gradients from one forward pass (what :func:`train` uses)."""
        probs, acts = self.forward(x)
        loss = -np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12))
        loss += 0.5 * reg * sum(np.sum(w ** 2) for k, w in self.params.items() if k[0] == "W")
        delta = probs.copy()
        delta[np.arange(len(y)), y] -= 1.0
        delta /= len(y)
        grads = {}
        for i in reversed(range(self.n_layers)):
            w = self.params[f"W{i}"]
            grads[f"W{i}"] = acts[i].T @ delta + reg * w
            grads[f"b{i}"] = delta.sum(axis=0)
            if i > 0:
                delta = (delta @ w.T) * (acts[i] > 0)  # ReLU'(z) = 1[z > 0] = 1[relu(z) > 0]
        return float(loss), grads

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[0].argmax(axis=1)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(x) == y))

    def copy(self) -> NumpyNet:
        new = object.__new__(NumpyNet)
        new.dims = list(self.dims)
        new.params = {k: v.copy() for k, v in self.params.items()}
        return new


def gradient_check(net: NumpyNet, x: np.ndarray, y: np.ndarray, reg: float = 0.0, eps: float = 1e-5) -> float:
    """Largest relative difference between backprop and central finite differences, over all parameters."""
    grads = net.gradients(x, y, reg)
    worst = 0.0
    for name, p in net.params.items():
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            up = net.loss(x, y, reg)
            p[idx] = old - eps
            down = net.loss(x, y, reg)
            p[idx] = old
            num[idx] = (up - down) / (2 * eps)
        denom = np.maximum(1e-8, np.abs(num) + np.abs(grads[name]))
        worst = max(worst, float(np.max(np.abs(num - grads[name]) / denom)))
    return worst


@dataclass
class History:
    """Per-epoch mean batch loss and accuracy on the training data and on held-out data."""

    loss: list[float]
    train_acc: list[float]
    test_acc: list[float]


def train(net: NumpyNet, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int,
          rng: np.random.Generator, reg: float = 1e-3, lr_mult: Mapping[str, float] | None = None,
          test: tuple[np.ndarray, np.ndarray] | None = None) -> History:
    """Mini-batch gradient descent in place; ``lr_mult[name]`` scales a parameter's rate (0 freezes)."""
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    lr = check_float("lr", lr, 0.0)
    mult = dict(lr_mult or {})
    n = len(y)
    n_batches = max(1, n // batch_size)
    hist = History([], [], [])
    for _ in range(epochs):
        perm = rng.permutation(n)
        total = 0.0
        for b in range(n_batches):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            loss, grads = net.loss_and_gradients(x[idx], y[idx], reg)
            total += loss
            for name, g in grads.items():
                m = mult.get(name, 1.0)
                if m:
                    net.params[name] -= lr * m * g
        hist.loss.append(total / n_batches)
        hist.train_acc.append(net.accuracy(x, y))
        hist.test_acc.append(net.accuracy(*test) if test is not None else float("nan"))
    return hist


# --- seed 004's synthetic source and target -----------------------------------------------------


@dataclass
class TransferData:
    """Source training data, a small labelled target set, a held-out target test set and a large target pool."""

    source: tuple[np.ndarray, np.ndarray]
    target: tuple[np.ndarray, np.ndarray]
    target_test: tuple[np.ndarray, np.ndarray]
    target_pool: tuple[np.ndarray, np.ndarray]
    source_centers: np.ndarray
    target_centers: np.ndarray


def blobs(centers: np.ndarray, n: int, noise: float, rng: np.random.Generator,
          transform: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n // classes`` Gaussian samples (std ``noise``) around each centre, optionally times ``transform``, shuffled."""
    k = len(centers)
    per = n // k
    y = np.repeat(np.arange(k), per)
    x = centers[y] + rng.standard_normal((per * k, centers.shape[1])) * noise
    if transform is not None:
        x = x @ transform
    order = rng.permutation(len(y))
    return x[order], y[order]


def make_transfer_data(seed: int, protocol: str = "seed004", *, n_features: int = 10, n_classes: int = 5,
                       n_source: int = 1000, n_target: int = 100, n_test: int = 1000, noise: float = 0.5,
                       shift: float = 0.1, spread: float = 2.0) -> TransferData:
    """Seed 004's data: class centres N(0, spread²), samples N(centre, noise²), target distorted by I + shift·N(0,1).

    ``protocol="seed004"`` draws the target's class centres afresh, as 004 does (the target task
    then shares nothing with the source); ``"shifted"`` keeps the source centres, so the target
    is the source task under a linear domain shift.
    """
    check_choice("protocol", protocol, PROTOCOLS)
    noise = check_float("noise", noise, 0.0)
    shift = check_float("shift", shift, 0.0)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    src_centers = rng.standard_normal((n_classes, n_features)) * spread
    source = blobs(src_centers, n_source, noise, rng)
    transform = np.eye(n_features) + rng.standard_normal((n_features, n_features)) * shift
    tgt_centers = rng.standard_normal((n_classes, n_features)) * spread if protocol == "seed004" else src_centers
    target = blobs(tgt_centers, n_target, noise, rng, transform)
    test = blobs(tgt_centers, n_test, noise, rng, transform)
    pool = blobs(tgt_centers, n_source, noise, rng, transform)
    return TransferData(source, target, test, pool, src_centers, tgt_centers)


# (lr, lr multipliers as a function of the number of layers) of each of 004's strategies
def _strategy_settings(n_layers: int, gamma: float = 0.5) -> dict[str, tuple[float, dict[str, float]]]:
    head = n_layers - 1
    frozen = {f"{p}{i}": 0.0 for i in range(head) for p in "Wb"}
    decay = {f"{p}{i}": gamma ** (head - i) for i in range(n_layers) for p in "Wb"}
    return {"From scratch": (0.1, {}), "Feature extraction": (0.1, frozen),
            "Full fine-tuning": (0.01, {}), "Discriminative FT": (0.05, decay)}


def compare_strategies(data: TransferData, seed: int, *, hidden: Sequence[int] = (32, 16), epochs: int = 100,
                       pretrain_epochs: int = 100, batch_size: int = 16, reg: float = 1e-3) -> dict:
    """Pre-train on the source, then run 004's four strategies on the small target set.

    Returns ``{"histories": {strategy: History}, "source_as_is": (train acc, test acc),
    "oracle": test acc of a network trained from scratch on the large target pool}``.
    Hyperparameters are 004's: pre-training lr 0.1 and batch 64; target batch 16; learning rates
    0.1 / 0.1 / 0.01 / 0.05; decay γ = 0.5 for discriminative fine-tuning.
    """
    rng = np.random.default_rng(check_int("seed", seed, 0))
    (xs, ys), (xt, yt), test = data.source, data.target, data.target_test
    dims = [xs.shape[1], *hidden, int(ys.max()) + 1]
    source = NumpyNet(dims, rng)
    train(source, xs, ys, epochs=pretrain_epochs, lr=0.1, batch_size=64, rng=rng, reg=reg)
    out = {"histories": {}, "source_as_is": (source.accuracy(xt, yt), source.accuracy(*test))}
    for name, (lr, mult) in _strategy_settings(source.n_layers).items():
        net = NumpyNet(dims, rng) if name == "From scratch" else source.copy()
        if name != "From scratch":
            net.init_layer(net.n_layers - 1, rng)  # a new head g on the pretrained φ
        out["histories"][name] = train(net, xt, yt, epochs=epochs, lr=lr, batch_size=batch_size, rng=rng,
                                       reg=reg, lr_mult=mult, test=test)
    oracle = NumpyNet(dims, rng)
    train(oracle, *data.target_pool, epochs=pretrain_epochs, lr=0.1, batch_size=64, rng=rng, reg=reg)
    out["oracle"] = oracle.accuracy(*test)
    return out


# --- summaries, verdicts and 004's four-panel figure ---------------------------------------------


def summarise(runs: Mapping[str, Sequence[dict]]) -> dict[str, dict]:
    """Per setting: spreads over seeds of the references and of each strategy's final accuracies.

    ``runs[setting]`` is a list of :func:`compare_strategies` results, one per seed. Each
    strategy gets ``train`` (004's score), ``test`` (held-out), ``epochs90_train`` and
    ``epochs90_test`` (004's convergence metric on either curve), and the raw per-seed ``values``.
    """
    from .metrics import spread

    out = {}
    for name, per_seed in runs.items():
        row: dict = {"source_as_is": spread([r["source_as_is"][1] for r in per_seed]),
                     "oracle": spread([r["oracle"] for r in per_seed])}
        for k in STRATEGIES:
            hs = [r["histories"][k] for r in per_seed]
            vals = {"train": [h.train_acc[-1] for h in hs], "test": [h.test_acc[-1] for h in hs],
                    "epochs90_train": [epochs_to_fraction(h.train_acc) for h in hs],
                    "epochs90_test": [epochs_to_fraction(h.test_acc) for h in hs]}
            row[k] = {m: spread(v) for m, v in vals.items()} | {"values": vals}
        out[name] = row
    return out


def _paired(row: dict, a: str, b: str, metric: str = "test") -> tuple[float, float]:
    """Mean and 95% half-width of the per-seed difference a − b."""
    from .metrics import spread

    d = spread(np.subtract(row[a]["values"][metric], row[b]["values"][metric]))
    return d.mean, d.ci95


def _verdict(mean: float, ci: float, higher_is_claimed: bool = True) -> str:
    if not np.isfinite(ci):
        return "not testable with one seed"
    lo, hi = mean - ci, mean + ci
    if (lo > 0) if higher_is_claimed else (hi < 0):
        return "supported"
    if (hi < 0) if higher_is_claimed else (lo > 0):
        return "contradicted"
    return "not shown (difference within the 95% interval)"


def _versus(row: dict, a: str, others: Sequence[str], metric: str = "test",
            higher_is_claimed: bool = True) -> tuple[str, str]:
    """Per-seed paired differences a − b for each b, and one verdict: supported if a wins every one,
    contradicted if a loses one, else not shown."""
    unit, scale = ("pts", 100.0) if metric == "test" else ("epochs", 1.0)
    diffs = {b: _paired(row, a, b, metric) for b in others}
    text = "; ".join(f"− {b}: {scale * m:+.1f} ± {scale * c:.1f} {unit}" for b, (m, c) in diffs.items())
    vs = [_verdict(m, c, higher_is_claimed) for m, c in diffs.values()]
    verdict = ("supported" if all(v == "supported" for v in vs) else
               "contradicted" if any(v == "contradicted" for v in vs) else
               "not shown (differences within their 95% intervals)")
    return f"{a} {text}", verdict


def verdicts(row: dict) -> list[tuple[str, str, str]]:
    """Seed 004's summary claims, each with the measured per-seed paired differences and a verdict."""
    transfer = list(STRATEGIES[1:])
    out = []
    claims = [("All transfer strategies beat training from scratch with little target data", None),
              ("Full fine-tuning can achieve the highest accuracy", "Full fine-tuning"),
              ("Feature extraction is best when source and target domains are similar", "Feature extraction"),
              ("Discriminative fine-tuning improves on full fine-tuning", "Discriminative FT")]
    for claim, who in claims:
        if who is None:
            parts = [_versus(row, k, ["From scratch"]) for k in transfer]
            text = "; ".join(p for p, _ in parts)
            vs = [v for _, v in parts]
            verdict = ("supported" if all(v == "supported" for v in vs) else
                       "contradicted" if any(v == "contradicted" for v in vs) else
                       "not shown (differences within their 95% intervals)")
        elif who == "Discriminative FT":
            text, verdict = _versus(row, who, ["Full fine-tuning"])
        else:
            text, verdict = _versus(row, who, [k for k in STRATEGIES if k != who])
        out.append((claim, text, verdict))
    text, verdict = _versus(row, "Feature extraction", ["From scratch"], "epochs90_test", higher_is_claimed=False)
    out.append(("Feature extraction converges fast (fewer epochs to 90% of final than scratch)", text, verdict))
    parts = [_versus(row, k, ["From scratch"], "epochs90_test", higher_is_claimed=False) for k in transfer]
    vs = [v for _, v in parts]
    out.append(("Transfer methods converge faster than training from scratch", "; ".join(p for p, _ in parts),
                "supported" if all(v == "supported" for v in vs) else
                "contradicted" if any(v == "contradicted" for v in vs) else
                "not shown (differences within their 95% intervals)"))
    return out


def four_panel(settings: Mapping[str, Sequence[dict]]):
    """Seed 004's figure (loss, accuracy, final accuracy, epochs to 90%), one row per setting, with seeds.

    Accuracy curves: held-out target accuracy solid, training accuracy (004's) dashed; bars:
    mean ± std over seeds, training accuracy hatched beside held-out.
    """
    import matplotlib.pyplot as plt

    from .plotting import PALETTE

    fig, axes = plt.subplots(len(settings), 4, figsize=(15, 3.4 * len(settings)), squeeze=False)
    for row_axes, (title, per_seed) in zip(axes, settings.items()):
        ax_loss, ax_acc, ax_final, ax_conv = row_axes
        for i, k in enumerate(STRATEGIES):
            hs = [r["histories"][k] for r in per_seed]
            for ax, arr, style in ((ax_loss, [h.loss for h in hs], "-"), (ax_acc, [h.test_acc for h in hs], "-"),
                                   (ax_acc, [h.train_acc for h in hs], "--")):
                a = np.asarray(arr)
                x = np.arange(1, a.shape[1] + 1)
                ax.plot(x, a.mean(0), style, color=PALETTE[i], label=k if style == "-" else None, lw=1.3)
                if style == "-":
                    ax.fill_between(x, a.mean(0) - a.std(0), a.mean(0) + a.std(0), color=PALETTE[i], alpha=0.15)
            for ax, key, offset, hatch in ((ax_final, "test", 0.2, None), (ax_final, "train", -0.2, "//"),
                                           (ax_conv, "test", 0.2, None), (ax_conv, "train", -0.2, "//")):
                if ax is ax_final:
                    v = np.array([getattr(h, f"{key}_acc")[-1] for h in hs])
                else:
                    v = np.array([epochs_to_fraction(getattr(h, f"{key}_acc")) for h in hs])
                ax.bar(i + offset, v.mean(), width=0.4, yerr=v.std(), capsize=3, color=PALETTE[i],
                       alpha=0.85 if hatch is None else 0.4, hatch=hatch, edgecolor="k", lw=0.5)
        ax_loss.set(title=f"{title}: training loss", xlabel="epoch", ylabel="loss")
        ax_acc.set(title="accuracy (solid held-out, dashed train)", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.05))
        ax_final.set(title="final accuracy (hatched: train)", ylabel="accuracy", ylim=(0, 1.05))
        ax_conv.set(title="epochs to 90% of final (hatched: train)", ylabel="epochs")
        for ax in (ax_final, ax_conv):
            ax.set_xticks(range(len(STRATEGIES)), [s.replace(" ", "\n", 1) for s in STRATEGIES], fontsize=8)
        ax_acc.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
