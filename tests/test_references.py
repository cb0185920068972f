"""Shared reference networks: one recipe, trained once, read back by the next chapter."""
import pytest
import torch

import xferutils as xu
from xferutils.core.config import ParameterError
from xferutils.core.references import DenseRecipe, dense_mnist


@pytest.fixture
def splits(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv(xu.store.STORE_ENV, str(tmp_path / "store"))
    return xu.data.sample(mnist.train, 512, seed=0), xu.data.sample(mnist.test, 256, seed=0)


def test_the_second_chapter_reads_the_first_chapters_networks(splits):
    train, val = splits
    recipe = DenseRecipe(epochs=2, patience=1, n_train=len(train), n_val=len(val))
    first = dense_mnist(train, val, [0, 1], recipe)
    again = dense_mnist(train, val, [0, 1], recipe)
    for name, t in first.params.items():
        assert torch.equal(again.params[name], t), name
    assert again.history[0].seconds == first.history[0].seconds > 0  # the training call's time, kept
    assert [h.best_epoch for h in again.history] == [h.best_epoch for h in first.history]
    other = dense_mnist(train, val, [0], DenseRecipe(epochs=1, patience=1, n_train=len(train), n_val=len(val)))
    assert not torch.equal(other.params["head.weight"][0], first.params["head.weight"][0])


def test_a_recipe_that_does_not_describe_the_data_is_refused(splits):
    train, val = splits
    with pytest.raises(ParameterError, match="len\\(train\\)"):
        dense_mnist(train, val, [0], DenseRecipe(n_train=55000, n_val=len(val)))
    with pytest.raises(ParameterError, match="epochs"):
        DenseRecipe(epochs=0)
    with pytest.raises(ParameterError, match="lr"):
        DenseRecipe(lr=5.0)
