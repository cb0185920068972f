"""The model store: trained once, read back identical, only missing seeds trained."""
import pytest
import torch

from xferutils.core import store
from xferutils.core.config import ParameterError
from xferutils.core.data import Split
from xferutils.core.ensemble import fit_replicas, replicate
from xferutils.core.models import MLP


def make() -> MLP:
    return MLP([6, 5], 3)


@pytest.fixture
def data() -> Split:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    return Split(x, (x[:, 0] > 0).long() + (x[:, 1] > 1).long())


@pytest.fixture(autouse=True)
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(store.STORE_ENV, str(tmp_path / "store"))
    return tmp_path / "store"


def counting_trainer(data: Split, calls: list):
    def train(seeds):
        calls.append(list(seeds))
        return fit_replicas(replicate(make, seeds), data, seeds, epochs=2, batch_size=16)
    return train


def test_trains_missing_seeds_only_and_reads_back_the_same_weights(data):
    calls: list = []
    first = store.trained("tiny", {"epochs": 2}, [0, 1], make, counting_trainer(data, calls))
    again = store.trained("tiny", {"epochs": 2}, [0, 1, 2], make, counting_trainer(data, calls))
    assert calls == [[0, 1], [2]]
    assert again.seeds == [0, 1, 2]
    for name, t in first.params.items():
        assert torch.equal(again.params[name][:2], t)
    assert again.history[1].loss == first.history[1].loss
    assert again.evaluate(data)[:2] == first.evaluate(data)


def test_another_configuration_is_another_key(data):
    calls: list = []
    store.trained("tiny", {"epochs": 2}, [0], make, counting_trainer(data, calls))
    store.trained("tiny", {"epochs": 3}, [0], make, counting_trainer(data, calls))
    assert calls == [[0], [0]]
    assert store.key("tiny", {"epochs": 2}) != store.key("tiny", {"epochs": 3})
    assert store.key("tiny", {"a": 1, "b": 2}) == store.key("tiny", {"b": 2, "a": 1})


def test_off_trains_every_time(data, monkeypatch, folder):
    monkeypatch.setenv(store.STORE_ENV, "off")
    calls: list = []
    for _ in range(2):
        store.trained("tiny", {}, [0], make, counting_trainer(data, calls))
    assert calls == [[0], [0]]
    assert not folder.exists()


def test_bad_name_and_wrong_seeds_are_refused(data):
    with pytest.raises(ParameterError, match="name"):
        store.key("../up", {})
    wrong = lambda seeds: fit_replicas(replicate(make, [9]), data, [9], epochs=1)  # noqa: E731
    with pytest.raises(ParameterError, match="asked for"):
        store.trained("tiny", {}, [0], make, wrong)


def test_store_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XFER_STORE", "off")
    assert store.store_dir() is None
    monkeypatch.setenv("XFER_STORE", str(tmp_path / "nets"))
    assert store.store_dir() == tmp_path / "nets"
    monkeypatch.delenv("XFER_STORE")
    monkeypatch.setenv("XFER_RESULTS_DIR", str(tmp_path / "res"))
    assert store.store_dir() == tmp_path / "res" / "store"
