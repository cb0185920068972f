"""Tests of xferutils.chapters.what_works.freezing (chapter 5): copying, growing and freezing layers; figures."""
import matplotlib.pyplot as plt
import pytest
import torch

from xferutils.chapters.what_works import freezing as layers

from xferutils.core import models
from xferutils.core.config import ParameterError
from xferutils.core.data import Split


def _nets():
    torch.manual_seed(0)
    src = models.MLP([784, 16, 12, 8], 5)
    torch.manual_seed(1)
    dst = models.MLP([784, 16, 12, 8], 5)
    return src, dst


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_copy_layers_copies_exactly_the_first_n(n):
    src, dst = _nets()
    before = [(l.weight.clone(), l.bias.clone()) for l in models.linear_layers(dst)]
    layers.copy_layers(src, dst, n, freeze=True)
    for i, (a, b, (w0, b0)) in enumerate(zip(models.linear_layers(src), models.linear_layers(dst), before)):
        if i < n:
            assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
            assert not b.weight.requires_grad
        else:
            assert torch.equal(b.weight, w0) and torch.equal(b.bias, b0)
            assert b.weight.requires_grad


def test_copy_layers_refuses_bad_n_and_shapes():
    src, dst = _nets()
    with pytest.raises(ParameterError, match="n=5"):
        layers.copy_layers(src, dst, 5)
    with pytest.raises(ParameterError, match="shapes differ"):
        layers.copy_layers(src, models.MLP([784, 20, 12, 8], 5), 1)


def test_grow_head_keeps_old_outputs():
    src, _ = _nets()
    x = torch.rand(7, 784)
    grown = layers.grow_head(src, 2, seed=3)
    with torch.no_grad():
        assert torch.equal(grown(x)[:, :5], src(x))
        assert grown(x).shape == (7, 7)
    assert all(p.requires_grad for p in grown.parameters())


@pytest.mark.parametrize("k", [0, 1, 3])
def test_train_top_unfreezes_head_and_k_below(k):
    src, _ = _nets()
    layers.train_top(src, k)
    flags = [l.weight.requires_grad for l in models.linear_layers(src)]
    assert flags == [False] * (3 - k) + [True] * (k + 1)
    with pytest.raises(ParameterError, match="k=4"):
        layers.train_top(src, 4)


def test_balanced_rows_balance_the_new_digit():
    own = Split(torch.rand(6, 784), torch.tensor([0, 1, 2, 0, 1, 2]))
    extra = Split(torch.rand(1, 784), torch.tensor([3]))
    rows = layers.balanced_rows(own, extra, [0, 1, 2, 3], per_class=2)
    assert torch.bincount(rows.y).tolist() == [2, 2, 2, 2]
    assert torch.equal(rows.x[-1], extra.x[0])
    with pytest.raises(ParameterError, match="extra is empty"):
        layers.balanced_rows(own, Split(torch.rand(0, 784), torch.tensor([], dtype=torch.long)), [0, 1, 2, 3], 2)


def test_transfer_nets_copy_per_seed_and_freeze():
    src = [models.MLP([784, 8, 8], 3) for _ in range(2)]
    nets = layers.transfer_nets(lambda: models.MLP([784, 8, 8], 3), src, [1, 2], [0, 1], fine_tune=False)
    assert len(nets) == 4
    assert torch.equal(nets[1].features[0].weight, src[1].features[0].weight)  # n=1, seed 1
    assert not nets[3].features[2].weight.requires_grad and nets[3].head.weight.requires_grad


def test_figures():
    p = layers.Partial([0, 1], {0: [0.1, 0.2], 1: [0.5, 0.6]}, {0: [0.99, 0.98], 1: [0.9, 0.95]},
                       [0.99, 0.99], {0: [3, 4], 1: [5, 6]}, 1.0)
    assert p.forgetting(1) == pytest.approx([0.09, 0.04])
    fig = layers.partial_figure(p)
    assert fig.axes[0].get_xlabel().startswith("retention")
    plt.close(fig)
    t = layers.Transferability([1, 2], {v: {1: [0.9, 0.91], 2: [0.8, 0.82]} for v in layers.VARIANTS},
                               [0.9, 0.92], [0.95, 0.96])
    fig = layers.yosinski_figure(t)
    assert len(fig.axes[0].get_legend().get_texts()) == 5
    plt.close(fig)


