"""Tests of xferutils.chapters.what_works.fewshot (chapter 5): prototypes, tasks, episodic training, fine-tuned heads."""
import math

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from xferutils.chapters.what_works import fewshot
from xferutils.core import models as xu_models
from xferutils.core.config import ParameterError
from xferutils.core.data import Split
from xferutils.chapters.what_works.freezing import Fit


def toy(n_per_class=20, n_classes=4, d=6, spread=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 5 * torch.randn(n_classes, d, generator=g)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    return centres[y] + spread * torch.randn(len(y), d, generator=g), y


def test_prototype_classifier_on_separable_data():
    x, y = toy()
    support = torch.stack([x[y == c][:3] for c in range(4)])  # (N, k, d)
    query = torch.cat([x[y == c][3:] for c in range(4)])
    labels = torch.arange(4).repeat_interleave(17)
    assert torch.equal(fewshot.classify(support, query), labels)


def test_prototype_logits_are_negative_squared_distances():
    q, p = torch.randn(5, 3), torch.randn(4, 3)
    assert torch.allclose(fewshot.prototype_logits(q, p), -torch.cdist(q, p) ** 2, atol=1e-5)


def test_sample_tasks_shapes_and_disjointness():
    y = torch.arange(10).repeat_interleave(30)
    t = fewshot.sample_tasks(y, [5, 6, 7, 8, 9], n_way=3, k_shot=2, n_query=4, n_tasks=7, seed=1)
    assert t.support.shape == (7, 3, 2) and t.query.shape == (7, 3, 4) and t.classes.shape == (7, 3)
    for i in range(7):
        both = torch.cat([t.support[i].flatten(), t.query[i].flatten()])
        assert len(set(both.tolist())) == len(both)
        assert torch.equal(y[t.support[i]], t.classes[i][:, None].expand(3, 2))
        assert set(t.classes[i].tolist()) <= {5, 6, 7, 8, 9}
    again = fewshot.sample_tasks(y, [5, 6, 7, 8, 9], 3, 2, 4, 7, seed=1)
    assert torch.equal(t.query, again.query)
    assert t.query_labels().shape == (7, 12)


def test_sample_tasks_refuses_impossible_tasks():
    y = torch.arange(3).repeat_interleave(5)
    with pytest.raises(ParameterError, match="n_way=4"):
        fewshot.sample_tasks(y, [0, 1, 2], 4, 1, 1, 1, 0)
    with pytest.raises(ParameterError, match="exceeds"):
        fewshot.sample_tasks(y, [0, 1, 2], 3, 3, 3, 1, 0)


def test_task_accuracy_and_finetuned_heads_on_separable_features():
    x, y = toy(n_per_class=30, n_classes=5)
    tasks = fewshot.sample_tasks(y, range(5), 5, 2, 5, 6, seed=0)
    assert torch.all(fewshot.task_accuracy(x, tasks) == 1.0)
    acc, curve = fewshot.finetune_heads(torch.stack([x, x]), tasks, steps=50, lr=0.1, record=True)
    assert acc.shape == (2, 6) and acc.mean() > 0.95 and len(curve) == 50


def test_labels_to_reach():
    ns = [1, 10, 100, 1000]
    assert fewshot.labels_to_reach(ns, [0.5, 0.8, 1.0, 1.0], 0.9) == pytest.approx(math.sqrt(10) * 10)
    assert fewshot.labels_to_reach(ns, [0.95, 0.96, 0.97, 0.98], 0.9) == 1
    assert fewshot.labels_to_reach(ns, [0.1, 0.2, 0.3, 0.4], 0.9) == math.inf
    with pytest.raises(ParameterError, match="increasing"):
        fewshot.labels_to_reach([10, 1], [0.1, 0.2], 0.9)


def test_protonet_learns_toy_episodes():
    x, y = toy(n_per_class=40, n_classes=5, d=10, spread=1.5)
    train = Split(x, y)
    val_tasks = fewshot.sample_tasks(y, range(5), 3, 2, 3, 10, seed=9)
    net = fewshot.train_protonet(lambda: nn.Sequential(nn.Linear(10, 8)), train, train, val_tasks, [0, 1],
                                 n_way=3, k_shot=2, n_query=3, episodes=5, fit=Fit(max_epochs=4, patience=2))
    assert net.embed(x).shape == (2, 200, 8)
    assert all(1 <= e <= 4 for e in net.best_epoch)
    assert net.accuracy(x, val_tasks).mean() > 0.6


def test_meta_learning_refuses_overlapping_digits():
    d = Split(torch.rand(4, 784), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ParameterError, match="overlap"):
        fewshot.meta_learning(nn.Identity, nn.Identity, d, d, d, [0, 1, 2], [2, 3], [0], n_way=2)


def test_curve_figure():
    fig = fewshot.curve_figure([1, 10], {"a": {1: [0.1, 0.2], 10: [0.5, 0.6]}})
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)


