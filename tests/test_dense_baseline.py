"""Tests of xferutils.chapters.dense_baseline (chapter 1): the exercises' reference solutions and the page's builders."""
import matplotlib
import numpy as np
import pytest
import torch

import xferutils as xu
from xferutils.chapters import dense_baseline as baseline
from xferutils.core.config import ParameterError
from xferutils.core.data import Split

matplotlib.use("Agg")


def test_seeds_needed_follows_the_two_standard_error_rule():
    # 2·s·sqrt(2/n) <= delta  <=>  n >= 8 s²/δ²
    assert baseline.seeds_needed(0.1, 0.1) == 8
    assert baseline.seeds_needed(0.2, 0.1) == 32
    assert baseline.seeds_needed(0.0, 0.1) == 2  # never fewer than two
    n = baseline.seeds_needed(0.17, 0.1)
    assert 2 * 0.17 * np.sqrt(2 / n) <= 0.1 < 2 * 0.17 * np.sqrt(2 / (n - 1))
    with pytest.raises(ParameterError, match="delta"):
        baseline.seeds_needed(0.1, 0.0)


def test_confusion_matrix_counts_true_by_predicted():
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 2, 0, 2])
    m = baseline.confusion_matrix(pred, y, 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert m.sum() == len(y) and m.trace() == (pred == y).sum()
    with pytest.raises(ParameterError, match="shape"):
        baseline.confusion_matrix(pred[:3], y, 3)


def test_most_confused_sums_over_replicas():
    y = torch.tensor([4, 4, 9, 3])
    preds = torch.tensor([[9, 4, 9, 5], [9, 9, 9, 3]])
    assert baseline.most_confused(preds, y) == (4, 9, 3)


def test_check_parameters_names_the_bad_knob():
    baseline.check_parameters(0, 0, 5, 2, 256, 1e-3)
    with pytest.raises(ParameterError, match="patience"):
        baseline.check_parameters(0, 0, 5, 0, 256, 1e-3)
    with pytest.raises(ParameterError, match="seed0=-1 is out of range"):
        baseline.check_parameters(-1, 0, 5, 2, 256, 1e-3)


def trained(seeds=(0, 1)):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 784, generator=g), torch.arange(10).repeat(20)
    data = Split(x, y)
    rep = xu.ensemble.fit_replicas(xu.ensemble.replicate(xu.models.dense_net, list(seeds)), data, list(seeds),
                                   epochs=4, batch_size=50, val=data, patience=1)
    return rep, data


def test_builders_for_the_page():
    rep, data = trained()
    acc = xu.metrics.spread(rep.evaluate(data))
    table = baseline.accuracy_table(acc)
    assert f"{acc.fmt(digits=2)} %" in table and "2 seeds" in table and "97.09 %" in table
    fig = baseline.curves_figure(rep)
    assert len(fig.axes) == 2 and "%" in fig.axes[1].get_ylabel()
    pc = baseline.digit_accuracy(rep, data)
    assert pc.shape == (2, 10)
    assert len(baseline.per_class_figure(pc).axes) == 1
    speed = {"document 002's loop": 10.0, "xferutils fp32 (batch 50)": 2.0, "xferutils bf16 (batch 50)": 1.0}
    st = baseline.speed_table(speed)
    assert "| xferutils fp32 (batch 50) | 2.00 | 5.0× |" in st and "| xferutils bf16 (batch 50) | 1.00 | 10.0× |" in st
    g = baseline.glue_values(acc, rep, pc, speed, 3.0, 200, 200)
    assert g["fp32_speedup"] == 5.0 and g["best_speedup"] == 10.0 and g["n_seeds"] == 2
    assert 1 <= g["kept_min"] <= g["kept_max"] <= g["epochs_max"] <= 4
    assert g["epochs_run"] == f"{g['epochs_max']} epoch{'s' if g['epochs_max'] != 1 else ''} run"
    assert g["speedup_words"] == baseline.speedup_words(speed)
    assert g["seeds_needed"] == baseline.seeds_needed(100 * acc.std, 0.1)


def test_measure_speed_scales_a_timed_slice_to_an_epoch(mnist, monkeypatch):
    """Each loop is timed on SPEED_IMAGES images and reported per 60,000-image epoch."""
    from xferutils import bench

    timed = []

    def fake_fit(mnist_, epochs, batch_size, lr, amp, limit=None, **kw):
        timed.append(limit)
        return None, 0.5

    monkeypatch.setattr(bench, "package_fit", fake_fit)
    monkeypatch.setattr(bench, "seed_loop", lambda root, epochs, device, limit=None, **kw: (timed.append(limit), 2.0))
    run = xu.config.Run("01_dense_baseline", "smoke", torch.device("cpu"))
    speed = baseline.measure_speed(mnist, run, 256, 2e-3, amp=True)
    factor = len(mnist.train) / baseline.SPEED_IMAGES["smoke"]
    assert timed == [baseline.SPEED_IMAGES["smoke"]] * 3
    assert list(speed.values()) == pytest.approx([2.0 * factor, 0.5 * factor, 0.5 * factor])
    assert baseline.SPEED_IMAGES["full"] is None  # full times whole epochs


def test_speedup_words_name_fp32_once_when_it_is_fastest():
    loop = "document 002's loop (DataLoader, batch 64)"
    fp32_only = {loop: 8.2, "xferutils fp32 (batch 256)": 2.0}
    assert baseline.speedup_words(fp32_only) == "4.1× faster (in fp32, its fastest setting on this machine)"
    slower_bf16 = fp32_only | {"xferutils bf16 (batch 256)": 3.0}
    assert baseline.speedup_words(slower_bf16) == baseline.speedup_words(fp32_only)
    faster_bf16 = fp32_only | {"xferutils bf16 (batch 256)": 1.0}
    assert baseline.speedup_words(faster_bf16) == ("4.1× faster in fp32 and 8.2× faster in bf16, its fastest "
                                                   "setting on this machine")


def test_accuracy_table_cites_no_missing_file():
    rows = baseline.accuracy_table(xu.metrics.spread([0.97, 0.98])) + str(baseline.references_list([0.97]))
    assert "LITERATURE" not in rows and "Keras notebook" in rows


def test_convergence_words_follow_the_numbers():
    assert "flattened" in baseline.convergence_words(0.05, 0.2, 4, 5)
    assert "still rising" in baseline.convergence_words(0.9, 0.2, 4, 5)
    assert "lost accuracy" in baseline.convergence_words(-0.9, 0.2, 4, 5)
    assert "cap" in baseline.convergence_words(0.05, 0.2, 5, 5)
    assert "cap" not in baseline.convergence_words(0.05, 0.2, 4, 5)


def test_references_list_reports_percent_against_the_published_run():
    ref = baseline.references_list([0.975, 0.98])
    assert ref[0]["measured"] == [97.5, 98.0] and ref[0]["target"] == baseline.ANCHOR
    assert baseline.references_list([0.9], anchor=50.0)[0]["target"] == 50.0
    with pytest.raises(ParameterError, match="test_acc"):
        baseline.references_list([])