def test_chapter_scale_refuses_bad_knobs():
    assert layers.chapter_scale("smoke", seed0=0, n_seeds=0, omit=3, n_way=5, n_partial=5)["ns"]
    with pytest.raises(ParameterError, match="omit=10"):
        layers.chapter_scale("book", seed0=0, n_seeds=0, omit=10, n_way=5, n_partial=5)
    with pytest.raises(ParameterError, match="n_partial=100000"):
        layers.chapter_scale("book", seed0=0, n_seeds=0, omit=3, n_way=5, n_partial=100000)
    with pytest.raises(ParameterError, match="preset"):
        layers.chapter_scale("huge", seed0=0, n_seeds=0, omit=3, n_way=5, n_partial=5)


def _digits(ds, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(ds).repeat_interleave(n)
    return Split(torch.rand(len(y), 784, generator=g), y)


def test_partial_unfreeze_and_yosinski_run_end_to_end():
    fit = layers.Fit(max_epochs=2, patience=1, batch_size=16)
    own, val, test = _digits([0, 1, 2], 8), _digits([0, 1, 2, 3], 4, 1), _digits([0, 1, 2, 3], 4, 2)
    nets = [models.MLP([784, 8, 8], 3) for _ in range(2)]
    extras = [_digits([3], 2, s) for s in range(2)]
    p = layers.partial_unfreeze(nets, own, extras, val, test, [0, 1, 2], 3, [0, 1], fit=fit)
    assert p.ks == [0, 1, 2] and all(len(p.transfer[k]) == 2 for k in p.ks)
    t = layers.yosinski(lambda: models.MLP([784, 8, 8], 2), (_digits([0, 1], 8), _digits([0, 1], 4, 1)),
                        (_digits([0, 1], 8, 3), _digits([0, 1], 4, 4)), _digits([0, 1], 4, 5), [0, 1], fit)
    assert t.ns == [1, 2] and set(t.acc) == set(layers.VARIANTS)
    assert all(len(t.acc[v][n]) == 2 for v in layers.VARIANTS for n in t.ns)


def test_fit_batch_gives_every_epoch_enough_steps():
    fit = layers.Fit(batch_size=128, min_steps=8)
    assert fit.batch(10_000) == 128  # large sets keep the batch size
    assert fit.batch(180) == 22  # 180 rows: 8 steps an epoch, not 2
    assert fit.batch(50) == 16  # never below 16
    with pytest.raises(TypeError):
        fit.batch()  # the number of rows is required


def _blobs(n_per: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(3, 784, generator=torch.Generator().manual_seed(99))  # shared by all splits
    x = torch.cat([c + 0.6 * torch.randn(n_per, 784, generator=g) for c in centres]).clamp(0, 1)
    return Split(x, torch.arange(3).repeat_interleave(n_per))


def test_deep_donor_on_few_images_leaves_its_plateau():
    # chapter 5's donor (8 layers, 180 images): with 2 steps an epoch, patience 3 stopped it at chance
    train, val = _blobs(60, 0), _blobs(20, 1)
    reps = layers.train_classifier(models.deep_nn, train, val, [0, 1, 2], [0, 1], layers.Fit(max_epochs=40))
    assert min(reps.evaluate(val)) > 0.8
    assert min(h.best_epoch for h in reps.history) > 1


def test_bridging_settings_are_chapter_4s_with_validation_stopping():
    from xferutils.core import sharing
    s = layers.bridging_settings("book", 1000)
    assert s.n_bridge == 1000  # not capped at chapter 4's pool: chapter 5 has its own
    assert (s.epochs, s.patience) == (sharing.preset_settings("book").epochs,
                                      sharing.preset_settings("book").patience)
    with pytest.raises(ParameterError, match="n_bridge"):
        layers.bridging_settings("book", 0)


def test_halves_net_first_layer_is_not_its_bottleneck():
    net = layers.halves_net(5)
    widths = [m.out_features for m in layers.linear_layers(net)][:-1]
    assert widths == list(layers.HALVES_WIDTHS[1:])
    assert widths[0] == max(widths) and widths[0] > min(widths)
