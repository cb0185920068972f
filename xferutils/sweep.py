"""Sweep a chapter's seeds over a Dask cluster, one papermill run per block of seeds.

``python -m xferutils.sweep NOTEBOOK [NOTEBOOK ...] --preset P --seeds A:B --block K`` splits the
seeds A, A+1, ..., B-1 into blocks of K (the last may be shorter) and runs each block as one
papermill run of the notebook with the parameters ``preset``, ``seed0`` and ``n_seeds``. The runs
go to a Dask cluster (``distributed``): without ``--address`` a local cluster of one process per
core (one thread each; ``--workers N`` sets the number), with ``--address`` the running
scheduler at that address (``dask scheduler`` and ``dask worker``, or ``dask-jobqueue`` on SLURM;
see the README).

Each run executes in a private temporary folder on its worker (``XFER_RESULTS_DIR`` points
there, ``XFER_THREADS=1``), and sends back its results file and executed notebook; this process
writes them atomically to ``--out`` (default ``results/sweep/<chapter>/<preset>/``) as
``seeds-<first>-<last>.json`` and ``.ipynb``. So workers need the package and the data
(``XFER_DATA_DIR``), not a shared file system, and a failed run leaves no file behind: it is
reported with the end of its output and retried once. ``--merge`` then pools the blocks with
:func:`xferutils.pages.claims.merge` into ``merged.json`` beside them, one verdict per claim on all the
seeds. The engine is the optional extra ``scale`` (``pip install -e .[scale]``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xferutils.core.config import PRESETS, ParameterError, check_choice, check_int, physical_cores
from xferutils.pages.results import DEFAULT_DIR, atomic_write_text

TOPIC = "xferutils-sweep"  # the Dask event topic of the "start" lines
INSTALL = ("the sweep runs on Dask's distributed engine, which is not installed; install the "
           "optional extra 'scale':\n    pip install -e '.[scale]'      # or: uv sync --extra scale")
TAIL = 40  # lines of a failed run's output shown in its report
# Chapters checked to be seed-independent: a seed's measurements depend on that seed alone, so
# merged blocks equal one run over all the seeds. Chapters 1-6 draw their data pools from the
# fixed data_seed, but some choose settings over all of a run's seeds (chapter 3's knobs on
# validation, chapter 6's lambda): not yet checked block against run.
SEED_INDEPENDENT = frozenset({"07_negative_results"})


@dataclass(frozen=True)
class SweepJob:
    """One papermill run: ``n`` seeds from ``seed0`` of ``notebook`` at ``preset``, written as
    ``out/seeds-<first>-<last>.json`` (and ``.ipynb``)."""

    notebook: Path
    preset: str
    seed0: int
    n: int
    out: Path

    @property
    def chapter(self) -> str:
        return self.notebook.stem

    @property
    def name(self) -> str:
        return f"seeds-{self.seed0}-{self.seed0 + self.n - 1}"

    @property
    def results(self) -> Path:
        return self.out / f"{self.name}.json"

    @property
    def executed(self) -> Path:
        return self.out / f"{self.name}.ipynb"

    def __str__(self) -> str:
        return f"{self.chapter} {self.preset} seeds {self.seed0}-{self.seed0 + self.n - 1}"


# --- arguments ---------------------------------------------------------------------------------

def parse_seeds(text: str) -> range:
    """``"A:B"`` -> ``range(A, B)`` (0 <= A < B), else :class:`ParameterError` naming ``--seeds``."""
    parts = str(text).split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ParameterError(f"--seeds={text!r} is not A:B (two non-negative integers: the seeds "
                             "A, A+1, ..., B-1; e.g. 0:20)")
    a, b = (int(p) for p in parts)
    if b <= a:
        raise ParameterError(f"--seeds={text!r} is empty; give A:B with A < B (e.g. 0:20)")
    return range(a, b)


def plan(notebooks: Sequence[str | Path], preset: str, seeds: range, block: int,
         out: str | Path | None = None) -> list[SweepJob]:
    """The runs of a sweep, validated: every notebook exists, the preset is known, blocks of
    ``block`` seeds (the last may be shorter). ``out`` is the folder of a single notebook's
    files (default ``results/sweep/<chapter>/<preset>``); with several notebooks each gets
    ``out/<chapter>``."""
    check_choice("--preset", preset, PRESETS)
    check_int("--block", block, 1)
    if not notebooks:
        raise ParameterError("NOTEBOOK: give at least one chapter notebook (e.g. "
                             "notebooks/07_negative_results.ipynb)")
    paths = []
    for nb in notebooks:
        p = Path(nb)
        if p.suffix != ".ipynb" or not p.is_file():
            raise ParameterError(f"NOTEBOOK={str(nb)!r} is not a notebook file (.ipynb) that exists")
        if p.resolve() in [q.resolve() for q in paths]:
            raise ParameterError(f"NOTEBOOK={str(nb)!r} is given twice")
        paths.append(p)
    jobs = []
    for p in paths:
        if out is None:
            folder = DEFAULT_DIR / "sweep" / p.stem / preset
        else:
            folder = Path(out) if len(paths) == 1 else Path(out) / p.stem
        for a in range(seeds.start, seeds.stop, block):
            jobs.append(SweepJob(p, preset, a, min(block, seeds.stop - a), folder))
    return jobs


# --- one run, on a worker ----------------------------------------------------------------------

def run_job(notebook_text: str, notebook_dir: str, chapter: str, preset: str, seed0: int, n: int,
            threads: int = 1, announce: str = "") -> dict[str, Any]:
    """Execute one block with papermill in a private temporary folder; return its results file
    and executed notebook as text, with the seconds it took. Runs on a Dask worker.

    The notebook runs in ``notebook_dir`` where that folder exists on the worker (as a chapter
    does in the repository), else in the temporary folder. Raises ``RuntimeError`` with the end
    of papermill's output when the run fails or writes no results file."""
    if announce:
        try:
            from distributed import get_worker

            w = get_worker()
            w.log_event(TOPIC, {"job": announce, "worker": w.address, "t": time.time()})
        except Exception:  # noqa: BLE001 -- progress is best effort (no worker: a plain call)
            pass
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f"xfer-sweep-{chapter}-{seed0}-"))
    try:
        src, dst, results = tmp / f"{chapter}.ipynb", tmp / "executed.ipynb", tmp / "results"
        src.write_text(notebook_text)
        env = {k: v for k, v in os.environ.items() if k not in ("XFER_PRESET",)}  # --preset counts
        env.update(XFER_RESULTS_DIR=str(results), XFER_THREADS=str(threads), XFER_PROGRESS="0",
                   OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   MPLBACKEND=env.get("MPLBACKEND", "Agg"))
        cwd = notebook_dir if Path(notebook_dir).is_dir() else str(tmp)
        cmd = [sys.executable, "-m", "papermill", "--log-output", "--cwd", cwd, str(src), str(dst),
               "-p", "preset", preset, "-p", "seed0", str(seed0), "-p", "n_seeds", str(n)]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = results / chapter / f"{preset}.json"
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join(proc.stdout.splitlines()[-TAIL:])
            why = (f"papermill exited with status {proc.returncode}" if proc.returncode
                   else f"the notebook wrote no results file {chapter}/{preset}.json")
            raise RuntimeError(f"{why}; the end of its output:\n{tail}")
        text = out.read_text()
        params = json.loads(text).get("params") or {}
        if (params.get("seed0"), params.get("n_seeds")) != (seed0, n):
            raise RuntimeError(f"the results file records seed0={params.get('seed0')!r}, "
                               f"n_seeds={params.get('n_seeds')!r}, not {seed0}, {n}")
        return {"results": text, "notebook": dst.read_text(), "seconds": time.perf_counter() - start}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the sweep, from the client --------------------------------------------------------------

