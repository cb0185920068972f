"""Trained networks kept on disk, keyed by configuration and seed (chapters 1, 4, 5 and 6).

A reference network that several chapters need (chapter 1's dense network is chapter 6's
starting point; chapter 4's donors are chapter 5's) is trained once per build and then read
back. :func:`trained` looks up every seed under a key made from a name and a configuration,
trains only the seeds that are missing (one call of the given ``train`` function, usually
:func:`xferutils.core.ensemble.fit_replicas`), stores them, and returns all of them as one
:class:`~xferutils.core.ensemble.Replicas`. The configuration must name everything that changes the
weights (architecture, data, recipe, device type); two chapters that give the same name and
configuration share the networks.

Chapters that run at the same time (``python -m xferutils.build`` runs several) wait for each
other on a lock per key, so a network is never trained twice nor read half-written. The store
lives in ``results/store/`` (git-ignored); ``XFER_STORE`` names another folder, and
``XFER_STORE=off`` trains every time without storing.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from xferutils.core.config import ParameterError, check_seeds
from xferutils.core.ensemble import Replicas
from xferutils.pages.results import _plain, atomic_write_text, results_dir
from xferutils.core.train import History

VERSION = 1  # bump when the stored format or a recipe's meaning changes
STORE_ENV = "XFER_STORE"


def store_dir() -> Path | None:
    """The store's folder (``XFER_STORE`` or ``results/store``), or None when it is off."""
    where = os.environ.get(STORE_ENV, "")
    if where.lower() == "off":
        return None
    return Path(where) if where else results_dir() / "store"


def key(name: str, config: Mapping[str, Any]) -> str:
    """``<name>-<12 hex digits>``: the folder of the networks trained with ``config``."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ParameterError(f"name={name!r} is not allowed; use letters, digits, '-' and '_'")
    text = json.dumps({"version": VERSION, **_plain(dict(config))}, sort_keys=True)
    return f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the key's lock: other processes asking for the same networks wait."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _save(folder: Path, reps: Replicas) -> None:
    """One file per seed: its parameters, buffers and training history (written atomically)."""
    for k, seed in enumerate(reps.seeds):
        state = {"params": {n: t[k].detach().cpu().clone() for n, t in reps.params.items()},
                 "buffers": {n: t[k].detach().cpu().clone() for n, t in reps.buffers.items()},
                 "history": dataclasses.asdict(reps.history[k]) if k < len(reps.history) else None}
        tmp = folder / f".seed{seed}.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, folder / f"seed{seed}.pt")


def _load(folder: Path, base: torch.nn.Module, seeds: Sequence[int], device: torch.device) -> Replicas:
    """The stored seeds as one set of replicas on ``device``."""
    states = [torch.load(folder / f"seed{s}.pt", map_location=device) for s in seeds]
    stack = lambda part: {n: torch.stack([st[part][n] for st in states])  # noqa: E731
                          for n in states[0][part]}
    history = [History(**st["history"]) if st["history"] else History() for st in states]
    return Replicas(base, stack("params"), stack("buffers"), list(seeds), history)


def trained(name: str, config: Mapping[str, Any], seeds: Sequence[int], make: Callable[[], nn.Module],
            train: Callable[[list[int]], Replicas], device: torch.device | str = "cpu") -> Replicas:
    """The networks ``name`` trained with ``config``, one per seed, training only missing seeds.

    ``make()`` builds the architecture (a template: its weights are not used);
    ``train(missing_seeds)`` must return those seeds' :class:`Replicas`, in that order. The
    result holds every seed of ``seeds``, in order, on ``device``, each with its own history.
    """
    seeds = check_seeds("seeds", seeds)
    device = torch.device(device)
    folder = store_dir()
    if folder is None:
        return train(list(seeds))
    folder = folder / key(name, config)
    with _locked(folder):
        missing = [s for s in seeds if not (folder / f"seed{s}.pt").exists()]
        if missing:
            new = train(missing)
            if list(new.seeds) != missing:
                raise ParameterError(f"train returned seeds {list(new.seeds)}; it was asked for {missing}")
            _save(folder, new)
            atomic_write_text(folder / "config.json",
                              json.dumps({"name": name, **_plain(dict(config))}, indent=1, sort_keys=True))
            if len(missing) == len(seeds):
                return new
        return _load(folder, make().to("meta"), seeds, device)