def test_pixel_logistic_predict_learns_separable_pixels_and_checks_shapes():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1, 2] * 20 + [7])  # one image of a new digit, as at n = 1
    x = 0.1 * torch.rand(len(y), 784, generator=g)
    for c in (0, 1, 2, 7):
        x[y == c, 50 * c:50 * c + 50] += 1.0
    test_y = torch.tensor([0, 1, 2, 7] * 5)
    test_x = 0.1 * torch.rand(len(test_y), 784, generator=g)
    for c in (0, 1, 2, 7):
        test_x[test_y == c, 50 * c:50 * c + 50] += 1.0
    pred = fewshot.pixel_logistic_predict(Split(x, y), test_x)
    assert pred.shape == test_y.shape and torch.equal(pred, test_y)  # balanced weights find the 7s too
    with pytest.raises(ParameterError, match="inputs per image"):
        fewshot.pixel_logistic_predict(Split(x, y), test_x[:, :100])


def separable_digits() -> Split:
    """400 images of ten classes, each lit on its own 70 pixels: separable from raw pixels."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 10
    x = 0.1 * torch.rand(400, 784, generator=g)
    for c in range(10):
        x[y == c, 70 * c:70 * c + 70] += 1.0
    return Split(x, y)


def test_meta_learning_reports_pixel_prototypes_on_the_same_tasks():
    data = separable_digits()
    fit = Fit(max_epochs=2, patience=1)
    m = fewshot.meta_learning(lambda: torch.nn.Sequential(torch.nn.Linear(784, 8)),
                              lambda n: xu_models.MLP([784, 8], n), data, data, data, range(5), range(5, 10),
                              [0, 1], n_way=3, ks=(1,), n_query=3, n_tasks=5, episodes=2, max_steps=3, fit=fit)
    pix = m.acc["prototypes on pixels"][1]
    assert pix.shape == (1, 5)  # no seed: one row over the same 5 test tasks
    assert float(pix.mean()) == 1.0  # separable pixels: the parameter-free baseline is perfect
    assert m.acc["protonet"][1].shape == (2, 5)
    assert "prototypes on pixels" in fewshot.meta_table(m)


def test_protonet_monitor_watches_held_out_tasks_and_the_curve_figure():
    data = separable_digits()
    fit = Fit(max_epochs=3, patience=3)
    m = fewshot.meta_learning(lambda: torch.nn.Sequential(torch.nn.Linear(784, 8)),
                              lambda n: xu_models.MLP([784, 8], n), data, data, data, range(5), range(5, 10),
                              [0, 1], n_way=3, ks=(1,), n_query=3, n_tasks=5, episodes=2, max_steps=3, fit=fit,
                              held_out_val=data)
    held = m.curve["held_out"]
    assert len(held) == len(m.curve["val"]) + 1 and all(len(e) == 2 for e in held)  # epoch 0 included
    assert m.curve["pixels"] == 1.0
    fig = fewshot.meta_curve_figure(m)
    assert len(fig.axes[0].lines) >= 3
    plt.close(fig)
    m.curve = {}
    with pytest.raises(ParameterError, match="curve"):
        fewshot.meta_curve_figure(m)


def test_protonet_replicas_train_as_if_alone():
    """Through fit_replicas's episode sampler each replica draws its own tasks and stops on its
    own: seed 1 trained beside seed 0 equals seed 1 trained alone."""
    x, y = toy(n_per_class=40, n_classes=5, d=10, spread=1.5)
    train = Split(x, y)
    val_tasks = fewshot.sample_tasks(y, range(5), 3, 2, 3, 10, seed=9)
    kw = dict(n_way=3, k_shot=2, n_query=3, episodes=3, fit=Fit(max_epochs=5, patience=1))
    make = lambda: nn.Sequential(nn.Linear(10, 8))  # noqa: E731
    both = fewshot.train_protonet(make, train, train, val_tasks, [0, 1], **kw)
    alone = fewshot.train_protonet(make, train, train, val_tasks, [1], **kw)
    torch.testing.assert_close(both.embed(x)[1], alone.embed(x)[0], atol=1e-5, rtol=1e-5)
    assert both.best_epoch[1] == alone.best_epoch[0]
    assert len(both.val_acc) == max(len([v for v in col if not math.isnan(v)]) for col in zip(*both.val_acc))


def test_curve_summary_reads_a_ragged_curve():
    """Seeds stop on their own: the last value of each seed, the highest mean of the seeds still
    training, and the untrained row."""
    m = fewshot.Meta([1], 5, {}, {}, {}, {}, {"held_out": [[0.2, 0.4], [0.5, 0.7], [0.6, math.nan]],
                                             "val": [], "pixels": 0.5, "k": 1, "episodes_per_epoch": 2})
    out = fewshot.curve_summary(m)
    assert out["h0"] == pytest.approx(30.0)
    assert out["hmax"] == pytest.approx(60.0)  # epoch 1: (50 + 70) / 2 = 60 = epoch 2's 60
    assert out["hlast"] == pytest.approx((60.0 + 70.0) / 2)
    m.curve = {}
    with pytest.raises(ParameterError, match="curve"):
        fewshot.curve_summary(m)


def test_curves_count_images_to_the_kept_epoch_per_seed():
    c = fewshot.Curves([10], {"scratch": {10: [0.5, 0.6]}}, {"scratch": {10: [0.9, 0.9]}},
                       {"scratch": {10: 1.0}}, {"scratch": {10: [2, 5]}}, {10: [300, 310]})
    assert c.images("scratch", 10) == [600.0, 1550.0]
    assert c.as_dict()["rows"] == {10: [300, 310]}