def _where(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _say(text: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {text}", flush=True)


def sweep(jobs: Sequence[SweepJob], client: Any, *, retries: int = 1, threads: int = 1) -> tuple[list[SweepJob], list[SweepJob]]:
    """Run ``jobs`` on a Dask ``client``; write each finished run atomically; a failed run is
    reported and submitted again, up to ``retries`` times. Returns (done, failed)."""
    from distributed import as_completed

    try:
        client.subscribe_topic(TOPIC, lambda event: _say(f"start {event[1]['job']} on {event[1]['worker']}"))
    except Exception:  # noqa: BLE001 -- an older scheduler: no start lines, the rest works
        pass
    texts = {nb: nb.read_text() for nb in {j.notebook for j in jobs}}
    tries: dict[SweepJob, int] = {}

    def submit(job: SweepJob) -> Any:
        tries[job] = tries.get(job, 0) + 1
        key = f"xfer-{job.chapter}-{job.preset}-{job.name}-try{tries[job]}-{os.getpid()}-{time.time_ns()}"
        return client.submit(run_job, texts[job.notebook], str(job.notebook.resolve().parent), job.chapter,
                             job.preset, job.seed0, job.n, threads, str(job), key=key, pure=False)

    futures = {submit(j): j for j in jobs}
    _say(f"{len(jobs)} run{'s' if len(jobs) != 1 else ''} submitted")
    done, failed = [], []
    pending = as_completed(list(futures))
    for fut in pending:
        job = futures.pop(fut)
        try:
            got = fut.result()
        except Exception as err:  # noqa: BLE001 -- any failure of the run is reported, then retried
            last = tries[job] > retries
            _say(f"FAILED {job} (try {tries[job]}): {err}" + ("" if last else "\n  retrying once"))
            if last:
                failed.append(job)
            else:
                new = submit(job)
                futures[new] = job
                pending.add(new)
            continue
        atomic_write_text(job.executed, got["notebook"])
        atomic_write_text(job.results, got["results"])
        done.append(job)
        _say(f"done  {job} in {got['seconds']:.1f} s -> {_where(job.results)}")
    return done, failed


def merge_files(paths: Sequence[Path], output: Path) -> dict[str, Any]:
    """:func:`xferutils.pages.claims.merge` of the results files ``paths``, written atomically."""
    from xferutils.pages.claims import merge
    from xferutils.pages.results import _plain

    merged = merge([json.loads(Path(p).read_text()) for p in paths])
    atomic_write_text(output, json.dumps(_plain(merged), indent=2, sort_keys=True))
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xferutils.sweep",
        description="Run chapters over blocks of seeds on a Dask cluster (one papermill run per "
                    "block) and, with --merge, pool the blocks into one verdict per claim.")
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="chapter notebook(s)")
    parser.add_argument("--preset", required=True, help=f"one of {', '.join(PRESETS)}")
    parser.add_argument("--seeds", required=True, help="A:B, the seeds A, A+1, ..., B-1")
    parser.add_argument("--block", required=True, type=int, help="seeds per papermill run")
    parser.add_argument("--address", help="a running Dask scheduler (tcp://host:8786); default: "
                                          "a local cluster on this machine")
    parser.add_argument("--workers", type=int, help="local cluster: worker processes (default: "
                                                    "one per physical core)")
    parser.add_argument("--out", help="folder of the files (default results/sweep/<chapter>/<preset>)")
    parser.add_argument("--merge", action="store_true", help="pool the blocks into merged.json")
    parser.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    args = parser.parse_args(argv)
    try:
        jobs = plan(args.notebooks, args.preset, parse_seeds(args.seeds), args.block, args.out)
        if args.workers is not None:
            if args.address:
                raise ParameterError("--workers sizes the local cluster; with --address the "
                                     "cluster's own workers run the blocks (leave --workers out)")
            check_int("--workers", args.workers, 1)
        if args.address is not None and not args.address.strip():
            raise ParameterError("--address is empty; give the scheduler's address, e.g. tcp://host:8786")
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        for j in jobs:
            print(f"{j} -> {_where(j.results)}")
        return 0
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print(f"error: {INSTALL}", file=sys.stderr)
        return 2

    workers = args.workers or max(1, min(physical_cores(), len(jobs)))
    start = time.perf_counter()
    cluster = None
    try:
        if args.address:
            client = Client(args.address, timeout="30s")
            _say(f"cluster {args.address}: {len(client.nthreads())} workers")
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", memory_limit=0)
            client = Client(cluster)
            _say(f"local cluster: {workers} worker process{'es' if workers != 1 else ''}, one thread each")
        with client:
            done, failed = sweep(jobs, client)
    except OSError as err:  # no scheduler at the address, or the cluster could not start
        print(f"error: --address={args.address!r}: {err}" if args.address else f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if cluster is not None:
            cluster.close()
    _say(f"{len(done)} of {len(jobs)} runs done in {time.perf_counter() - start:.1f} s"
         + (f"; failed: {', '.join(str(j) for j in failed)}" if failed else ""))
    if args.merge:
        for out in sorted({j.out for j in jobs}):
            mine = [j for j in jobs if j.out == out]
            if any(j in failed for j in mine):
                _say(f"not merged: {out} (a run failed)")
                continue
            if len(mine) < 2:
                _say(f"not merged: {_where(out)} holds one run ({mine[0].name}); nothing to pool")
                continue
            chapter = mine[0].chapter
            if chapter not in SEED_INDEPENDENT:
                _say(f"warning: {chapter} is not checked to be seed-independent (settings chosen over a "
                     "run's seeds may differ from block to block): the merged verdicts pool the blocks, "
                     "but may not be those of one run over the same seeds")
            try:
                merged = merge_files([j.results for j in mine], out / "merged.json")
            except (OSError, ValueError) as err:
                print(f"error: merge of {_where(out)}: {err}", file=sys.stderr)
                return 2
            from xferutils.pages.claims import counts

            c = counts(merged["claims"])
            _say(f"merged {len(mine)} runs ({merged['params']['n_seeds']} seeds) -> "
                 f"{_where(out / 'merged.json')}: " + ", ".join(f"{n} {k}" for k, n in c.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
