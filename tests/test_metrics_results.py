import json
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
    assert s.mean == 2.0 and s.std == pytest.approx(1.0) and s.n == 3
    assert s.ci95 == pytest.approx(4.303 / math.sqrt(3))
    assert xu.metrics.spread([0.5]).std == 0.0
    assert str(xu.metrics.spread([0.97, 0.98])) == "97.5\u00a0±\u00a00.7"
    assert xu.metrics.spread([-0.0004, 0.0002]).fmt() == "0.0\u00a0±\u00a00.0"
    with pytest.raises(ValueError):
        xu.metrics.spread([])


def test_results_roundtrip_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("XFER_RESULTS_DIR", str(tmp_path))
    path = xu.results.save_results("ch", "smoke", {"acc": torch.tensor([0.5]),
                                                   "s": xu.metrics.spread([1.0, 2.0]),
                                                   "nan": float("nan")})
    assert path == tmp_path / "ch" / "smoke.json"
    data = xu.results.load_results("ch", "smoke")
    assert data["acc"] == [0.5] and data["s"]["n"] == 2 and data["nan"] is None
    assert data["preset"] == "smoke"
    assert [p.name for p in (tmp_path / "ch").iterdir()] == ["smoke.json"]  # no temp files left

    class Boom:
        def as_dict(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        xu.results.save_results("ch", "smoke", {"x": Boom()})
    assert json.loads(path.read_text())["acc"] == [0.5]  # the old file is intact


def test_tidy_numbers_for_prose():
    from xferutils.pages.results import number, plural, tidy

    assert number(-0.04, "+.1f") == "0.0" and number(-0.004, ".2f") == "0.00" and number(0.04, "+.1f") == "+0.0"
    assert number(-0.4, ".1f") == "-0.4" and tidy("[-0.0, +4.1]") == "[0.0, +4.1]"
    assert tidy("9.5e-07") == "9.5 × 10⁻⁷" and tidy("2.27e-06 (claimed 0.0001)") == "2.27 × 10⁻⁶ (claimed 0.0001)"
    assert tidy("1e-04") == "10⁻⁴" and tidy("3.0e+02") == "3.0 × 10²" and tidy("5e+00") == "5"
    assert tidy("seed0 e-mail 10.0 x-0.0") == "seed0 e-mail 10.0 x-0.0"  # words and ranges untouched
    assert plural(1, "seed") == "1 seed" and plural(5, "seed") == "5 seeds"
    assert plural(1, "labelled image") == "1 labelled image" and plural(2, "child", "children") == "2 children"
