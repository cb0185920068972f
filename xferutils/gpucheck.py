"""``python -m xferutils.gpucheck``: check a GPU machine with one command.

Runs, on the CUDA device, from the repository root:

1. the CUDA tests (``tests/test_cuda.py``: every chapter module's core functions at tiny scale,
   mixed-device inputs, the captured training step against the eager one);
2. the benchmark (``python -m xferutils.bench``, JSON under ``results/bench/``);
3. every chapter notebook ``notebooks/[0-9]*.ipynb`` at ``full`` (``--presets full,book`` adds
   ``book``) with papermill, outputs under ``--out``;

and prints one table (step, preset, device, seconds, status) and the total time of the chapters
at each preset. The exit status is 0 when every step passed, 1 when one failed, and 2 when the
machine has no CUDA GPU (nothing is run then). ``--dry-run`` prints the commands only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("smoke", "book", "full")


@dataclass
class Step:
    """One command of the check and, once run, its outcome."""

    name: str
    preset: str
    command: list[str]
    cwd: Path = ROOT
    seconds: float = 0.0
    status: str = "not run"


def no_cuda_message() -> str | None:
    """Why this machine cannot be checked (no CUDA GPU), or None when it can."""
    if torch.cuda.is_available():
        return None
    built = torch.version.cuda or "no CUDA (a CPU-only build)"
    return (f"no CUDA GPU here: torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"built for CUDA {built}). gpucheck is for a machine with an NVIDIA GPU; on a CPU run "
            "`python -m pytest` and `python -m xferutils.bench` instead.")


def notebooks(pattern: str = "[0-9]*.ipynb") -> list[Path]:
    """The chapter notebooks, in reading order."""
    return sorted((ROOT / "notebooks").glob(pattern))


def plan(presets: list[str], out: Path, tests: bool = True, bench: bool = True,
         pattern: str = "[0-9]*.ipynb") -> list[Step]:
    """The steps of the check, in order."""
    py = sys.executable
    steps = []
    if tests:
        steps.append(Step("tests/test_cuda.py", "-", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                                       "tests/test_cuda.py"]))
    if bench:
        steps.append(Step("xferutils.bench", "-", [py, "-m", "xferutils.bench", "--device", "cuda",
                                                    "--engines", "auto,eager"]))
    for preset in presets:
        for nb in notebooks(pattern):
            steps.append(Step(nb.stem, preset, [py, "-m", "papermill", "--log-output", str(nb),
                                                 str(out / f"{nb.stem}_{preset}.ipynb"), "-p", "preset", preset,
                                                 "-p", "device", "cuda"], cwd=nb.parent))
    return steps


def run_step(step: Step, timeout: float, log: Path) -> Step:
    """Run one step (its output into ``log``); fill in seconds and status."""
    env = {k: v for k, v in os.environ.items() if k != "XFER_PRESET"}  # the step's own preset counts
    env.setdefault("TQDM_DISABLE", "1")  # progress bars are for people running a chapter by hand
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    try:
        with open(log, "w") as fh:
            rc = subprocess.run(step.command, cwd=step.cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        step.status = "ok" if rc == 0 else f"FAILED (exit {rc}, see {log.name})"
    except subprocess.TimeoutExpired:
        step.status = f"FAILED (over {timeout:.0f} s)"
    step.seconds = time.perf_counter() - start
    return step


def report_table(steps: list[Step], device: str) -> str:
    """One row per step, then each preset's total over the chapter notebooks."""
    lines = [f"{'step':<28} {'preset':<7} {'device':<24} {'seconds':>8}  status"]
    for s in steps:
        lines.append(f"{s.name:<28} {s.preset:<7} {device[:24]:<24} {s.seconds:8.1f}  {s.status}")
    for preset in dict.fromkeys(s.preset for s in steps if s.preset != "-"):
        chapters = [s for s in steps if s.preset == preset]
        lines.append(f"chapters at {preset}: {sum(s.seconds for s in chapters):.1f} s in all"
                     + (" (target for the whole book at full on one H100: 300 s)" if preset == "full" else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xferutils.gpucheck", description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="full", help="comma-separated: full, book, smoke (default full)")
    p.add_argument("--notebooks", default="[0-9]*.ipynb", help="glob of chapter notebooks under notebooks/")
    p.add_argument("--no-tests", action="store_true", help="skip tests/test_cuda.py")
    p.add_argument("--no-bench", action="store_true", help="skip the benchmark")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed for each step")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "gpucheck",
                   help="folder for executed notebooks, logs and gpucheck.json")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    a = p.parse_args(argv)
    presets = [x.strip() for x in a.presets.split(",") if x.strip()]
    bad = [x for x in presets if x not in PRESETS]
    if bad or not presets:
        p.error(f"--presets {a.presets!r}: choose from {', '.join(PRESETS)}")
    steps = plan(presets, a.out, not a.no_tests, not a.no_bench, a.notebooks)
    if a.dry_run:
        for s in steps:
            print(f"(cd {os.path.relpath(s.cwd, ROOT)} && {' '.join(s.command)})")
        return 0
    why = no_cuda_message()
    if why is not None:
        print(why, file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name(0)
    a.out.mkdir(parents=True, exist_ok=True)
    for s in steps:
        run_step(s, a.timeout, a.out / f"{s.name.replace('/', '_')}_{s.preset}.log")
        print(f"{s.name} {s.preset}: {s.status} ({s.seconds:.1f} s)", flush=True)
    print(report_table(steps, device))
    rows = [{**asdict(s), "cwd": os.path.relpath(s.cwd, ROOT), "device": device} for s in steps]
    (a.out / "gpucheck.json").write_text(json.dumps(rows, indent=2, default=str))
    return 0 if all(s.status == "ok" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
