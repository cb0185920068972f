"""Sweeps over blocks of seeds (xferutils.sweep) and their merge (xferutils.pages.claims.merge).

The merge and argument tests need no engine; the cluster tests skip when Dask's ``distributed``
is not installed (the optional extra ``scale``, which CI installs)."""
import json
import math
import sys
from pathlib import Path

import pytest

from xferutils.pages import claims

from xferutils import sweep
from xferutils.pages.claims import Family, merge
from xferutils.core.config import ParameterError

ROOT = Path(__file__).resolve().parent.parent
CH7 = ROOT / "notebooks" / "07_negative_results.ipynb"
ENV = "xferutils 0.1.0 | torch 2.14.1 | python 3.11.7 | device cpu (1 thread, AVX2) | amp auto: fp32"


def synthetic(seed0: int, n: int, *, noise: float = 2.0, env: str = ENV, preset: str = "smoke",
              chapter: str = "99_synthetic") -> dict:
    """A results file of seeds seed0..seed0+n-1 whose every value depends on its seed alone."""
    seeds = range(seed0, seed0 + n)
    b = [58 + (3 * s) % 4 for s in seeds]
    a = [bb + 1.5 + ((5 * s) % 7 - 3) * 0.8 for bb, s in zip(b, seeds)]  # a − b: 1.5 ± noise
    fam = Family(chapter)
    fam.ask("q1", "does a beat b?", claims=["dir", "thr"], margin=1.0)
    fam.ask("q2", "is a about 60?", claims=["val"], margin=1.0, primary=False)
    fam.direction("dir", "seed 001", "a beats b", a, b, unit="points")
    fam.threshold("thr", "book", "a is at least 55 %", a, 55.0, unit="%")
    fam.value("val", "book", "a is 61 %", a, 61.0, tol=3.0, unit="%")
    fam.direction("count", "book", "a has more parameters", [1000.0], [10.0], exact=True)
    fam.mirror("dir-flipped", "dir", "seed 002", "b beats a")
    return {"chapter": chapter, "preset": preset, "environment": env,
            "params": {"seed0": seed0, "n_seeds": n, "noise": noise}, **fam.as_dict()}


def same_verdicts(a: dict, b: dict) -> None:
    """Same claim ids in the same order, same verdicts and seed counts, values equal up to float
    noise."""
    ca, cb = a["claims"], b["claims"]
    assert [c["id"] for c in ca] == [c["id"] for c in cb]
    for x, y in zip(ca, cb):
        assert (x["id"], x["verdict"], x["n"]) == (y["id"], y["verdict"], y["n"])
        assert x["values"] == pytest.approx(y["values"], rel=1e-9, abs=1e-9), x["id"]
        for key in ("difference", "p_adjusted"):
            if x.get(key) is None or (isinstance(x[key], float) and math.isnan(x[key])):
                assert y.get(key) is None or math.isnan(y[key]), (x["id"], key)
            else:
                assert x[key] == pytest.approx(y[key], rel=1e-9, abs=1e-12), (x["id"], key)


# --- merge, on synthetic results files (fast, no engine) ---------------------------------------

def test_merge_of_blocks_equals_one_run():
    merged = merge([synthetic(5, 5), synthetic(0, 5)])  # in any order
    same_verdicts(merged, synthetic(0, 10))
    assert merged["params"] == {"seed0": 0, "n_seeds": 10, "noise": 2.0}
    assert merged["merged_from"] == [{"seed0": 0, "n": 5}, {"seed0": 5, "n": 5}]
    exact = {c["id"]: c for c in merged["claims"]}["count"]
    assert exact["values"] == [1000.0] and exact["n"] == 1  # a deterministic claim is kept once


def test_merge_is_not_the_mean_of_verdicts():
    """Three seeds decide nothing here, nine do: merging pools seeds, it does not vote."""
    parts = [synthetic(s, 3) for s in (0, 3, 6)]
    assert all({c["id"]: c for c in p["claims"]}["dir"]["verdict"] == claims.NOT_SHOWN for p in parts)
    merged = {c["id"]: c for c in merge(parts)["claims"]}
    assert merged["dir"]["verdict"] == claims.SUPPORTED and merged["dir"]["n"] == 9
    assert merged["dir-flipped"]["verdict"] == claims.CONTRADICTED


def test_merge_refuses_overlapping_seeds():
    with pytest.raises(ParameterError, match=r"seed 3 is in run 1 and run 2"):
        merge([synthetic(0, 4), synthetic(3, 4)])
    with pytest.raises(ParameterError, match=r"seed 0 .*overlap"):
        merge([synthetic(0, 4), synthetic(0, 4)])  # the same run twice


@pytest.mark.parametrize("change, message", [
    (dict(noise=1.0), r"parameters differ \(noise\)"),
    (dict(preset="book"), r"different presets"),
    (dict(chapter="98_other"), r"different chapters"),
    (dict(env=ENV.replace("torch 2.14.1", "torch 2.15.0")), r"package versions differ"),
])
def test_merge_refuses_mismatched_runs(change, message):
    with pytest.raises(ParameterError, match=message):
        merge([synthetic(0, 4), synthetic(4, 4, **change)])


def test_merge_refuses_other_claims_and_values_not_per_seed():
    other = synthetic(4, 4)
    other["claims"] = [c for c in other["claims"] if c["id"] != "thr"]
    with pytest.raises(ParameterError, match=r"the claims differ \(thr\)"):
        merge([synthetic(0, 4), other])
    short = synthetic(4, 4)
    c = short["claims"][1]
    c["values"] = c["values"][:3]  # e.g. a claim measured on the run's first three seeds only
    with pytest.raises(ParameterError, match=r"claim 'thr' of run 2 has 3 values for its 4 seeds"):
        merge([synthetic(0, 4), short])
    with pytest.raises(ParameterError, match=r"at least two"):
        merge([synthetic(0, 4)])


