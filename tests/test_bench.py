"""The benchmark runs end to end at a tiny scale (its timings are not asserted: speed is measured, not tested)."""
import json

import xferutils.bench as bench


def test_bench_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    res = bench.main(["--seed-epochs", "1", "--epochs", "1", "--replicas", "2", "--limit", "512", "--amp", "off",
                      "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["rows"][0]["method"].startswith("seed 002 loop")
    assert len(data["rows"]) == 2 and data["replicas"]["k"] == 2
    assert all(r["seconds"] > 0 and 0 <= r["test_acc"] <= 1 for r in data["rows"])
    assert res["replicas"]["acc_vectorized_mean"] == data["replicas"]["acc_vectorized_mean"]
