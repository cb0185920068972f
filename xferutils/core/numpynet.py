"""Document 004's network in NumPy, with hand-written backprop (chapters 2 and 7).

- :class:`NumpyNet`: ReLU layers φ and a softmax head g, forward and backward written out;
  :func:`gradient_check` compares the backward pass with finite differences.
- :func:`train`: minibatch SGD with early stopping on validation loss (the teaching exception
  to the book's one trainer, :func:`xferutils.core.ensemble.fit_replicas`).
- :func:`blobs`: Gaussian class clusters, the synthetic data of documents 001 and 004.

Chapter 2's experiment on document 004's protocol is in :mod:`xferutils.chapters.numpy_strategies`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from xferutils.core.config import ParameterError, check_float, check_int


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
class NumpyHistory:
    """Per-epoch mean batch loss and accuracy on the training, validation and held-out data.

    ``best_epoch`` (1-based) is the epoch whose weights were kept: with early stopping the one
    of lowest validation loss, else the last.
    """

    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    best_epoch: int = 0

    @property
    def final_train(self) -> float:
        """Training accuracy of the kept weights."""
        return self.train_acc[self.best_epoch - 1]

    @property
    def final_test(self) -> float:
        """Held-out accuracy of the kept weights."""
        return self.test_acc[self.best_epoch - 1]


def train(net: NumpyNet, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int,
          rng: np.random.Generator, reg: float = 1e-3, lr_mult: Mapping[str, float] | None = None,
          val: tuple[np.ndarray, np.ndarray] | None = None, patience: int | None = None,
          min_delta: float = 1e-3, test: tuple[np.ndarray, np.ndarray] | None = None) -> NumpyHistory:
    """Mini-batch gradient descent in place; ``lr_mult[name]`` scales a parameter's rate (0 freezes).

    ``patience``: early stopping on the validation loss of ``val``; the weights of the best
    epoch are kept and training ends ``patience`` epochs after it (or after ``epochs``); an
    epoch counts as better only if it lowers the best validation loss by more than ``min_delta``.
    ``test`` is only recorded (for curves), never used for a choice.
    """
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    lr = check_float("lr", lr, 0.0)
    if patience is not None:
        check_int("patience", patience, 1)
        if val is None:
            raise ParameterError("patience needs a validation split: pass val=(x, y)")
    mult = dict(lr_mult or {})
    n = len(y)
    n_batches = max(1, n // batch_size)
    hist = NumpyHistory()
    best, best_loss = net.copy(), np.inf
    for epoch in range(epochs):
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
        hist.val_loss.append(net.loss(*val) if val is not None else float("nan"))
        hist.test_acc.append(net.accuracy(*test) if test is not None else float("nan"))
        if patience is not None and hist.val_loss[-1] < best_loss - min_delta:
            best, best_loss, hist.best_epoch = net.copy(), hist.val_loss[-1], epoch + 1
        if patience is not None and epoch + 1 - hist.best_epoch >= patience:
            break
    if patience is None:
        hist.best_epoch = len(hist.loss)
    else:
        net.params = best.params
    return hist


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
