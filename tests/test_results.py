"""Tests of xferutils.pages.results (every chapter): the results file, and numbers tidied for prose."""
import json

import pytest
import torch

import xferutils as xu


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
