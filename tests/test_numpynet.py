"""Tests of xferutils.numpynet (chapter 2): hand-written backprop, seed 004's data and experiment."""
import numpy as np
import pytest
import torch

from xferutils import numpynet as npn
from xferutils.config import ParameterError


def net_and_batch(dims=(6, 8, 5, 3), n=12, seed=0):
    rng = np.random.default_rng(seed)
    net = npn.NumpyNet(list(dims), rng)
    for k in net.params:  # non-zero biases so that every parameter's gradient is exercised
        if k.startswith("b"):
            net.params[k] = rng.standard_normal(net.params[k].shape) * 0.1
    return net, rng.standard_normal((n, dims[0])), rng.integers(0, dims[-1], n)


@pytest.mark.parametrize("dims", [(6, 3), (6, 8, 3), (6, 8, 5, 3), (10, 32, 16, 5)])
@pytest.mark.parametrize("reg", [0.0, 1e-2])
def test_backprop_agrees_with_finite_differences(dims, reg):
    net, x, y = net_and_batch(dims)
    assert npn.gradient_check(net, x, y, reg=reg) < 1e-5


def test_gradient_check_catches_a_wrong_gradient(monkeypatch):
    net, x, y = net_and_batch()
    real = npn.NumpyNet.loss_and_gradients

    def broken(self, x, y, reg=0.0):
        loss, g = real(self, x, y, reg)
        g["W0"] = g["W0"] * 1.01
        return loss, g

    monkeypatch.setattr(npn.NumpyNet, "loss_and_gradients", broken)
    assert npn.gradient_check(net, x, y) > 1e-3


def test_backprop_agrees_with_torch_autograd():
    net, x, y = net_and_batch()
    reg = 0.01
    loss, grads = net.loss_and_gradients(x, y, reg)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in net.params.items()}
    h = torch.tensor(x)
    for i in range(net.n_layers - 1):
        h = torch.relu(h @ tp[f"W{i}"] + tp[f"b{i}"])
    last = net.n_layers - 1
    logits = h @ tp[f"W{last}"] + tp[f"b{last}"]
    tl = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    tl = tl + 0.5 * reg * sum((w ** 2).sum() for k, w in tp.items() if k[0] == "W")
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-6)
    for k in net.params:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-6, atol=1e-10)


def test_softmax_is_stable_and_normalised():
    p = npn.softmax(np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]]))
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(1), 1.0)
    assert p[0, 0] == pytest.approx(0.5)


def test_train_lowers_the_loss_and_zero_multiplier_freezes():
    net, x, y = net_and_batch(n=60)
    frozen = {"W0": 0.0, "b0": 0.0}
    before = {k: v.copy() for k, v in net.params.items()}
    hist = npn.train(net, x, y, epochs=30, lr=0.1, batch_size=10, rng=np.random.default_rng(1),
                     lr_mult=frozen, test=(x, y))
    assert hist.loss[-1] < hist.loss[0]
    assert len(hist.train_acc) == len(hist.test_acc) == 30 and hist.train_acc == hist.test_acc
    np.testing.assert_array_equal(net.params["W0"], before["W0"])
    assert not np.array_equal(net.params["W1"], before["W1"])


def test_copy_is_independent():
    net, _, _ = net_and_batch()
    c = net.copy()
    c.params["W0"] += 1.0
    assert not np.array_equal(c.params["W0"], net.params["W0"])


def test_epochs_to_fraction():
    assert npn.epochs_to_fraction([0.1, 0.5, 0.9, 1.0]) == 3
    assert npn.epochs_to_fraction([0.2, 0.2, 0.2]) == 1  # a flat curve "converges" at once
    assert npn.epochs_to_fraction([0.1, 0.6, 1.0], fraction=0.5) == 2


def test_make_transfer_data_protocols():
    a = npn.make_transfer_data(3, "seed004")
    b = npn.make_transfer_data(3, "shifted")
    assert a.source[0].shape == (1000, 10) and a.target[0].shape == (100, 10)
    assert a.target_test[0].shape == (1000, 10) and a.target_pool[0].shape == (1000, 10)
    assert not np.allclose(a.source_centers, a.target_centers)
    np.testing.assert_array_equal(b.source_centers, b.target_centers)
    again = npn.make_transfer_data(3, "shifted")
    np.testing.assert_array_equal(again.target[0], b.target[0])
    # every class appears equally often
    assert np.bincount(a.target[1]).tolist() == [20] * 5
    with pytest.raises(ParameterError, match="protocol"):
        npn.make_transfer_data(0, "fresh")


def test_blobs_noise_free_points_sit_on_the_centres():
    centers = np.arange(6.0).reshape(3, 2)
    x, y = npn.blobs(centers, 9, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(x, centers[y])


def test_compare_strategies_source_model_transfers_only_under_the_shifted_protocol():
    out = {p: npn.compare_strategies(npn.make_transfer_data(0, p), 0, epochs=10, pretrain_epochs=30)
           for p in npn.PROTOCOLS}
    assert set(out["shifted"]["histories"]) == set(npn.STRATEGIES)
    assert out["shifted"]["source_as_is"][1] > 0.9  # same centres: the source model works as is
    assert out["seed004"]["source_as_is"][1] < 0.6  # fresh centres: about chance (0.2)
    assert len(out["shifted"]["histories"]["From scratch"].test_acc) == 10
    assert 0.0 <= out["seed004"]["oracle"] <= 1.0


def test_summarise_and_verdicts():
    runs = {"s": [npn.compare_strategies(npn.make_transfer_data(s, "shifted", noise=2.0), s, epochs=5,
                                         pretrain_epochs=10) for s in (0, 1, 2)]}
    summ = npn.summarise(runs)["s"]
    assert summ["From scratch"]["test"].n == 3 and len(summ["From scratch"]["values"]["train"]) == 3
    rows = npn.verdicts(summ)
    assert len(rows) == 6 and all(len(r) == 3 for r in rows)
    assert all(v in ("supported", "contradicted") or v.startswith("not shown") for _, _, v in rows)


@pytest.mark.parametrize("mean,ci,higher,expected", [
    (0.1, 0.05, True, "supported"), (-0.1, 0.05, True, "contradicted"), (0.01, 0.05, True, "not shown"),
    (-3.0, 1.0, False, "supported"), (3.0, 1.0, False, "contradicted"), (0.1, float("nan"), True, "not testable")])
def test_verdict_logic(mean, ci, higher, expected):
    assert npn._verdict(mean, ci, higher).startswith(expected)


def test_numpynet_rejects_too_few_dims():
    with pytest.raises(ParameterError, match="dims"):
        npn.NumpyNet([5], np.random.default_rng(0))


def test_four_panel_draws_one_row_per_setting():
    import matplotlib

    matplotlib.use("Agg")
    runs = [npn.compare_strategies(npn.make_transfer_data(s, "shifted"), s, epochs=3, pretrain_epochs=3) for s in (0, 1)]
    fig = npn.four_panel({"a": runs, "b": runs})
    assert len(fig.axes) == 8
    assert fig.axes[0].get_title().startswith("a:") and fig.axes[4].get_title().startswith("b:")
    assert len(fig.axes[1].get_lines()) == 2 * len(npn.STRATEGIES)  # held-out and train curves