def test_claims_merge_command(tmp_path, capsys):
    paths = []
    for seed0 in (0, 4):
        p = tmp_path / f"seeds-{seed0}.json"
        p.write_text(json.dumps(synthetic(seed0, 4)))
        paths.append(str(p))
    out = tmp_path / "merged.json"
    assert claims.main(["merge", *paths, "-o", str(out)]) == 0
    assert "merged 2 runs (8 seeds)" in capsys.readouterr().out
    same_verdicts(json.loads(out.read_text()), synthetic(0, 8))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(synthetic(2, 4)))
    assert claims.main(["merge", paths[0], str(bad), "-o", str(tmp_path / "x.json")]) == 2
    assert "seed 2 is in run 1 and run 2" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


# --- the sweep's arguments and plan (no engine) -------------------------------------------------

def test_plan_blocks(tmp_path):
    jobs = sweep.plan([CH7], "book", sweep.parse_seeds("0:12"), 5, tmp_path)
    assert [(j.seed0, j.n) for j in jobs] == [(0, 5), (5, 5), (10, 2)]
    assert [j.results.name for j in jobs] == ["seeds-0-4.json", "seeds-5-9.json", "seeds-10-11.json"]
    assert all(j.out == tmp_path for j in jobs)
    default = sweep.plan([CH7], "smoke", range(3, 5), 2)
    assert default[0].results.relative_to(ROOT).as_posix() == \
        "results/sweep/07_negative_results/smoke/seeds-3-4.json"


@pytest.mark.parametrize("args, message", [
    (["--preset", "huge", "--seeds", "0:4", "--block", "2"], "--preset='huge' is not allowed"),
    (["--preset", "smoke", "--seeds", "4:2", "--block", "2"], "--seeds='4:2' is empty"),
    (["--preset", "smoke", "--seeds", "0-4", "--block", "2"], "--seeds='0-4' is not A:B"),
    (["--preset", "smoke", "--seeds", "0:4", "--block", "0"], "--block=0 is out of range"),
    (["--preset", "smoke", "--seeds", "0:4", "--block", "2", "--workers", "0"], "--workers=0 is out of range"),
    (["--preset", "smoke", "--seeds", "0:4", "--block", "2", "--workers", "2", "--address", "tcp://h:8786"],
     "--workers sizes the local cluster"),
])
def test_bad_arguments_are_refused(args, message, capsys):
    assert sweep.main([str(CH7), *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_notebook_is_refused(capsys):
    assert sweep.main(["notebooks/99_none.ipynb", "--preset", "smoke", "--seeds", "0:2", "--block", "1"]) == 2
    assert "NOTEBOOK='notebooks/99_none.ipynb' is not a notebook file" in capsys.readouterr().err


def test_without_the_engine_it_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert sweep.main([str(CH7), "--preset", "smoke", "--seeds", "0:2", "--block", "1"]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[scale]'" in err and "uv sync --extra scale" in err


# --- on a real cluster (Dask distributed; the 'scale' extra) -----------------------------------

@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", memory_limit=0) as c:
        yield c


def test_failed_run_is_retried_once_and_leaves_no_file(cluster, tmp_path, capsys):
    nb = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
         "source": "preset = 'smoke'\nseed0 = 0\nn_seeds = 0"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "raise RuntimeError(f'boom at seed {seed0}')"}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "98_fails.ipynb"
    path.write_text(json.dumps(nb))
    out = tmp_path / "out"
    rc = sweep.main([str(path), "--preset", "smoke", "--seeds", "0:2", "--block", "1", "--out", str(out),
                     "--address", cluster.scheduler_address, "--merge"])
    log = capsys.readouterr().out
    assert rc == 1
    assert log.count("FAILED 98_fails smoke seeds 0-0 (try 1)") == 1 and "retrying once" in log
    assert "FAILED 98_fails smoke seeds 0-0 (try 2)" in log and "boom at seed 0" in log
    assert "0 of 2 runs done" in log and "not merged" in log
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_chapter7_blocks_merged_equal_one_run(cluster, tmp_path, capsys):
    """The done-criterion at smoke: seeds 0-3 in two blocks of two on a running cluster
    (--address), merged, against one 4-seed run on a local cluster the sweep starts itself."""
    blocks, single = tmp_path / "blocks", tmp_path / "single"
    assert sweep.main([str(CH7), "--preset", "smoke", "--seeds", "0:4", "--block", "2", "--out", str(blocks),
                       "--address", cluster.scheduler_address, "--merge"]) == 0
    log = capsys.readouterr().out
    for name in ("seeds 0-1", "seeds 2-3"):
        assert f"start 07_negative_results smoke {name} on tcp://" in log
        assert f"done  07_negative_results smoke {name} in " in log
    assert sorted(p.name for p in blocks.iterdir()) == [
        "merged.json", "seeds-0-1.ipynb", "seeds-0-1.json", "seeds-2-3.ipynb", "seeds-2-3.json"]
    assert sweep.main([str(CH7), "--preset", "smoke", "--seeds", "0:4", "--block", "4", "--out", str(single),
                       "--workers", "1"]) == 0
    merged = json.loads((blocks / "merged.json").read_text())
    one = json.loads((single / "seeds-0-3.json").read_text())
    assert one["params"]["seed0"] == 0 and one["params"]["n_seeds"] == 4 and merged["params"] == one["params"]
    assert len(one["claims"]) >= 10
    same_verdicts(merged, one)
    executed = json.loads((blocks / "seeds-2-3.ipynb").read_text())
    assert "seed0 = 2" in "".join("".join(c["source"]) for c in executed["cells"])
