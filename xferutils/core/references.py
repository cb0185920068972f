"""Reference networks that more than one chapter starts from, trained once through the store.

- :func:`dense_mnist`: document 002's dense network on all of MNIST's training images but the
  validation split (chapter 1 measures it; chapter 6 starts its traversal from it).

A chapter that needs another chapter's network calls the same function with the same recipe,
so both read the same stored weights (:mod:`xferutils.core.store`) instead of training a smaller copy.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from xferutils.core.config import check_float, check_int
from xferutils.core.data import Split
from xferutils.core.ensemble import Replicas, fit_replicas, replicate
from xferutils.core.models import dense_net
from xferutils.core.store import trained


@dataclass(frozen=True)
class DenseRecipe:
    """Chapter 1's recipe: Adam at ``lr``, ``epochs`` at most, early stopping with ``patience``
    on the validation split; ``data_seed`` drew the split and ``n_train`` is its training size."""

    epochs: int = 5
    lr: float = 2e-3
    batch_size: int = 256
    patience: int = 2
    amp: bool = False
    data_seed: int = 0
    n_train: int = 55000
    n_val: int = 5000

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1, 1000)
        check_float("lr", self.lr, 1e-6, 1.0)
        check_int("batch_size", self.batch_size, 1, 60000)
        check_int("patience", self.patience, 1, 1000)


def dense_mnist(train: Split, val: Split, seeds: Sequence[int], recipe: DenseRecipe) -> Replicas:
    """Document 002's dense network, one per seed, trained with ``recipe`` on ``train`` and
    stopped on ``val`` (chapters 1 and 6); read from the store when it was trained before."""
    check_int("len(train)", len(train), recipe.n_train, recipe.n_train)
    check_int("len(val)", len(val), recipe.n_val, recipe.n_val)
    config = {**asdict(recipe), "device": train.x.device.type}

    def fit(missing: list[int]) -> Replicas:
        return fit_replicas(replicate(dense_net, missing), train, missing, epochs=recipe.epochs,
                            lr=recipe.lr, batch_size=recipe.batch_size, val=val,
                            patience=recipe.patience, amp=recipe.amp)

    return trained("dense-mnist", config, seeds, dense_net, fit, device=train.x.device)
