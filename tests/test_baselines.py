"""Tests of xferutils.core.baselines: the pixel, random-network and prototype baselines (chapters 2, 3)."""
import numpy as np
import pytest
import torch

import xferutils as xu
from xferutils.core import baselines as bl
from xferutils.core.config import ParameterError


def blobs(n: int, seed: int, sep: float = 3.0, dim: int = 784, k: int = 3):
    """k classes, each brighter by ``sep`` × 0.2 on its own block of 100 pixels (linearly separable)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = torch.rand(n, dim, generator=gen) * 0.2
    for c in range(k):
        x[y == c, 100 * c:100 * (c + 1)] += sep * 0.2
    return xu.data.Split(x, y)


@pytest.fixture(scope="module")
def easy():
    return blobs(60, 0), blobs(300, 1)


def net():
    return xu.models.MLP([784, 32, 16], 3)


def test_each_baseline_learns_a_separable_task(easy):
    train, test = easy
    assert bl.pixel_logistic(train, test) > 0.95
    assert bl.prototype_accuracy(train, test) > 0.95
    assert bl.random_frozen(net, train, test, seed=0) > 0.6  # chance is 1/3


def test_random_labels_give_chance(easy):
    train, test = easy
    gen = torch.Generator().manual_seed(3)
    shuffled = xu.data.Split(train.x, train.y[torch.randperm(len(train.y), generator=gen)])
    for acc in (bl.pixel_logistic(shuffled, test), bl.prototype_accuracy(shuffled, test)):
        assert acc < 0.6


def test_nearest_prototype_matches_a_hand_computation():
    train = (np.array([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [6.0, 0.0]]), np.array([0, 0, 1, 1]))
    test = (np.array([[1.0, 1.0], [4.9, 0.1], [2.6, 0.0]]), np.array([0, 1, 1]))  # means (0, 1), (5, 0)
    assert bl.prototype_accuracy(train, test) == pytest.approx(1.0)
    test = (test[0], np.array([0, 1, 0]))  # (2.6, 0) is nearer to (5, 0): the third is wrong
    assert bl.prototype_accuracy(train, test) == pytest.approx(2 / 3)


def test_seeded_and_the_random_network_depends_on_its_seed(easy):
    train, test = easy
    assert bl.random_frozen(net, train, test, seed=4) == bl.random_frozen(net, train, test, seed=4)
    accs = {bl.random_frozen(net, train, test, seed=s) for s in range(4)}
    assert len(accs) > 1  # a different initialisation gives different features


def test_random_network_is_never_trained(easy):
    train, test = easy
    torch.manual_seed(7)
    before = {k: v.clone() for k, v in net().state_dict().items()}
    built = []

    def make():
        m = net()
        built.append(m)
        return m
    bl.random_frozen(make, train, test, seed=7)
    after = built[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # seeded like torch.manual_seed(7)


def test_numpy_network(easy):
    train, test = easy
    make = lambda rng: xu.numpynet.NumpyNet([784, 32, 16, 3], rng)  # noqa: E731
    a = bl.random_frozen(make, train, test, seed=1)
    assert a == bl.random_frozen(make, train, test, seed=1) and a > 0.6


def test_light_l2_is_weaker_than_a_strong_one():
    train, test = blobs(90, 2), blobs(300, 3)
    keep = (train.y == 0) | (torch.arange(90) < 15)  # class 0 is the majority of the labels
    train = xu.data.Split(train.x[keep], train.y[keep])
    # a huge penalty leaves the (unpenalised) intercept: the majority class for every image
    assert bl.logistic_accuracy(train, test, c=1e-8) == pytest.approx(1 / 3, abs=0.01)
    assert bl.logistic_accuracy(train, test, c=bl.C) > 0.95


def test_measure_in_percent(easy):
    out = bl.measure(*easy, net, seed=0)
    assert set(out) == set(bl.NAMES) and all(0 <= v <= 100 for v in out.values())
    assert out["pixels"] == pytest.approx(100 * bl.pixel_logistic(*easy))
    rows = bl.rows("new digits, 60 labels", {k: [v] for k, v in out.items()})
    assert [r["name"] for r in rows] == list(bl.NAMES.values())
    assert rows[0]["setting"] == "new digits, 60 labels" and rows[0]["measured"] == [out["pixels"]]


def test_bad_input_names_the_parameter(easy):
    train, test = easy
    with pytest.raises(ParameterError, match="train"):
        bl.pixel_logistic(xu.data.Split(train.x, train.y * 0), test)  # one class
    with pytest.raises(ParameterError, match="test"):
        bl.pixel_logistic(train, (test.x[:, :10], test.y))
    with pytest.raises(ParameterError, match="c="):
        bl.logistic_accuracy(train, test, c=0.0)
    with pytest.raises(ParameterError, match="train"):
        bl.prototype_accuracy("images", test)
    with pytest.raises(ParameterError, match="make_net"):
        bl.random_frozen(3, train, test)


def test_blas_threads_follow_torch(monkeypatch):
    """A fit never runs more BLAS threads than torch may use (oversubscription on shared CPUs)."""
    from threadpoolctl import threadpool_info

    seen = []
    real = bl._threads

    def spy():
        ctx = real()
        seen.append(max(i["num_threads"] for i in threadpool_info()))
        return ctx
    monkeypatch.setattr(bl, "_threads", spy)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bl.pixel_logistic(blobs(30, 0), blobs(30, 1))
    finally:
        torch.set_num_threads(old)
    assert seen == [1]
