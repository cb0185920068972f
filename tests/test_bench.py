"""The benchmark runs end to end at a tiny scale (its timings are not asserted: speed is measured, not tested)."""
import json

import pytest

import xferutils.bench as bench
from xferutils.core.config import ParameterError


def test_bench_quick_runs_and_writes_every_row(tmp_path):
    out = tmp_path / "bench.json"
    res = bench.main(["--quick", "--engines", "auto,fused", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["rows"][0]["method"].startswith("document 002 loop")
    methods = [r["method"] for r in data["rows"]]
    assert any(m.startswith("xferutils fit (") for m in methods)
    assert sum(m.startswith("xferutils fit_replicas K=1") for m in methods) == 2  # one per engine
    assert all(r["seconds"] > 0 and 0 <= r["test_acc"] <= 1 for r in data["rows"])
    scaling = data["scaling"]
    assert [(r["k"], r["engine"]) for r in scaling] == [(1, "auto"), (2, "auto"), (1, "fused"), (2, "fused")]
    assert {r["resolved_engine"] for r in scaling} == {"eager", "fused"}
    for r in scaling:
        assert r["ms_per_model_epoch"] == pytest.approx(1000 * r["seconds"] / (r["k"] * r["epochs"]))
        assert r["max_acc_gap_to_sequential"] < 0.01  # the same models, trained together or in turn
    assert res["scaling"] == scaling
    assert "replica scaling" in bench.format_table(res)
    ev = data["eval_chunks"]
    assert (ev["k"], ev["images"]) == (4, 200) and ev["rows_per_chunk"] >= 1
    assert ev["max_abs_diff"] < 1e-4  # chunking changes the speed, not the logits
    assert "evaluation (4 lenet5 replicas, 200 images)" in bench.format_table(res)


def test_bench_refuses_bad_flags(tmp_path):
    with pytest.raises(ParameterError, match="--engines"):
        bench.main(["--quick", "--engines", "warp", "--json", str(tmp_path / "x.json")])
    with pytest.raises(ParameterError, match="--ks"):
        bench.main(["--ks", "0,2", "--json", str(tmp_path / "x.json")])  # refused before any work
    with pytest.raises(SystemExit):
        bench.main(["--ks", "one,two"])


def test_clocked_times_the_call_it_runs():
    """clocked returns the call's result, its wall seconds and its CPU seconds."""
    import torch

    from xferutils.pages import timing
    import time

    out, t = bench.clocked(lambda: time.sleep(0.05) or 42, torch.device("cpu"))
    assert out == 42 and 0.05 <= t.wall < 5
    out, t = bench.clocked(lambda: time.sleep(0.05) or sum(range(200_000)), torch.device("cpu"))
    assert isinstance(t, timing.Timer) and t.wall >= 0.05 and 0 < t.cpu < t.wall + 1  # sleeping costs no CPU


def test_defaults_are_sized_to_the_device(monkeypatch):
    """A CPU gets K = 1, 8 on 12,000 images; a GPU the full scaling (run_bench is not run)."""
    seen = {}
    monkeypatch.setattr(bench, "run_bench", lambda *args: seen.setdefault("args", args) and {})
    monkeypatch.setattr(bench, "format_table", lambda res: "")
    monkeypatch.setattr(bench, "atomic_write_text", lambda path, text: None)
    bench.main(["--device", "cpu"])
    assert seen["args"][5] == (1, 8) and seen["args"][8] == 12000
    seen.clear()
    bench.main(["--device", "cpu", "--ks", "1,2,4", "--limit", "2000"])
    assert seen["args"][5] == (1, 2, 4) and seen["args"][7] == 2000 and seen["args"][8] is None
    assert bench.SIZED["gpu"]["ks"] == [1, 8, 32, 128] and bench.SIZED["gpu"]["scaling_limit"] is None
