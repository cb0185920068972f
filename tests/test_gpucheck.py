"""python -m xferutils.gpucheck: its plan, table and refusals (the GPU run itself needs a GPU)."""
import sys

import pytest
import torch

import xferutils.gpucheck as gc


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_says_so_and_runs_nothing(capsys, tmp_path):
    assert gc.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU here" in err and "torch.cuda.is_available() is False" in err
    assert not any(tmp_path.iterdir())


def test_plan_has_tests_bench_and_every_chapter_at_each_preset(tmp_path):
    steps = gc.plan(["full", "book"], tmp_path)
    chapters = gc.notebooks()
    assert chapters and all(nb.name[0].isdigit() for nb in chapters)
    assert [s.name for s in steps[:2]] == ["tests/test_cuda.py", "xferutils.bench"]
    assert len(steps) == 2 + 2 * len(chapters)
    for s in steps[2:]:
        assert s.command[s.command.index("preset") + 1] == s.preset
        assert s.command[-1] == "cuda" and str(tmp_path) in " ".join(s.command)
    assert len(gc.plan(["full"], tmp_path, tests=False, bench=False)) == len(chapters)


def test_dry_run_prints_the_commands(capsys):
    assert gc.main(["--dry-run", "--presets", "book"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + len(gc.notebooks()) and "papermill" in out[-1] and "-p preset book" in out[-1]


def test_bad_presets_are_refused():
    with pytest.raises(SystemExit):
        gc.main(["--presets", "huge", "--dry-run"])


def test_run_step_and_table(tmp_path):
    ok = gc.run_step(gc.Step("fine", "full", [sys.executable, "-c", "print('hi')"]), 60, tmp_path / "a.log")
    bad = gc.run_step(gc.Step("broken", "full", [sys.executable, "-c", "raise SystemExit(3)"]), 60,
                      tmp_path / "b.log")
    slow = gc.run_step(gc.Step("slow", "-", [sys.executable, "-c", "import time; time.sleep(5)"]), 0.5,
                       tmp_path / "c.log")
    assert ok.status == "ok" and (tmp_path / "a.log").read_text().strip() == "hi"
    assert bad.status.startswith("FAILED (exit 3") and slow.status.startswith("FAILED (over")
    text = gc.report_table([ok, bad, slow], "NVIDIA H100 80GB HBM3")
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["step", "preset", "device", "seconds"]
    assert "broken" in lines[2] and "FAILED" in lines[2] and "NVIDIA H100" in lines[1]
    assert lines[-1].startswith("chapters at full:") and "300 s" in lines[-1]
