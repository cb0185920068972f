"""``python -m xferutils.build``: the book, its chapters executed side by side (all chapters).

Jupyter Book executes the notebooks one after another. Most of the book's work is many small
networks whose training steps are bound by Python and memory traffic rather than arithmetic, so
on a 2-core CPU two chapters with one thread each finish much sooner than one chapter after the
other with two threads. This command

1. finds the chapters that Jupyter Book's execution cache (jupyter-cache, ``execute.cache`` in
   ``_config.yml``) does not hold yet;
2. executes them in parallel, longest first, one worker per physical core and the cores shared
   out as torch threads (``XFER_THREADS``), each in its notebook's folder as Jupyter Book would;
3. stores each executed notebook in that cache the way Jupyter Book does (so its execution time
   shows on the execution-statistics page); a chapter that fails stops everything before the build;
4. runs ``jupyter-book build .`` with the remaining arguments, which then takes every chapter from
   the cache. A notebook that forces its own execution (``mystnb.execution_mode: force``, the
   claims ledger, which reads the chapters' results files) runs there, after the chapters.

``python -m xferutils.build -W --keep-going`` is what CI runs; ``--workers 1`` executes one
chapter at a time; ``--dry-run`` prints the plan.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from xferutils.core.config import ParameterError, check_int, physical_cores

ROOT = Path(__file__).resolve().parent.parent
# Chapters in the order to start them: the longest first, so that the two workers finish together
# (from the execution-statistics page of a book build on the 2-core CPU).
# Chapters that read the other chapters' results files (chapter 7 quotes chapters 3-6's verdicts):
# they run after the others, and again whenever another chapter runs.
READERS = ("07_negative_results",)
LONGEST_FIRST = ("06_mixture_traversal", "04_shared_layers", "05_what_works", "03_strategies",
                 "02_framework", "01_dense_baseline", "07_negative_results")
# Chapter 6 first: it trains chapter 1's dense networks into the store (xferutils.core.store), which
# chapter 1, started last, reads back instead of waiting on the store's lock for them.


def book_config(root: Path = ROOT) -> dict:
    """``execute`` settings of ``_config.yml``: the cache folder and the timeout per notebook."""
    import yaml

    cfg = yaml.safe_load((root / "_config.yml").read_text()).get("execute", {})
    return {"cache": root / cfg.get("cache", "_build/.jupyter_cache"), "timeout": int(cfg.get("timeout", 900))}


def forced(nb) -> bool:
    """Whether a notebook asks to be executed at every build (``mystnb.execution_mode: force``)."""
    return nb.metadata.get("mystnb", {}).get("execution_mode") == "force"


def pending(paths: Sequence[Path], cache) -> list[Path]:
    """The notebooks the cache cannot serve and the build would execute, longest first."""
    import nbformat

    todo = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if forced(nb):
            continue
        try:
            cache.match_cache_notebook(nb)
        except KeyError:
            todo.append(path)
    if todo:  # a chapter that reads the others' results is stale whenever one of them runs again
        todo += [p for p in paths if p.stem in READERS and p not in todo and not forced(nbformat.read(p, as_version=4))]
    rank = {stem: i for i, stem in enumerate(LONGEST_FIRST)}
    return sorted(todo, key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def execute(path: Path, threads: int, timeout: int) -> tuple[Path, object, float, str | None]:
    """Execute one notebook in its folder with ``threads`` torch threads (a worker process)."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    os.environ["XFER_THREADS"] = str(threads)  # the kernel inherits the worker's environment
    os.environ["TQDM_DISABLE"] = "1"  # no progress bars on the pages
    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(path.parent), timeout=timeout, allow_errors=False,
                                 meta_override=True)
    return path, nb, result.time, result.exc_string if result.err is not None else None


def run_chapters(paths: Sequence[Path], cache, workers: int, timeout: int, cores: int | None = None) -> None:
    """Execute ``paths`` on ``workers`` processes and store each in ``cache``; raise on a failure."""
    from jupyter_cache.base import CacheBundleIn

    cores = cores or physical_cores()
    threads = max(1, cores // workers)
    first = [p for p in paths if p.stem not in READERS]
    if len(first) < len(paths):  # chapters that read the others' results files run after them
        if first:
            run_chapters(first, cache, workers, timeout, cores)
        paths, workers = [p for p in paths if p.stem in READERS], 1
        threads = cores
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(execute, p, threads, timeout) for p in paths]
        for future in as_completed(futures):
            path, nb, seconds, error = future.result()
            if error is not None:
                for f in futures:
                    f.cancel()
                raise RuntimeError(f"executing {path.relative_to(path.parent.parent)} failed:\n{error}")
            cache.cache_notebook_bundle(CacheBundleIn(nb, str(path), data={"execution_seconds": seconds}),
                                       check_validity=False, overwrite=True)
            print(f"  {path.stem}: {seconds:.0f} s ({threads} thread{'s' if threads > 1 else ''})", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xferutils.build", description=__doc__.split("\n\n")[0],
                                     epilog="Other arguments go to `jupyter-book build .` (e.g. -W --keep-going).")
    parser.add_argument("--workers", type=int, default=0, help="chapters at once (default: the physical cores)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and execute nothing")
    args, rest = parser.parse_known_args(argv)
    workers = check_int("--workers", args.workers, 0, 64)
    cfg = book_config()
    from jupyter_cache import get_cache

    cache = get_cache(str(cfg["cache"]))
    todo = pending(sorted((ROOT / "notebooks").glob("*.ipynb")), cache)
    workers = min(workers or physical_cores(), max(1, len(todo)))
    exe = Path(sys.executable).parent / "jupyter-book"  # the environment's own, else the PATH's
    command = [str(exe) if exe.exists() else "jupyter-book", "build", str(ROOT), *rest]
    print(f"chapters to execute: {[p.stem for p in todo] or 'none (all cached)'} on {workers} worker"
          f"{'s' if workers > 1 else ''}; then jupyter-book build . {' '.join(rest)}".rstrip(), flush=True)
    if args.dry_run:
        return 0
    start = time.perf_counter()
    if todo:
        try:
            run_chapters(todo, cache, workers, cfg["timeout"])
        except (RuntimeError, ParameterError) as err:
            print(err, file=sys.stderr)
            return 1
        print(f"chapters executed in {time.perf_counter() - start:.0f} s", flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
