"""Baselines that keep the transfer methods honest (chapters 2 and 3).

A transfer strategy earns its place only if it beats what needs no transfer and no deep
training at all. Three baselines, each trained on exactly the labelled images a strategy gets
and scored on the same test images:

- :func:`pixel_logistic`: multinomial logistic regression on the raw pixels (scikit-learn,
  L-BFGS, light L2 with ``C = 1``, fixed: a baseline tuned on nothing cannot be favoured);
- :func:`random_frozen`: the chapter's own network, freshly initialised (seeded) and frozen,
  with the same logistic regression trained on its penultimate features (standardised): what
  the architecture gives before any training of its features;
- :func:`prototype_accuracy`: each test image gets the class of the nearest class mean of the
  labelled pixels (Euclidean), no training at all.

Each returns test accuracy as a fraction; :func:`measure` runs all three and returns % by name.
NumPy's and scikit-learn's BLAS threads are held to torch's thread count (``XFER_THREADS``): on a
shared 2-core machine their default pools oversubscribe it and a fit takes ten times longer.
Chapter 2 uses them on its new-digit and permuted-label tasks and on its NumPy experiment
(inputs are then seed 004's 10 synthetic features, and the random network is the NumPy one);
chapter 3 at every label count, rotation and seed of its experiments.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xferutils.core.config import ParameterError, check_float, check_int


def _threads():
    """BLAS threads limited to torch's thread count for the duration of a baseline."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=torch.get_num_threads())

C = 1.0  # inverse L2 strength of the logistic regressions (scikit-learn's default)
NAMES = {"pixels": "logistic regression on pixels", "random": "random frozen network + linear head",
         "prototypes": "nearest class prototype (pixels)"}
SHORT = {"pixels": "pixels", "random": "randomnet", "prototypes": "prototypes"}  # claim-id slugs


def _arrays(data: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as float64 / int64 NumPy arrays from a ``Split``, an ``(x, y)`` pair of tensors or arrays."""
    if hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise ParameterError(f"{name} must be a Split or an (x, y) pair, got {type(data).__name__}")
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)
    y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    x, y = x.reshape(len(x), -1).astype(np.float64), y.astype(np.int64)
    if len(x) != len(y) or len(y) == 0:
        raise ParameterError(f"{name} needs as many labels as images and at least one image "
                             f"(got {len(x)} images, {len(y)} labels)")
    return x, y


def _classes(y: np.ndarray, name: str = "train") -> np.ndarray:
    classes = np.unique(y)
    if len(classes) < 2:
        raise ParameterError(f"{name} has {len(classes)} class; a classifier needs at least 2")
    return classes


def logistic_accuracy(train: Any, test: Any, *, c: float = C, seed: int = 0, standardize: bool = False,
                      max_iter: int = 1000) -> float:
    """Multinomial logistic regression (L-BFGS, L2 with inverse strength ``c``) fitted on
    ``train``; its accuracy on ``test``. ``standardize`` scales each input to zero mean and
    unit variance on the training images first (for features of arbitrary scale)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    check_float("c", c, 1e-8)
    check_int("seed", seed, 0)
    check_int("max_iter", max_iter, 1)
    (xtr, ytr), (xte, yte) = _arrays(train, "train"), _arrays(test, "test")
    _classes(ytr)
    if xtr.shape[1] != xte.shape[1]:
        raise ParameterError(f"test has {xte.shape[1]} inputs per image, train {xtr.shape[1]}")
    if standardize:
        mu, sd = xtr.mean(0), xtr.std(0)
        sd[sd == 0] = 1.0
        xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    clf = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(), _threads():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, ytr)
    return float((clf.predict(xte) == yte).mean())


def pixel_logistic(train: Any, test: Any, *, c: float = C, seed: int = 0) -> float:
    """Logistic regression on the raw pixels (values in [0, 1], not rescaled): test accuracy."""
    return logistic_accuracy(train, test, c=c, seed=seed)


def _embedder(net: Any) -> Callable[[Any], Any]:
    if hasattr(net, "embed"):
        return net.embed
    if hasattr(net, "features") and callable(net.features):
        return net.features
    if hasattr(net, "forward") and hasattr(net, "params"):  # xferutils.core.numpynet.NumpyNet
        return lambda x: net.forward(x)[1][-1]
    raise ParameterError(f"make_net must build a network with embed, features or NumPy forward; got "
                         f"{type(net).__name__}")


def random_frozen(make_net: Callable[[], Any], train: Any, test: Any, *, seed: int = 0,
                  c: float = C) -> float:
    """The network ``make_net()`` builds, initialised under ``seed`` and never trained, as a
    frozen feature extractor; a logistic regression on its standardised penultimate features.

    ``make_net`` takes no argument (torch networks: seeded by ``torch.manual_seed``) or one
    NumPy ``Generator`` (``xferutils.core.numpynet.NumpyNet``: seeded by ``default_rng(seed)``).
    """
    check_int("seed", seed, 0)
    if not callable(make_net):
        raise ParameterError(f"make_net must be a function that builds a network, got {make_net!r}")
    (xtr, ytr), (xte, yte) = _arrays(train, "train"), _arrays(test, "test")
    try:
        import inspect
        takes_rng = len(inspect.signature(make_net).parameters) >= 1
    except (TypeError, ValueError):
        takes_rng = False
    if takes_rng:
        net = make_net(np.random.default_rng(seed))
        embed = _embedder(net)
        with _threads():
            ftr, fte = embed(xtr), embed(xte)
    else:
        torch.manual_seed(seed)
        net = make_net()
        embed = _embedder(net)
        dtype = next(net.parameters()).dtype if hasattr(net, "parameters") else torch.float32
        with torch.no_grad():
            ftr = embed(torch.as_tensor(xtr, dtype=dtype)).numpy()
            fte = embed(torch.as_tensor(xte, dtype=dtype)).numpy()
    return logistic_accuracy((ftr, ytr), (fte, yte), c=c, seed=seed, standardize=True)


def prototype_accuracy(train: Any, test: Any) -> float:
    """Each test image takes the class of the nearest class mean of ``train`` (Euclidean)."""
    (xtr, ytr), (xte, yte) = _arrays(train, "train"), _arrays(test, "test")
    classes = _classes(ytr)
    protos = np.stack([xtr[ytr == k].mean(0) for k in classes])
    with _threads():
        d = (xte ** 2).sum(1)[:, None] - 2 * xte @ protos.T + (protos ** 2).sum(1)[None, :]
    return float((classes[d.argmin(1)] == yte).mean())


def measure(train: Any, test: Any, make_net: Callable[..., Any], seed: int = 0) -> dict[str, float]:
    """All three baselines on one seed's labelled images: test accuracy in %, by :data:`NAMES` key."""
    return {"pixels": 100 * pixel_logistic(train, test, seed=seed),
            "random": 100 * random_frozen(make_net, train, test, seed=seed),
            "prototypes": 100 * prototype_accuracy(train, test)}


def rows(setting: str, values: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Entries of a results file's ``baselines`` list: ``{name, setting, measured}`` (per-seed %),
    one per baseline of ``values`` (keys of :data:`NAMES`), for the strategies' ``setting``
    (e.g. "new digits, 100 labels")."""
    return [{"name": NAMES[k], "setting": setting, "measured": [float(x) for x in v]}
            for k, v in values.items()]


__all__ = ["C", "NAMES", "SHORT", "logistic_accuracy", "pixel_logistic", "random_frozen",
           "prototype_accuracy", "measure", "rows"]
