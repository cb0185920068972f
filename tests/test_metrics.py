"""Tests of xferutils.core.metrics (every chapter): accuracy, per-class accuracy, mean and spread."""
import math

import pytest
import torch

import xferutils as xu


def test_accuracy_from_labels_or_logits():
    y = torch.tensor([0, 1, 2, 2])
    assert xu.metrics.accuracy(torch.tensor([0, 1, 1, 2]), y) == 0.75
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 2, 2]), 3).float()
    assert xu.metrics.accuracy(logits, y) == 0.75


def test_per_class_accuracy():
    y = torch.tensor([0, 0, 1, 1, 1])
    pred = torch.tensor([0, 1, 1, 1, 0])
    acc = xu.metrics.per_class_accuracy(pred, y, 3)
    assert acc[:2] == pytest.approx([0.5, 2 / 3]) and math.isnan(acc[2])


def test_spread():
    s = xu.metrics.spread([1.0, 2.0, 3.0])
    assert isinstance(s, xu.metrics.Spread)
    assert s.mean == 2.0 and s.std == pytest.approx(1.0) and s.n == 3
    assert s.ci95 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # Student's t(0.975, 2 df)
    assert math.isnan(xu.metrics.spread([0.5]).ci95)
    assert xu.metrics.spread([0.5]).std == 0.0
    assert str(xu.metrics.spread([0.97, 0.98])) == "97.5\u00a0±\u00a00.7"
    assert xu.metrics.spread([-0.0004, 0.0002]).fmt() == "0.0\u00a0±\u00a00.0"
    with pytest.raises(ValueError):
        xu.metrics.spread([])


def test_epochs_to_fraction():
    assert xu.metrics.epochs_to_fraction([0.1, 0.5, 0.9, 1.0]) == 3
    assert xu.metrics.epochs_to_fraction([0.2, 0.2, 0.2]) == 1  # a flat curve "converges" at once
    assert xu.metrics.epochs_to_fraction([0.1, 0.6, 1.0], fraction=0.5) == 2


def test_one_se_takes_the_simplest_option_within_one_standard_error_of_the_best():
    from xferutils.core.config import ParameterError
    from xferutils.core.metrics import one_se

    scores = {0.0: [0.80, 0.82], 1.0: [0.83, 0.85], 2.0: [0.90, 0.92]}
    assert one_se(scores, lambda v: v) == 2.0  # best by far: the only one within its SE (0.01)
    scores[1.0] = [0.905, 0.905]
    assert one_se(scores, lambda v: v) == 1.0  # within 0.01 of 0.91: simpler wins
    assert one_se(scores, lambda v: -v) == 2.0  # "simplest" is the caller's order
    assert one_se({"a": [0.5]}, len) == "a"  # one seed: no spread, the best
    with pytest.raises(ParameterError, match="scores"):
        one_se({}, len)
