"""Tests of xferutils.core.numpynet (chapters 2 and 7): document 004's network, its hand-written
backprop and its trainer."""
import numpy as np
import pytest
import torch

from xferutils.core import numpynet as npn
from xferutils.core.config import ParameterError


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


def test_blobs_noise_free_points_sit_on_the_centres():
    centers = np.arange(6.0).reshape(3, 2)
    x, y = npn.blobs(centers, 9, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(x, centers[y])


def test_train_early_stopping_keeps_the_best_validation_epoch():
    net, x, y = net_and_batch(n=60, seed=3)
    xv, yv = x[:20], (y[:20] + 1) % 3  # labels the network cannot learn: validation loss rises
    hist = npn.train(net, x, y, epochs=200, lr=0.5, batch_size=10, rng=np.random.default_rng(0),
                     val=(xv, yv), patience=5, test=(x, y))
    assert len(hist.loss) < 200  # stopped early
    assert len(hist.loss) - hist.best_epoch == 5
    assert hist.best_epoch == int(np.argmin(hist.val_loss)) + 1
    assert net.loss(xv, yv) == pytest.approx(hist.val_loss[hist.best_epoch - 1])  # best weights restored
    assert hist.final_test == hist.test_acc[hist.best_epoch - 1]


def test_train_without_patience_runs_every_epoch_and_patience_needs_val():
    net, x, y = net_and_batch(n=30)
    hist = npn.train(net, x, y, epochs=7, lr=0.1, batch_size=10, rng=np.random.default_rng(0))
    assert len(hist.loss) == 7 and hist.best_epoch == 7
    with pytest.raises(ParameterError, match="patience"):
        npn.train(net, x, y, epochs=3, lr=0.1, batch_size=10, rng=np.random.default_rng(0), patience=2)


def test_numpynet_rejects_too_few_dims():
    with pytest.raises(ParameterError, match="dims"):
        npn.NumpyNet([5], np.random.default_rng(0))
