"""Traversing the mixture from the dense to the sparse network, and the baselines (chapter 6).

The mixture weight ``q`` rises from 0 to 1 in ``steps`` steps on a schedule; at each step both
networks train for ``batches`` batches on the mixture (each sample routed to the sparse net with
probability ``q``), plus a retention term:

- ``none``: nothing;
- ``trust``: λ·KL(previous step's mixture ‖ this mixture), a trust region around the last step
  (document 002's "optimal infinitesimal step" made concrete);
- ``dense``: λ·KL(original dense net ‖ mixture), distillation toward where the path started;
- ``anchor``: λ/2·‖θ − θ_dense‖², L2-SP toward the dense weights.

Baselines run through the same loop, with the same images and batches: ``abrupt`` (q = 1 from
the first step), ``distill`` (q = 1 with the ``dense`` term: Hinton distillation at T = 1),
``scratch`` (q = 1, sparse net from a random start) and ``gmp`` (q = 0: the dense net pruned by
weight magnitude on Zhu & Gupta's cubic schedule, which reaches its final sparsity at the middle
step, ``gmp_ramp(steps)``, and fine-tunes at that sparsity for the remaining steps). Every method, seed and λ is one replica of one
vectorized model; a network that cannot train in a method (the dense net when q = 1 throughout,
the sparse net when q = 0 throughout) is skipped, and Adam is PyTorch's fused kernel.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from xferutils.pages.claims import Question, compare
from xferutils.pages.claims import table as claims_table
from xferutils.core.config import ParameterError, check_choice, check_float, check_int
from xferutils.core.data import Split
from xferutils.core.ensemble import Replicas, eval_rows, replicate
from xferutils.core.metrics import one_se
from xferutils.core.mixture import mixed_log_probs, sampled_logits
from xferutils.core.optim import adam_
from xferutils.core.train import EarlyStopping
from xferutils.core.sparse import KINDS, active_fraction, check_k, sparse_net
from xferutils.pages.results import tidy

RETENTION = ("none", "trust", "dense", "anchor")
PARTS = ("mixture", "sampled", "dense", "sparse")  # mixture: in expectation; sampled: routed by a draw
LABELS = {"none": "traversal, no retention", "trust": "traversal + trust region (KL to last step)",
          "dense": "traversal + distillation to the dense net", "anchor": "traversal + L2-SP anchor",
          "abrupt": "abrupt switch (fine-tune at q = 1)", "distill": "direct distillation",
          "scratch": "sparse net from scratch (reference)", "gmp": "gradual magnitude pruning",
          "gmp-macs": "gradual magnitude pruning, k-WTA's multiply-adds"}

# Published numbers the chapter quotes (percent unless named otherwise), with their sources.
PUBLISHED = {
    "kwta_acc": 99.09, "kwta_dense_acc": 99.31,  # Ahmad & Scheinkman 2019: sparse CNN vs dense twin, MNIST
    "ss_abrupt_bleu": 11.2, "ss_gradual_bleu": 30.6,  # Bengio et al. 2015: always sampling vs scheduled
    "han_dense_err": 1.64, "han_pruned_err": 1.59, "han_kept": 8.0,  # Han et al. 2015, LeNet-300-100
    "gmp_margin": 0.5,  # issue 19: GMP at 90 % sparsity within about 0.5 points of the dense net
    "dense_target": 97.5,  # the book's target for chapter 1's network on all training images
}


# --- schedules of q ------------------------------------------------------------------------------

def linear(t: float) -> float:
    return t


def cosine(t: float) -> float:
    return (1 - math.cos(math.pi * t)) / 2


def exponential(t: float, r: float = 0.01) -> float:
    """Scheduled sampling's exponential decay ε = r^t of the dense share, rescaled to end at 1."""
    return (1 - r ** t) / (1 - r)


def inverse_sigmoid(t: float, c: float = 10.0) -> float:
    """Scheduled sampling's inverse-sigmoid decay of the dense share, rescaled to [0, 1]."""
    s = [1 / (1 + math.exp(-c * (u - 0.5))) for u in (t, 0.0, 1.0)]
    return (s[0] - s[1]) / (s[2] - s[1])


def cubic(t: float) -> float:
    """Zhu & Gupta's cubic ramp 1 − (1 − t)³: fast at first, slow at the end (exercise 1)."""
    return 1 - (1 - t) ** 3


def abrupt(t: float) -> float:
    """q jumps to 1 at once (the baselines)."""
    return 1.0 if t > 0 else 0.0


def zero(t: float) -> float:
    """q stays 0: only the dense net (gradual magnitude pruning)."""
    return 0.0


SCHEDULES: dict[str, Callable[[float], float]] = {
    "linear": linear, "cosine": cosine, "exponential": exponential,
    "inverse_sigmoid": inverse_sigmoid, "cubic": cubic, "abrupt": abrupt, "zero": zero}


def q_schedule(name: str, steps: int) -> list[float]:
    """q after each of ``steps`` steps: ``f(s / steps)`` for s = 1..steps."""
    f = SCHEDULES[check_choice("schedule", name, list(SCHEDULES))]
    steps = check_int("steps", steps, 1)
    return [f(s / steps) for s in range(1, steps + 1)]


def gmp_ramp(steps: int) -> int:
    """The step at which gradual magnitude pruning reaches its final sparsity: the middle one, so
    that half of the traversal's budget is left for fine-tuning at that sparsity (chapter 6)."""
    return (check_int("steps", steps, 1) + 1) // 2


def prune_fraction(final: float, step: int, steps: int) -> float:
    """Zhu & Gupta's sparsity after ``step`` of ``steps``: final·(1 − (1 − step/steps)³)."""
    return check_float("final", final, 0.0, 1.0) * (1 - (1 - step / check_int("steps", steps, 1)) ** 3)


# --- retention losses ----------------------------------------------------------------------------

def kl_to(target: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """Mean over samples of KL(target ‖ model), from target probabilities and model log-probs."""
    return (torch.xlogy(target, target) - target * log_probs).sum(-1).mean()


def l2_sp(params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """½·Σ‖θ − θ₀‖² over the parameters (L2-SP, Li et al. 2018)."""
    return sum(((params[k] - anchor[k]) ** 2).sum() for k in params) / 2


# --- methods and the traversal -------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """One way from the dense to the sparse network."""

    name: str
    retention: str = "none"
    lam: float = 0.0
    schedule: str = "linear"
    init: str = "dense"  # the sparse net starts from the dense weights, or "random"
    prune: float = 0.0  # gmp: final fraction of the dense net's weights set to zero

    def __post_init__(self) -> None:
        check_choice("retention", self.retention, RETENTION)
        check_float("lam", self.lam, 0.0)
        check_choice("schedule", self.schedule, list(SCHEDULES))
        check_choice("init", self.init, ("dense", "random"))
        check_float("prune", self.prune, 0.0, 1.0)


GRID: dict[str, tuple[float, ...]] = {
    "trust": (0.3, 1.0, 3.0), "dense": (0.3, 1.0, 3.0),
    "anchor": (1e-5, 1e-4, 1e-3), "distill": (0.1, 0.3, 1.0)}
"""Chapter 6's λ grids, chosen on the validation split: three traversal retentions and direct
distillation (the ``dense`` term at q = 1 from the first step). Three values a grid, a factor
of about 3 apart; :func:`tune` extends a grid where its choice sits at an end."""


def grid_for(main: str, every: bool = False) -> dict[str, tuple[float, ...]]:
    """The grids a run tunes: the main traversal's retention and direct distillation (what the
    claims compare), or every grid of :data:`GRID` with ``every`` (the ``full`` preset). The
    traversal without retention needs no grid."""
    check_choice("main", main, RETENTION)
    return dict(GRID) if every else {r: GRID[r] for r in GRID if r in (main, "distill")}


def check_parameters(seed0: int, n_seeds: int, K: int, kind: str, schedule: str, steps: int,
                     batches: int, retention: str, prune: float, lr: float, patience: int = 4) -> None:
    """Validate chapter 6's knobs (raises :class:`~xferutils.core.config.ParameterError` naming the
    parameter)."""
    check_int("seed0", seed0, 0)
    check_int("n_seeds", n_seeds, 0, 100)
    check_k(K)
    check_choice("kind", kind, KINDS)
    check_choice("schedule", schedule, [n for n in SCHEDULES if n not in ("abrupt", "zero")])
    check_int("steps", steps, 1)
    check_int("batches", batches, 1)
    check_choice("retention", retention, RETENTION)
    check_float("prune", prune, 0.0, 0.99)
    check_float("lr", lr, 1e-6, 1.0)
    check_int("patience", patience, 1, 1000)


def candidates(schedule: str, grid: dict[str, Sequence[float]] = GRID) -> list[Method]:
    """Every method tried on the validation split: the traversal without retention, each
    retention of ``grid`` with each λ on ``schedule`` (named ``"<retention> <λ>"``), and direct
    distillation with each λ of ``grid["distill"]`` (``"distill <λ>"``)."""
    check_choice("schedule", schedule, list(SCHEDULES))
    out = [Method("none", schedule=schedule)]
    for r, lams in grid.items():
        if r != "distill":
            out += [Method(f"{r} {lam:g}", check_choice("grid", r, RETENTION), lam, schedule) for lam in lams]
    return out + [Method(f"distill {lam:g}", "dense", lam, "abrupt") for lam in grid.get("distill", ())]


def choose_all(tuning: Traversal, schedule: str,
               grid: dict[str, Sequence[float]] = GRID) -> dict[str, Method]:
    """The λ of each grid chosen on the validation split (:func:`choose`), keyed like ``grid``."""
    return {r: choose(tuning, "dense", "abrupt") if r == "distill" else choose(tuning, r, schedule)
            for r in grid}


def main_methods(schedule: str, chosen: dict[str, Method], prune: float = 0.9) -> list[Method]:
    """The main run: the traversal without retention, each retention with its chosen λ (named
    after the retention), and the :func:`baselines` (distillation with its chosen λ)."""
    methods = [Method("none", schedule=schedule)]
    methods += [Method(r, r, chosen[r].lam, schedule) for r in RETENTION if r != "none" and r in chosen]
    return methods + baselines(prune=prune, lam=chosen["distill"].lam if "distill" in chosen else 1.0)


def baselines(prune: float = 0.9, lam: float = 1.0, matched: float | None = None) -> list[Method]:
    """The dense-to-sparse baselines: abrupt switch, direct distillation, scratch, gmp (to
    ``prune``) and, when ``matched`` is given, ``gmp-macs``: gmp to the sparsity ``matched`` at
    which the pruned net costs the sparse net's multiply-adds (:func:`matched_prune`)."""
    out = [Method("abrupt", schedule="abrupt"), Method("distill", "dense", lam, "abrupt"),
           Method("scratch", schedule="abrupt", init="random"),
           Method("gmp", schedule="zero", prune=prune)]
    return out + ([Method("gmp-macs", schedule="zero", prune=matched)] if matched is not None else [])


def run_all(dense: Replicas, methods: Sequence[Method], train: Split, evals: dict[str, Split],
            **knobs) -> Traversal:
    """:func:`traverse` for ``methods`` in two runs joined (:func:`join`): those that start from
    the dense weights, then those that start at random (``scratch``), which need many more steps
    to converge; each run stops when its own networks stop improving."""
    groups = [[m for m in methods if m.init == init] for init in ("dense", "random")]
    runs = [traverse(dense, g, train, evals, **knobs) for g in groups if g]
    if not runs:
        raise ParameterError("methods is empty; give at least one Method")
    out = runs[0]
    for more in runs[1:]:
        out = join(out, more)
    return out


def tune(dense: Replicas, tr: Traversal, schedule: str, train: Split, evals: dict[str, Split],
         grid: dict[str, Sequence[float]] = GRID, rounds: int = 2,
         **knobs) -> tuple[Traversal, dict[str, Method], dict[str, tuple[float, ...]]]:
    """λ of every grid chosen on validation accuracy averaged over the seeds, by the
    one-standard-error rule (:func:`choose_all`); where a choice is the largest of its grid, one
    more λ above it runs (:func:`extend_grid`) and the choice is made again, at most ``rounds``
    times. Returns the run with the new
    candidates joined, the choices and the grid as it ended."""
    rounds = check_int("rounds", rounds, 0)
    grid = {r: tuple(v) for r, v in grid.items()}
    chosen = choose_all(tr, schedule, grid)
    for _ in range(rounds):
        extra = extend_grid(tr, chosen, grid)
        if not extra:
            break
        more = [m for m in candidates(schedule, extra) if m.name != "none"]
        tr = join(tr, traverse(dense, more, train, evals, **knobs))
        grid = merged_grid(grid, extra)
        chosen = choose_all(tr, schedule, grid)
    return tr, chosen, grid


def matched_prune(macs: dict[str, float]) -> float:
    """The weight sparsity at which a pruned dense net costs as many multiply-adds per image as
    the sparse-activation net: ``1 − sparse/dense`` for :func:`~xferutils.core.sparse.multiply_adds`'s
    counts (a pruned weight costs nothing; every layer is pruned to the same fraction)."""
    dense, sparse = check_float("macs['dense']", float(macs["dense"]), 1.0), float(macs["sparse"])
    check_float("macs['sparse']", sparse, 0.0, dense)
    return 1.0 - sparse / dense


def run_methods(schedule: str, prune: float, matched: float | None,
                grid: dict[str, Sequence[float]] = GRID) -> list[Method]:
    """Everything chapter 6 runs at once: every :func:`candidates` entry (each λ of each grid)
    and the baselines without a λ (``abrupt``, ``scratch``, ``gmp``, ``gmp-macs``). λ is then
    chosen on validation data (:func:`choose_all`) and the same run gives the test numbers."""
    return candidates(schedule, grid) + [m for m in baselines(prune, matched=matched) if m.name != "distill"]


def extend_grid(tuning, chosen: dict[str, Method], grid: dict[str, Sequence[float]] = GRID,
                ) -> dict[str, tuple[float, ...]]:
    """One more λ above each choice at the top of its grid, at the grid's own spacing (the ratio
    of its two largest values). Empty when no choice is the largest of its grid. None is added
    below the smallest: :func:`choose` already prefers the smaller λ within the noise, and λ → 0
    is the method without the term (``none``, or ``abrupt`` for distillation), measured beside
    it. A retention whose extension already ran (it is in ``tuning``) is not extended again."""
    done, out = {m.name for m in tuning.methods}, {}
    for r, lams in grid.items():
        lams = sorted(lams)
        if len(lams) < 2 or r not in chosen or chosen[r].lam != lams[-1]:
            continue
        new = float(f"{lams[-1] * lams[-1] / lams[-2]:.3g}")
        if f"{r} {new:g}" not in done:
            out[r] = (new,)
    return out


def merged_grid(grid: dict[str, Sequence[float]], extra: dict[str, Sequence[float]]) -> dict[str, tuple[float, ...]]:
    """``grid`` with the values of ``extra`` added, each grid sorted."""
    return {r: tuple(sorted(set(grid.get(r, ())) | set(extra.get(r, ())))) for r in {**grid, **extra}}


MAIN_NAMES = ("none", "trust", "dense", "anchor", "abrupt", "distill", "scratch", "gmp", "gmp-macs")


def main_view(tr: Traversal, chosen: dict[str, Method]) -> Traversal:
    """The run restricted to the main table's methods, renamed: each retention and ``distill``
    with its chosen λ (``"trust 3"`` becomes ``"trust"``), the traversal without retention and
    the baselines (those present)."""
    names = {"distill" if r == "distill" else r: m.name for r, m in chosen.items()}
    pick = [(n, names.get(n, n)) for n in MAIN_NAMES if names.get(n, n) in [m.name for m in tr.methods]]
    return tr.subset(pick)


def join(a: Traversal, b: Traversal) -> Traversal:
    """Two runs from the same dense replicas (same seeds, K and kind) as one: methods of ``b``
    after those of ``a``. Curves of different lengths are padded with NaN (a run that stopped
    earlier has no measurement there)."""
    if a.seeds != b.seeds or (a.K, a.kind) != (b.K, b.kind):
        raise ParameterError("join needs runs with the same seeds, K and kind")
    n = max(a.q.shape[1], b.q.shape[1])
    pad = lambda t: torch.cat([t, t.new_full(t.shape[:-1] + (n - t.shape[-1],), float("nan"))], -1)  # noqa: E731
    acc = {sp: {pt: torch.cat([pad(a.acc[sp][pt]), pad(b.acc[sp][pt])]) for pt in a.acc[sp]}
           for sp in a.acc if sp in b.acc}
    longer = a if a.q.shape[1] >= b.q.shape[1] else b
    return Traversal(a.methods + b.methods, a.seeds, torch.cat([pad(a.q), pad(b.q)]), longer.images, acc,
                     {sp: torch.cat([a.final[sp], b.final[sp]]) for sp in a.final if sp in b.final},
                     {k: torch.cat([a.params[k], b.params[k]]) for k in a.params}, a.K, a.kind,
                     {k: torch.cat([a.masks[k], b.masks[k]]) for k in a.masks if k in b.masks},
                     torch.cat([a.best_step, b.best_step]) if a.best_step is not None and b.best_step is not None else None,
                     a.schedule_steps)


@dataclass
class Traversal:
    """Accuracies along the path: ``acc[split][part]`` is (methods, seeds, steps) for each split
    given (``val``/``test``, on their first ``n_eval`` images; empty when run without curves) and
    part ``mixture``/``dense``/``sparse``; ``final[split]`` (methods, seeds) is the full-split accuracy of the network each
    method ends with (the sparse net, or the pruned dense net for ``gmp``)."""

    methods: list[Method]
    seeds: list[int]
    q: torch.Tensor
    images: list[int]
    acc: dict[str, dict[str, torch.Tensor]]
    final: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]
    K: int
    kind: str
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    best_step: torch.Tensor | None = None  # (methods, seeds): the step early stopping kept (1-based)
    schedule_steps: int = 0  # steps of the q schedule; the rest of ``q`` is the tail at the final q

    def index(self, name: str) -> int:
        return [m.name for m in self.methods].index(name)

    def net(self, name: str, seed_index: int = 0) -> nn.Module:
        """The network ``name`` ends with for one seed, as an ordinary module."""
        m = self.index(name)
        r = m * len(self.seeds) + seed_index
        part = "s." if bool(self.ends_sparse()[m]) else "d."
        net = sparse_net(self.K, self.kind) if part == "s." else _dense()
        net.load_state_dict({k[2:]: v[r] for k, v in self.params.items() if k.startswith(part)})
        return net.eval()

    def ends_sparse(self) -> torch.Tensor:
        """(methods,) True where a method ends with the sparse net (q = 1 at the schedule's end)."""
        return self.q[:, (self.schedule_steps or self.q.shape[1]) - 1] == 1

    def subset(self, pick: Sequence[tuple[str, str]]) -> Traversal:
        """Methods ``old`` renamed ``new`` for each ``(new, old)`` of ``pick``, in that order."""
        idx = [self.index(old) for _, old in pick]
        n_s = len(self.seeds)
        rows = torch.tensor([i * n_s + k for i in idx for k in range(n_s)])
        methods = [dataclasses.replace(self.methods[i], name=new) for (new, _), i in zip(pick, idx)]
        return Traversal(methods, self.seeds, self.q[idx], self.images,
                         {sp: {pt: a[idx] for pt, a in parts.items()} for sp, parts in self.acc.items()},
                         {sp: f[idx] for sp, f in self.final.items()},
                         {k: v[rows.to(v.device)] for k, v in self.params.items()}, self.K, self.kind,
                         {k: m[rows.to(m.device)] for k, m in self.masks.items()},
                         self.best_step[idx] if self.best_step is not None else None, self.schedule_steps)

    def first_seeds(self, n: int) -> Traversal:
        """The run restricted to its first ``n`` seeds (every method)."""
        n_s = len(self.seeds)
        n = check_int("n", n, 1, n_s)
        rows = torch.tensor([i * n_s + k for i in range(len(self.methods)) for k in range(n)])
        return Traversal(self.methods, self.seeds[:n], self.q, self.images,
                         {sp: {pt: a[:, :n] for pt, a in parts.items()} for sp, parts in self.acc.items()},
                         {sp: f[:, :n] for sp, f in self.final.items()},
                         {k: v[rows.to(v.device)] for k, v in self.params.items()}, self.K, self.kind,
                         {k: m[rows.to(m.device)] for k, m in self.masks.items()},
                         self.best_step[:, :n] if self.best_step is not None else None, self.schedule_steps)

    def as_dict(self) -> dict:
        return {"methods": [m.__dict__ for m in self.methods], "seeds": self.seeds, "q": self.q,
                "images": self.images, "final": self.final, "best_step": self.best_step,
                "schedule_steps": self.schedule_steps,
                "acc": self.acc, "K": self.K, "kind": self.kind}


def _dense() -> nn.Module:
    from xferutils.core.models import dense_net
    return dense_net()


def _span(rows: torch.Tensor) -> slice:
    """The smallest slice of replicas that holds every True entry of ``rows`` (empty if none)."""
    hit = torch.nonzero(rows).flatten()
    return slice(int(hit[0]), int(hit[-1]) + 1) if len(hit) else slice(0, 0)


def _part_order(q: torch.Tensor) -> list[int]:
    """Methods ordered so that the replicas whose dense net trains come first and those whose
    sparse net trains last: dense only (q = 0 throughout), both, sparse only (q = 1 throughout).
    A network that never trains is then skipped with a slice (a view, no copy)."""
    part = lambda i: 0 if bool((q[i] == 0).all()) else 2 if bool((q[i] == 1).all()) else 1  # noqa: E731
    return sorted(range(len(q)), key=part)


def traverse(dense: Replicas, methods: Sequence[Method], train: Split, evals: dict[str, Split], *,
             K: int = 10, kind: str = "softmax", steps: int = 5, batches: int = 10,
             batch_size: int = 256, lr: float = 1e-3, n_eval: int = 1000,
             curves: bool = True, tail: int = 0, patience: int = 3, stop: str = "val",
             mix_seed: int = 12345, each: bool = False) -> Traversal:
    """Run every method from each trained dense replica (one per seed), all as one vectorized model.

    ``evals`` maps split names (``"val"``, ``"test"``) to data: with ``curves``, both networks and
    the mixture are measured on their first ``n_eval`` images after every step (``acc``); the
    network each method ends with is always measured on all of it (``final``). A network whose
    share of the mixture stays 0 (the sparse net of ``gmp``) or whose partner's share stays 1 (the
    dense net of ``abrupt``, ``distill``, ``scratch``) gets no gradient: it is neither trained
    nor re-measured.

    Convergence: after the ``steps`` of the schedule, training goes on at the final ``q`` for at
    most ``tail`` more steps (a safeguard). From the last step of the schedule on, the network each
    method ends with is measured after every step on the first ``n_eval`` images of
    ``evals[stop]``; each replica keeps its best weights (early stopping), and training ends once
    every replica has gone ``patience`` steps without a better accuracy. ``best_step`` holds each
    replica's chosen step (1-based). With ``each``, every replica stops on its own once it has
    gone ``patience`` steps without a better accuracy, and leaves the computation (cheaper; with a
    noisy stopping split and a short patience it stops earlier, on noise, than the default rule,
    which trains every replica until all of them are stale). ``acc[split]["sampled"]`` is the mixture as document 002
    defines it: each image answered by the network a Bernoulli(q) draw picks (draws fixed by
    ``mix_seed``, the same for every method). In the tail only the final networks train and are
    measured: the other curves hold NaN there, and the other splits are not measured.
    """
    K, kind = check_k(K), check_choice("kind", kind, KINDS)
    steps, batches = check_int("steps", steps, 1), check_int("batches", batches, 1)
    bs, n_eval = check_int("batch_size", batch_size, 1, len(train)), check_int("n_eval", n_eval, 1)
    check_float("lr", lr, 0.0)
    tail, patience = check_int("tail", tail, 0), check_int("patience", patience, 1)
    if tail and stop not in evals:
        raise ParameterError(f"stop={stop!r} must name a split of evals ({sorted(evals)}) when tail > 0")
    given = list(methods)
    if not given:
        raise ParameterError("methods is empty; give at least one Method")
    q_given = torch.tensor([q_schedule(m.schedule, steps) for m in given])
    order = _part_order(q_given)
    methods = [given[i] for i in order]  # internal order; the results come back in the given one
    seeds, n_s, M = dense.seeds, len(dense.seeds), len(methods)
    R, dev = M * n_s, train.x.device
    per_r = lambda values: torch.tensor(values, device=dev, dtype=torch.float).repeat_interleave(n_s)  # noqa: E731
    q_given = torch.cat([q_given, q_given[:, -1:].repeat(1, tail)], 1)  # the tail stays at the end
    q_r = q_given[order].to(dev).repeat_interleave(n_s, 0)
    lam_kl = per_r([m.lam if m.retention in ("trust", "dense") else 0.0 for m in methods])
    lam_l2 = per_r([m.lam if m.retention == "anchor" else 0.0 for m in methods])
    # replicas whose dense net trains (a prefix) and whose sparse net trains (a suffix)
    on = {"d.": _span((q_r < 1).any(1)), "s.": _span((q_r > 0).any(1))}

    d_base, s_base = copy.deepcopy(dense.base), sparse_net(K, kind).to("meta")
    scratch = {nm: torch.stack([dict(m.named_parameters())[nm].detach() for m in
                                replicate(lambda: sparse_net(K, kind), seeds)]).to(dev)
               for nm in dense.params}
    rand = per_r([m.init == "random" for m in methods]) > 0
    params = {}
    for nm, t in dense.params.items():
        d0 = t.repeat((M,) + (1,) * (t.dim() - 1))
        params["d." + nm] = d0.clone()
        params["s." + nm] = torch.where(rand.view((R,) + (1,) * (t.dim() - 1)), scratch[nm].repeat(
            (M,) + (1,) * (t.dim() - 1)), d0)
    anchor = {k: v.clone() for k, v in params.items()}
    state = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in params.items()}
    prune = per_r([m.prune for m in methods])
    masks = {k: torch.ones_like(v) for k, v in params.items() if k.startswith("d.") and v.dim() == 3}
    retention = [m.retention for m in methods for _ in range(n_s)]

    def one(p: dict[str, torch.Tensor], x: torch.Tensor, prefix: str) -> torch.Tensor:
        base = d_base if prefix == "d." else s_base
        return functional_call(base, {k[2:]: v for k, v in p.items() if k.startswith(prefix)}, (x,))

    def logits(p: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return one(p, x, "d."), one(p, x, "s.")

    fwd = {pre: vmap(lambda p, x, pre=pre: one(p, x, pre)) for pre in on}

    def part_logits(work: dict[str, dict[str, torch.Tensor]], spans: dict[str, slice],
                    xb: torch.Tensor) -> list[torch.Tensor]:
        """Both networks' logits (active replicas, n, 10); zeros where a network does not train
        (its share of the mixture is 0 there, so they never count)."""
        out = []
        for pre in ("d.", "s."):
            lg = xb.new_zeros(xb.shape[0], xb.shape[1], 10)
            if pre in work:
                rows = spans[pre]
                lg = lg.index_copy(0, torch.arange(rows.start, rows.stop, device=dev),
                                   fwd[pre](work[pre], xb[rows]))
            out.append(lg)
        return out

    def l2_term(work: dict[str, dict[str, torch.Tensor]], spans: dict[str, slice], act: torch.Tensor,
                lam: torch.Tensor) -> torch.Tensor:
        """Σ_r λ_r · ½‖θ_r − θ_dense‖² over the active anchor replicas (:func:`l2_sp`, batched)."""
        total = torch.zeros((), device=dev)
        l2_rows = _span(lam > 0)
        for pre in work:
            rows = spans[pre]
            lo, hi = max(l2_rows.start, rows.start), min(l2_rows.stop, rows.stop)
            if lo >= hi:
                continue
            sq = sum(((v[lo - rows.start:hi - rows.start] - anchor[k][act[lo:hi]]) ** 2).flatten(1).sum(1)
                     for k, v in work[pre].items())
            total = total + (lam[lo:hi] * sq).sum() / 2
        return total

    gens = [torch.Generator().manual_seed(s) for s in seeds]
    rate = torch.tensor([float(lr)], device=dev)  # one rate for every replica
    total = steps + tail
    acc = ({sp: {pt: torch.full((M, n_s, total), math.nan) for pt in PARTS} for sp in evals} if curves else {})
    draws = {sp: torch.rand(min(n_eval, len(data)), generator=torch.Generator().manual_seed(mix_seed)).to(dev)
             for sp, data in evals.items()}  # the sampled mixture's coin per evaluation image
    ends_sparse = q_r[:, -1] == 1
    # early stopping as the trainer's (each replica keeps its best step), measured from the
    # schedule's last step on; without `each`, nobody stops until every replica is out of patience
    stopping = EarlyStopping(params, patience, together=not each) if tail else None
    stopped = stopping.done if stopping is not None else torch.zeros(R, dtype=torch.bool)
    ran = 0
    frozen = ({sp: _frozen_logits(params, on, one, data.x[:n_eval]) for sp, data in evals.items()}
              if curves else {})
    step_n, ramp = batches * bs, gmp_ramp(steps)
    stop_data = Split(evals[stop].x[:n_eval], evals[stop].y[:n_eval]) if tail else None
    for s in range(total):
        ran, in_tail = s + 1, s >= steps
        act = torch.nonzero(~stopped).flatten().to(dev)  # the replicas still training
        q_a = q_r[act]
        # during the schedule a network trains wherever its share is ever above 0; in the tail
        # only the network each method ends with trains
        spans = ({"d.": _span(q_a[:, s] < 1), "s.": _span(q_a[:, s] > 0)} if in_tail else
                 {"d.": _span((q_a < 1).any(1)), "s.": _span((q_a > 0).any(1))})
        spans = {pre: rows for pre, rows in spans.items() if rows.stop > rows.start}
        idx = torch.stack([torch.randperm(len(train), generator=g)[:step_n] for g in gens])
        u = torch.stack([torch.rand(step_n, generator=g) for g in gens])
        idx, u = idx.repeat(M, 1).to(dev)[act], u.repeat(M, 1).to(dev)[act]  # the same images for every method
        chosen = u < q_a[:, s:s + 1]
        q_prev = q_a[:, s - 1] if s > 0 else torch.zeros(len(act), device=dev)
        target = _targets([retention[r] for r in act.tolist()], act, n_s, params, anchor, train.x[idx],
                          q_prev, logits, one)
        _prune(masks, params, torch.where(stopped.to(dev), 0.0, prune), min(s + 1, ramp), ramp)
        q_s = q_a[:, s].view(-1, 1, 1)
        lam_kl_a, lam_l2_a = lam_kl[act], lam_l2[act]
        # the active replicas' weights and Adam moments, gathered once per step (a copy)
        rows_of = {pre: act[rows] for pre, rows in spans.items()}
        work = {pre: {k: v[rows_of[pre]].requires_grad_(True) for k, v in params.items() if k.startswith(pre)}
                for pre in spans}
        moments = {k: (state[k][0][rows_of[k[:2]]], state[k][1][rows_of[k[:2]]]) for pre in work for k in work[pre]}
        pruned = _span(prune[rows_of["d."]] > 0) if "d." in work else slice(0, 0)  # gmp: a prefix
        work_masks = {k: m[rows_of["d."][pruned]] for k, m in masks.items()} if pruned.stop > pruned.start else {}
        for b in range(batches):
            cols = slice(b * bs, (b + 1) * bs)
            ld, ls = part_logits(work, spans, train.x[idx[:, cols]])
            yb = train.y[idx[:, cols]]
            ce = F.cross_entropy(sampled_logits(ld, ls, chosen[:, cols]).flatten(0, 1), yb.flatten(),
                                 reduction="none").view(len(act), bs).mean(1)
            t = target[:, cols]
            kl = (torch.xlogy(t, t) - t * mixed_log_probs(ld, ls, q_s)).sum(-1).mean(-1)
            loss = (ce + lam_kl_a * kl).sum() + l2_term(work, spans, act, lam_l2_a)
            flat = [(k, v) for pre in work for k, v in work[pre].items()]
            grads = torch.autograd.grad(loss, [v for _, v in flat])
            with torch.no_grad():
                adam_([v for _, v in flat], list(grads), [moments[k][0] for k, _ in flat],
                      [moments[k][1] for k, _ in flat],
                      [torch.tensor(float(s * batches + b), dtype=torch.float64) for _ in flat],
                      [rate] * len(flat))  # the one Adam; each count is incremented there
                for k, mask in work_masks.items():
                    work["d."][k][pruned].mul_(mask)
        with torch.no_grad():  # back into the full set of replicas
            for pre in work:
                for k, v in work[pre].items():
                    params[k][rows_of[pre]] = v.detach()
                    state[k][0][rows_of[pre]], state[k][1][rows_of[pre]] = moments[k]
        del work, moments
        for sp, data in (evals.items() if curves and not in_tail else ()):
            ld, ls = _logits_now(params, on, one, data.x[:n_eval], frozen[sp])
            q_all = q_r[:, s].view(R, 1, 1)
            mix = mixed_log_probs(ld, ls, q_all)
            routed = sampled_logits(ld, ls, draws[sp] < q_all.view(R, 1))
            for pt, lg in (("dense", ld), ("sparse", ls), ("mixture", mix), ("sampled", routed)):
                hits = (lg.argmax(-1) == data.y[:n_eval]).float().mean(-1)
                acc[sp][pt][:, :, s] = hits.view(M, n_s).cpu()
        if s + 1 < steps or not tail:
            continue
        if curves and not in_tail:
            now = torch.where(ends_sparse.cpu(), acc[stop]["sparse"][:, :, s].flatten(),
                              acc[stop]["dense"][:, :, s].flatten()).to(dev)
        else:  # in the tail only the final network of each active replica is measured
            now = torch.full((R,), math.nan, device=dev)
            now[act] = _final_accuracy(params, ends_sparse, one, stop_data, rows=act)
            if curves:
                mine = now.view(M, n_s).cpu()
                for pt in ("mixture", "sampled"):
                    acc[stop][pt][:, :, s] = mine
                sp_rows = ends_sparse.view(M, n_s).cpu()
                acc[stop]["sparse"][:, :, s] = torch.where(sp_rows, mine, math.nan)
                acc[stop]["dense"][:, :, s] = torch.where(sp_rows, math.nan, mine)
        stopping.update(s + 1, torch.arange(R), now, params)
        if stopping.finished:
            break
    if stopping is not None:  # early stopping: each replica goes back to its best step
        with torch.no_grad():
            for k, v in params.items():
                v.copy_(stopping.best[k])
        best_at = stopping.at
    else:
        best_at = torch.full((R,), ran, dtype=torch.long)
    q_given = q_given[:, :ran]
    acc = {sp: {pt: a[:, :, :ran] for pt, a in parts.items()} for sp, parts in acc.items()}
    final = {sp: _final_accuracy(params, ends_sparse, one, data).view(M, n_s)
             for sp, data in evals.items()}
    # back to the given order of methods
    back = [order.index(j) for j in range(M)]
    rows = torch.tensor([i * n_s + k for i in back for k in range(n_s)], device=dev)
    acc = {sp: {pt: a[back] for pt, a in parts.items()} for sp, parts in acc.items()}
    final = {sp: f[back].cpu() for sp, f in final.items()}
    return Traversal(given, list(seeds), q_given, [step_n * (s + 1) for s in range(ran)], acc,
                     final, {k: v[rows] for k, v in params.items()}, K, kind,
                     {k: m[rows] for k, m in masks.items()},
                     best_step=best_at.view(M, n_s)[back].clone(), schedule_steps=steps)


@functools.cache
def _template() -> nn.Module:
    """The chapter's dense network on the ``meta`` device (no weights): one module for the whole
    run, so :func:`~xferutils.core.ensemble.activation_floats` measures its activations once."""
    return _dense().to("meta")


def _eval_rows(replicas: int, in_features: int, device: str) -> int:
    """Rows per evaluation chunk for ``replicas`` copies of the chapter's networks (the dense and
    the sparse net write as many activations): :func:`~xferutils.core.ensemble.eval_rows`."""
    return eval_rows(_template(), replicas, in_features, device)


def _part_eval(params: dict, prefix: str, rows: slice, one: Callable, x: torch.Tensor) -> torch.Tensor:
    """Logits (replicas in ``rows``, n, 10) of one network (``prefix``) on shared inputs, in chunks."""
    sub = {k: v[rows] for k, v in params.items() if k.startswith(prefix)}
    chunk = _eval_rows(rows.stop - rows.start, x.shape[-1], x.device.type)
    call = vmap(lambda p, xx: one(p, xx, prefix), in_dims=(0, None))
    return torch.cat([call(sub, x[i:i + chunk]) for i in range(0, len(x), chunk)], 1)


def _frozen_logits(params: dict, on: dict[str, slice], one: Callable, x: torch.Tensor) -> dict:
    """Logits of the networks that never train (outside ``on``), measured once at the start."""
    R = next(iter(params.values())).shape[0]
    out = {}
    for pre, rows in on.items():
        rest = torch.ones(R, dtype=torch.bool)
        rest[rows] = False
        out[pre] = (rest, _part_eval(params, pre, _span(rest), one, x) if rest.any() else None)
    return out


def _logits_now(params: dict, on: dict[str, slice], one: Callable, x: torch.Tensor,
                frozen: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Both networks' logits for every replica: measured where the network trains, else the
    logits measured at the start."""
    R = next(iter(params.values())).shape[0]
    out = []
    for pre, rows in on.items():
        lg = torch.empty(R, len(x), 10, device=x.device)
        rest, start = frozen[pre]
        if rows.stop > rows.start:
            lg[rows] = _part_eval(params, pre, rows, one, x)
        if start is not None:
            lg[_span(rest)] = start
        out.append(lg)
    return out[0], out[1]


@torch.no_grad()
def _final_accuracy(params: dict, ends_sparse: torch.Tensor, one: Callable, data: Split,
                    rows: torch.Tensor | None = None) -> torch.Tensor:
    """Accuracy of the network each replica ends with (only that network is evaluated); with
    ``rows``, of those replicas only (in that order)."""
    rows = torch.arange(len(ends_sparse), device=ends_sparse.device) if rows is None else rows
    out = torch.zeros(len(rows), device=data.x.device)
    sparse_end = ends_sparse[rows]
    for prefix, at in (("s.", torch.nonzero(sparse_end).flatten()), ("d.", torch.nonzero(~sparse_end).flatten())):
        if len(at) == 0:
            continue
        sub = {k: v[rows[at]] for k, v in params.items() if k.startswith(prefix)}
        chunk = _eval_rows(len(at), data.x.shape[-1], data.x.device.type)
        call = vmap(lambda p, x, pre=prefix: one(p, x, pre), in_dims=(0, None))
        hits = sum((call(sub, data.x[i:i + chunk]).argmax(-1) == data.y[i:i + chunk]).sum(-1)
                   for i in range(0, len(data), chunk))
        out[at] = hits.float() / len(data)
    return out


@torch.no_grad()
def _targets(kinds: Sequence[str], rows: torch.Tensor, n_s: int, params: dict, anchor: dict, x: torch.Tensor,
             q_prev: torch.Tensor, logits: Callable, one: Callable) -> torch.Tensor:
    """Teacher probabilities for the replicas ``rows`` (retention ``kinds[i]`` for ``rows[i]``;
    ``x`` and ``q_prev`` are theirs): the previous mixture (trust) or the original dense net
    (dense); uniform (unused) otherwise."""
    out = torch.full(x.shape[:2] + (10,), 0.1, device=x.device)
    at = {kind: torch.tensor([i for i, k in enumerate(kinds) if k == kind], dtype=torch.long, device=x.device)
          for kind in ("trust", "dense")}
    if len(at["trust"]):
        r, g = at["trust"], rows[at["trust"]]
        if bool((q_prev[r] == 1).all()):  # the last step's mixture was the sparse net alone
            sub = {k: v[g] for k, v in params.items() if k.startswith("s.")}
            out[r] = vmap(lambda p, xx: one(p, xx, "s."))(sub, x[r]).softmax(-1)
        else:
            ld, ls = vmap(logits)({k: v[g] for k, v in params.items()}, x[r])
            out[r] = mixed_log_probs(ld, ls, q_prev[r].view(-1, 1, 1)).exp()
    if len(at["dense"]):  # each seed's original dense net, the same for every method: once per seed
        r = at["dense"]
        seed = rows[r] % n_s  # replica m·n_s + i belongs to seed i; the images are the seed's
        uniq, inv = torch.unique(seed, return_inverse=True)
        first = torch.stack([r[(seed == u).nonzero()[0, 0]] for u in uniq])
        start = {k: v[uniq] for k, v in anchor.items() if k.startswith("d.")}
        probs = vmap(lambda p, xx: one(p, xx, "d."))(start, x[first]).softmax(-1)
        out[r] = probs[inv]
    return out


@torch.no_grad()
def _prune(masks: dict, params: dict, prune: torch.Tensor, step: int, steps: int) -> None:
    """Set each gmp replica's smallest-magnitude weights to zero, to this step's cubic sparsity
    (replicas with the same number of weights to zero are done together, one ``kthvalue``)."""
    rows = torch.nonzero(prune > 0).flatten().tolist()
    for k, mask in masks.items():
        numel = params[k][0].numel()
        groups: dict[int, list[int]] = {}
        for r in rows:
            groups.setdefault(int(prune_fraction(float(prune[r]), step, steps) * numel), []).append(r)
        for n_zero, rs in groups.items():
            at = torch.tensor(rs, device=mask.device)
            w = params[k][at]
            if n_zero:
                cut = w.abs().flatten(1).kthvalue(n_zero, dim=1).values
                mask[at] = (w.abs() > cut.view((-1,) + (1,) * (w.dim() - 1))).to(mask.dtype)
            params[k][at] = w * mask[at]


def _prune_loop(masks: dict, params: dict, prune: torch.Tensor, step: int, steps: int) -> None:
    """The replica-by-replica version of :func:`_prune` (kept as the tests' reference)."""
    with torch.no_grad():
        for r in torch.nonzero(prune > 0).flatten().tolist():
            frac = prune_fraction(float(prune[r]), step, steps)
            for k, mask in masks.items():
                w = params[k][r].abs().flatten()
                n_zero = int(frac * w.numel())
                if n_zero:
                    mask[r] = (params[k][r].abs() > w.kthvalue(n_zero).values).float()
                params[k][r].mul_(mask[r])


# --- choices, claims, table and figures (chapter 6's builders) ----------------------------------

def choose(tr: Traversal, retention: str, schedule: str) -> Method:
    """The λ of ``retention`` on ``schedule`` chosen on the validation split by the
    one-standard-error rule (:func:`xferutils.core.metrics.one_se`, as chapter 3 chooses its
    knobs): among the λ whose final validation accuracy, averaged over the seeds, lies within one
    standard error of the best, the smallest. A larger λ must earn its place above the noise."""
    options = [i for i, m in enumerate(tr.methods) if m.retention == retention and m.schedule == schedule]
    if not options:
        raise ParameterError(f"no method with retention={retention!r} and schedule={schedule!r}")
    pick = one_se({i: tr.final["val"][i].tolist() for i in options}, lambda i: tr.methods[i].lam)
    return tr.methods[pick]


def _val_accuracy(tuning: Traversal) -> dict[str, float]:
    return {m.name: 100 * float(tuning.final["val"][i].mean()) for i, m in enumerate(tuning.methods)}


def tuning_table(tuning: Traversal, chosen: dict[str, Method],
                 grid: dict[str, Sequence[float]] = GRID) -> str:
    """Markdown: per grid, each λ with its validation accuracy (%), the chosen one in bold."""
    from xferutils.pages.plotting import markdown_table

    val, rows = _val_accuracy(tuning), []
    for r, lams in grid.items():
        cells = [f"{tidy(f'{lam:g}')}: {val[f'{r} {lam:g}']:.1f}" for lam in lams]  # 10⁻⁵, not 1e-05
        cells = [f"**{c}**" if lam == chosen[r].lam else c for c, lam in zip(cells, lams)]
        rows.append([LABELS[r], ", ".join(cells), tidy(f"{chosen[r].lam:g}")])
    rows.append([LABELS["none"], f"{val['none']:.1f}", "–"])
    return markdown_table(["method", "λ: validation accuracy (%)", "chosen λ"], rows, "lll")


def edge_note(tuning: Traversal, chosen: dict[str, Method], grid: dict[str, Sequence[float]] = GRID,
              flat: float = 1.0) -> str:
    """One sentence on the choices at an end of their grid, decided by the numbers. At the small
    end the edge is natural: λ → 0 is the method without the term (``none``, or ``abrupt`` for
    distillation), whose validation accuracy is quoted beside it (``abrupt`` was not tuned: the
    table of final networks shows it). At the large end, the sentence says whether the validation
    accuracy over the grid is flat (spans at most ``flat`` points) or the grid should be extended."""
    val, parts = _val_accuracy(tuning), []
    for r, lams in grid.items():
        lam = chosen[r].lam
        if lam not in (min(lams), max(lams)) or len(lams) < 2:
            continue
        here = f"{r} chose its {'smallest' if lam == min(lams) else 'largest'} λ ({lam:g}, {val[f'{r} {lam:g}']:.1f} %"
        if lam == min(lams):
            zero = "abrupt" if r == "distill" else "none"
            known = f", against {val[zero]:.1f} % for {zero}" if zero in val else ""
            parts.append(f"{here}{known}; λ → 0 is {zero}, in the main table)")
        else:
            accs = [val[f"{r} {x:g}"] for x in lams]
            span = max(accs) - min(accs)
            parts.append(f"{here}; the grid spans {span:.1f} points, " + (
                f"flat within {flat:g} point)" if span <= flat else "so it should be extended upward)"))
    if not parts:
        return "Every λ was chosen inside its grid."
    return "At an end of its grid (validation accuracy): " + "; ".join(parts) + "."


def target_curve(tr: Traversal, split: str = "test") -> torch.Tensor:
    """(methods, seeds, steps): accuracy of the network each method ends with, after every step."""
    ends_sparse = tr.ends_sparse().view(-1, 1, 1)
    return torch.where(ends_sparse, tr.acc[split]["sparse"], tr.acc[split]["dense"])


def kept_curve(tr: Traversal, split: str = "val") -> torch.Tensor:
    """:func:`target_curve` with each network that stopped before the run ended held at the
    accuracy of the weights it kept (its best step) after its last measurement: what the
    method would end with at that point. Steps before its first measurement stay NaN."""
    y = target_curve(tr, split).clone()
    if tr.best_step is None:
        return y
    seen = ~torch.isnan(y)
    last = torch.where(seen, torch.arange(y.shape[-1]), -1).max(-1).values  # (methods, seeds)
    kept = y.gather(-1, (tr.best_step - 1).clamp(min=0).unsqueeze(-1))
    after = torch.arange(y.shape[-1]) > last.unsqueeze(-1)
    return torch.where(after & (last >= 0).unsqueeze(-1), kept, y)


def stopping(tr: Traversal, patience: int, cap: int) -> dict[str, list[bool]]:
    """Per method, for each seed: True where the network was still improving when the run
    reached its ``cap`` (total steps): its best step lies less than ``patience`` steps before
    the cap, so early stopping did not end it."""
    return {m.name: (tr.best_step[i] + patience > cap).tolist() for i, m in enumerate(tr.methods)}


def stopping_words(tr: Traversal, patience: int, cap: int) -> str:
    """One sentence, decided by the numbers: which methods had networks stopped by the cap of
    ``cap`` steps rather than by early stopping (not shown to have converged)."""
    hit = {n: sum(v) for n, v in stopping(tr, patience, cap).items() if any(v)}
    n_s = len(tr.seeds)
    if not hit:
        return f"every network stopped on its own, before the cap of {cap} steps"
    parts = "; ".join(f"{LABELS.get(n, n)}: {k} of {n_s} seeds" for n, k in hit.items())
    return (f"the cap of {cap} steps, not early stopping, ended some networks while their validation "
            f"accuracy was still rising ({parts}): those are not shown to have converged within this "
            "budget, and their curves in the figure show how far from a plateau they stopped")


def worst_along_path(tr: Traversal, split: str = "test", part: str = "mixture") -> torch.Tensor:
    """(methods, seeds): the lowest accuracy of ``part`` over the steps (``mixture``: in
    expectation; ``sampled``: routed by Bernoulli draws); steps a run did not reach are skipped."""
    a = tr.acc[split][check_choice("part", part, PARTS)]
    return torch.nan_to_num(a, nan=math.inf).min(-1).values


def register_claims(family, tr: Traversal, dense_test: Sequence[float], tol: float = 0.01,
                    main: str = "trust") -> None:
    """Chapter 6's claims: seed 002's hopes ("002-...") and the book's comparisons ("ch6-..."),
    for the traversal method ``main``."""
    dense = torch.tensor(list(dense_test))
    fin = {m.name: tr.final["test"][i] for i, m in enumerate(tr.methods)}
    worst = worst_along_path(tr, part="sampled")[tr.index(main)]
    family.threshold("002-accuracy-sustained", "document 002", f"along the {main} traversal, the "
                     "sampled mixture's test accuracy (each image answered by the network a "
                     "Bernoulli(q) draw picks) never falls more than 1 point below the dense net's",
                     (worst - dense) * 100, -100 * tol, unit="points")
    family.threshold("002-sparse-useful", "document 002", f"the sparse net at the end of the {main} "
                     "traversal is within 1 point of the dense net", (fin[main] - dense) * 100,
                     -100 * tol, unit="points")
    same = " (same images, same batches)"
    if main != "none":
        family.direction("002-beats-other-traversals", "document 002", f"optimal retention ({main}) "
                         "beats other traversal strategies: it ends with a more accurate sparse "
                         "net than the same traversal without retention (none)" + same,
                         fin[main] * 100, fin["none"] * 100, unit="points")
    family.direction("002-sparse-from-prefit", "document 002", "transfer from a prefit model, as "
                     "recommended: the abrupt switch from the dense weights ends with a more "
                     "accurate sparse net than the same training from scratch" + same,
                     fin["abrupt"] * 100, fin["scratch"] * 100, unit="points")
    pairs = [(f"ch6-{main}-vs-{b}", main, b) for b in ("abrupt", "distill", "gmp", "gmp-macs")
             if b != main and b in fin]
    pairs += [("ch6-gradual-vs-abrupt", "none", "abrupt")] if main != "none" else []
    for cid, a, b in pairs:
        family.direction(cid, "book", f"{a} ends with a more accurate network than {b}" + same,
                         fin[a] * 100, fin[b] * 100, unit="points")


def claim_id(main: str, other: str) -> str:
    """The id of the claim comparing the traversal ``main`` with ``other`` (chapter 6)."""
    return "002-beats-other-traversals" if other == "none" else f"ch6-{main}-vs-{other}"


def final_table(tr: Traversal, dense_test: Sequence[float]) -> str:
    """Markdown: every method's final test accuracy, worst mixture accuracy, and λ."""
    from xferutils.core.metrics import spread
    from xferutils.pages.plotting import markdown_table

    worst, drawn = worst_along_path(tr), worst_along_path(tr, part="sampled")
    rows = [["dense net (reference, start of the path)", "–", spread(dense_test).fmt(), "–", "–"]]
    for i, m in enumerate(tr.methods):
        path = 0 < tr.q[i, 0] < 1
        on_path = [spread(w[i].tolist()).fmt() if path else "–" for w in (drawn, worst)]
        lam = tidy(f"{m.lam:g}") if m.retention != "none" else "–"
        name = LABELS.get(m.name, m.name) + (f" ({100 * m.prune:.0f} % of weights zero)" if m.prune else "")
        rows.append([name, lam, spread(tr.final["test"][i].tolist()).fmt(), *on_path])
    return markdown_table(["method", "λ", "final test accuracy (%)", "worst on the path: sampled (%)",
                           "expected (%)"], rows, "lrrrr")


def baseline_values(train: Split, test: Split, seed: int = 0) -> dict[str, float]:
    """The trivial baselines on ``train`` (every training image), scored on ``test`` (%): pixel
    logistic regression and nearest class prototypes of the pixels (:mod:`xferutils.core.baselines`).
    Neither depends on the network's seed: the images are the same for every seed."""
    from xferutils.core import baselines as bl

    return {"pixels": 100 * bl.pixel_logistic(train, test, seed=seed),
            "prototypes": 100 * bl.prototype_accuracy(train, test)}


def method_table(tr: Traversal, dense_test: Sequence[float], base: dict[str, float]) -> str:
    """:func:`final_table` with the trivial baselines (same training images) as its last rows."""
    from xferutils.core.baselines import NAMES

    extra = "".join(f"\n| baseline: {NAMES[k]} | – | {v:.2f} | – | – |" for k, v in base.items())
    return final_table(tr, dense_test) + extra


def references_list(tr: Traversal, dense_test: Sequence[float],
                    dense_source: str = "the book's target for this network on all training images") -> list[dict]:
    """The results file's ``references``: the dense net against its expected level, and gradual
    magnitude pruning (each pruned run) against Han et al.'s "no loss" (the dense net's mean
    less :data:`PUBLISHED` ``gmp_margin``)."""
    dense = [100 * float(v) for v in dense_test]
    out = [{"name": "dense net 784-512-256-128-10 (chapter 1's recipe, all training images)",
            "measured": dense, "target": PUBLISHED["dense_target"], "source": dense_source}]
    mean = sum(dense) / len(dense)
    for i, m in enumerate(tr.methods):
        if m.prune:
            out.append({"name": f"gradual magnitude pruning, {100 * m.prune:.0f} % of weights zero",
                        "measured": [100 * float(v) for v in tr.final["test"][i]],
                        "target": mean - PUBLISHED["gmp_margin"],
                        "source": "Han et al. 2015 (LeNet-300-100 at 8 % of its weights without loss), "
                                  "Zhu & Gupta 2017 (cubic schedule); issue 19: within 0.5 points of the dense net"})
    return out


def baselines_list(base: dict[str, float], n_train: int, n_seeds: int) -> list[dict]:
    """The results file's ``baselines``: one entry per trivial baseline; ``measured`` repeats its
    one value per seed (the same images for every seed)."""
    from xferutils.core.baselines import rows

    return rows(f"all {n_train:,} training images, full test set", {k: [v] * n_seeds for k, v in base.items()})


def k_sweep(dense: Replicas, main: Traversal, name: str, Ks: Sequence[int], train: Split,
            evals: dict[str, Split], **knobs) -> dict[int, Traversal]:
    """The method ``name`` of the ``main`` run at every K of ``Ks``, from the first
    ``len(dense.seeds)`` of its seeds: the same images, batches and λ, and as many steps as the
    main run took, each network keeping its best step (no earlier stop: when networks stop
    together, how long they train would otherwise depend on which others train beside them).
    The main run's own K is the main run's networks (:meth:`Traversal.first_seeds`)."""
    if not Ks:
        raise ParameterError("Ks is empty; give at least one K")
    method, n = main.methods[main.index(name)], len(dense.seeds)
    if list(main.seeds[:n]) != list(dense.seeds):
        raise ParameterError(f"dense has seeds {list(dense.seeds)}; give the main run's first {n} ({main.seeds[:n]})")
    tail = len(main.images) - main.schedule_steps  # the steps the main run trained after its schedule
    knobs = {**{k: v for k, v in knobs.items() if k != "K"}, "kind": main.kind, "steps": main.schedule_steps,
             "tail": tail, "patience": tail + 1, "curves": True}
    return {int(K): main.subset([(name, name)]).first_seeds(n) if int(K) == main.K else
            traverse(dense, [method], train, evals, K=check_k(K), **knobs) for K in Ks}


def k_table(runs: dict[int, Traversal], x: torch.Tensor) -> str:
    """Markdown: per K, active units per hidden layer, multiply-adds per image (% of the dense
    net's, measured on ``x``), and the final test accuracy (%, mean ± std over seeds)."""
    from xferutils.core.metrics import spread
    from xferutils.pages.plotting import markdown_table
    from xferutils.core.sparse import multiply_adds

    rows = []
    for K, tr in sorted(runs.items()):
        net = tr.net(tr.methods[0].name, 0)
        macs = multiply_adds(net, x)
        rows.append([K, K - 1, f"{100 * macs['sparse'] / macs['dense']:.1f}",
                     spread(tr.final["test"][0].tolist()).fmt(),
                     f"{float(tr.best_step[0].float().mean()):.0f}"])
    return markdown_table(["K", "active units per layer", "multiply-adds (% of dense)",
                           "final test accuracy (%)", "steps kept (mean)"], rows, "rrrrr")


def traversal_figure(tr: Traversal, names: Sequence[str] | None = None, split: str = "val"):
    """Left: mixture test accuracy against q per traversal method, in expectation (solid) and
    sampled (dotted), mean ± std over seeds. Right: the ``split`` accuracy of the network each
    method ends with against training images seen: the curve early stopping reads; the dashed
    line marks the end of the q schedule, the dots each method's mean stopping point."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.0, 4.0))  # legible at the page width
    images = np.array(tr.images) / 1000
    stop = tr.best_step.float().mean(1).numpy() if tr.best_step is not None else None
    for i, m in enumerate(tr.methods):
        if names is not None and m.name not in names:
            continue
        if 0 < tr.q[i, 0] < 1:
            sched = slice(0, tr.schedule_steps or tr.q.shape[1])
            color = None  # the mixture's line picks a colour; the sampled mixture's line reuses it
            for part, style in (("mixture", "-"), ("sampled", ":")):
                y = 100 * tr.acc["test"][part][i][:, sched].numpy()
                line, = ax1.plot(tr.q[i, sched].numpy(), np.nanmean(y, 0), style, marker="o", ms=3,
                                 label=m.name if part == "mixture" else None, color=color)
                color = line.get_color()
                ax1.fill_between(tr.q[i, sched].numpy(), np.nanmean(y, 0) - np.nanstd(y, 0),
                                 np.nanmean(y, 0) + np.nanstd(y, 0), alpha=0.15, color=color)
        y = 100 * kept_curve(tr, split)[i].numpy()
        mean = np.nanmean(y, 0)
        line, = ax2.plot(images, mean, label=m.name, lw=1.2)
        if stop is not None:
            k = int(round(stop[i])) - 1
            ax2.plot(images[k], mean[k], "o", color=line.get_color(), ms=4)
    if tr.schedule_steps:
        ax2.axvline(images[tr.schedule_steps - 1], color="#888", ls="--", lw=1)
    ax1.set(xlabel="mixture weight q (sparse net's share)", ylabel="mixture test accuracy (%)")
    ax2.set(xlabel="training images seen (thousands)", ylabel=f"final network's {split} accuracy (%)")
    lo = np.nanpercentile(100 * kept_curve(tr, split).numpy(), 5)
    ax2.set_ylim(max(lo - 1, 0), None)
    ax1.legend(fontsize=8, loc="lower left")
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=5,
               columnspacing=0.8, handlelength=1.2)  # below the panel: the curves fill it
    fig.tight_layout()
    return fig


def mixture_diagram():
    """The chapter's construction: an input routed to the dense net with probability 1 − q and to
    the sparse net with probability q; in expectation the output is (1 − q)·p₁ + q·p₂."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.set(xlim=(0, 10), ylim=(0, 4))
    ax.axis("off")
    boxes = {"x": (0.3, 1.6, "image x\n(784 pixels)"),
             "coin": (2.4, 1.6, "Bernoulli(q)\nswitch"),
             "dense": (4.8, 2.7, "dense net\n784-512-256-128-10, ReLU"),
             "sparse": (4.8, 0.5, "sparse net, same layers\nat most K−1 active units"),
             "out": (8.1, 1.6, "class\nprobabilities")}
    for x, y, text in boxes.values():
        ax.add_patch(FancyBboxPatch((x, y), 1.75 if text.startswith(("image", "class", "Bern")) else 2.9,
                                    0.85, boxstyle="round,pad=0.05", fc="#eef3fb", ec="#1f77b4"))
        ax.text(x + (0.87 if text.startswith(("image", "class", "Bern")) else 1.45), y + 0.42, text,
                ha="center", va="center", fontsize=9)
    arrow = dict(arrowstyle="->", color="#444")
    ax.annotate("", (2.4, 2.02), (2.1, 2.02), arrowprops=arrow)
    ax.annotate("", (4.8, 3.1), (4.2, 2.3), arrowprops=arrow)
    ax.annotate("", (4.8, 0.9), (4.2, 1.7), arrowprops=arrow)
    ax.text(4.05, 2.85, "1 − q", fontsize=10, ha="right")
    ax.text(4.05, 1.0, "q", fontsize=10, ha="right")
    ax.annotate("", (8.1, 2.2), (7.75, 3.1), arrowprops=arrow)
    ax.annotate("", (8.1, 1.8), (7.75, 0.9), arrowprops=arrow)
    ax.text(5.0, 0.0, "in expectation: p(y | x) = (1 − q)·p_dense(y | x) + q·p_sparse(y | x)",
            fontsize=9, ha="center")
    return fig


QUESTIONS = (  # chapter 6's research questions, declared before any data (xferutils.pages.claims)
    Question("ch6-hopes", "Does document 002's traversal sustain accuracy and end with a useful sparse net?",
             claims=("002-accuracy-sustained", "002-sparse-useful")),
    Question("ch6-traversals", "At the same images and batches, which way to a sparse net ends best?",
             claims=("002-beats-other-traversals", "002-sparse-from-prefit", "ch6-*")),
)


def verdict_table(verdicts: dict) -> str:
    """Markdown: every claim of the chapter with its evidence and verdict (the book's claims table)."""
    return claims_table(verdicts.values())


def summary_values(tr: Traversal, dense_test: Sequence[float], main: str = "trust") -> dict[str, object]:
    """The numbers chapter 6's prose quotes (percent): the main traversal's final accuracy, its
    spread and drop below the dense net, its worst mixture accuracy on the path, and the final
    accuracies of ``scratch``, ``gmp``, ``abrupt``, ``none`` and ``gmp-macs`` (those present),
    the pruned runs' sparsity and spread, and the main traversal's stopping steps."""
    from xferutils.core.metrics import spread

    fin = {m.name: spread(tr.final["test"][i].tolist()) for i, m in enumerate(tr.methods)}
    out: dict[str, object] = {
        "main": main, "main_acc": 100 * fin[main].mean, "main_std": 100 * fin[main].std,
        "drop": 100 * (spread(dense_test).mean - fin[main].mean),
        "worst": 100 * float(worst_along_path(tr)[tr.index(main)].mean()),
        "worst_sampled": 100 * float(worst_along_path(tr, part="sampled")[tr.index(main)].mean())}
    out.update({f"{b.replace('-', '_')}_acc": 100 * fin[b].mean
                for b in ("scratch", "gmp", "abrupt", "none", "gmp-macs") if b in fin})
    out.update({f"{b.replace('-', '_')}_std": 100 * fin[b].std for b in ("gmp", "gmp-macs") if b in fin})
    for b in ("gmp", "gmp-macs"):
        if b in fin:
            out[f"{b.replace('-', '_')}_sparsity"] = 100 * tr.methods[tr.index(b)].prune
            out[f"{b.replace('-', '_')}_kept"] = 100 - 100 * tr.methods[tr.index(b)].prune
    if tr.best_step is not None:
        steps = tr.best_step[tr.index(main)].float()
        out.update({"main_stop_min": int(steps.min()), "main_stop_max": int(steps.max()),
                    "steps_run": tr.q.shape[1], "schedule_steps": tr.schedule_steps})
    drop = float(out["drop"])
    out["drop_words"] = f"loses {drop:.2f} points" if drop >= 0 else f"gains {-drop:.2f} points"
    return out


def verdict_words(verdicts: dict, main: str = "trust") -> dict[str, str]:
    """The words chapter 6's prose takes from the verdicts, so that no sentence can contradict
    them: ``says_<id>`` (the verdict's label) for every claim, ``vs_<method>`` ("beats B (…)",
    "is not shown to differ from B (…)", …) for the main traversal against ``none``, ``abrupt``,
    ``distill`` and ``gmp``, ``gradual`` (no retention against the abrupt switch) and ``start``
    (the abrupt switch against the sparse net from scratch)."""
    names = {"none": "the same traversal without retention", "abrupt": "the abrupt switch",
             "distill": "direct distillation", "gmp": "gradual magnitude pruning",
             "gmp-macs": "gradual magnitude pruning at equal multiply-adds"}
    out = {f"says_{v.id}": v.label for v in verdicts.values()}
    for b in ("none", "abrupt", "distill", "gmp", "gmp-macs"):
        if b != main and claim_id(main, b) not in verdicts:
            continue
        out[f"vs_{b.replace('-', '_')}"] = (f"is {names[b]}" if b == main else
                          compare(verdicts[claim_id(main, b)], "", names[b]).strip())
    if "ch6-gradual-vs-abrupt" in verdicts:
        out["gradual"] = compare(verdicts["ch6-gradual-vs-abrupt"], "", names["abrupt"]).strip()
    else:  # the main traversal is the one without retention: the comparison is vs_abrupt
        out["gradual"] = out["vs_abrupt"]
    out["start"] = compare(verdicts["002-sparse-from-prefit"], "", "it").strip()
    return out


def reference_words(tr: Traversal, dense_test: Sequence[float], base: dict[str, float]) -> dict[str, str]:
    """Phrases for chapter 6's prose, decided by the numbers: ``dense_words`` (the dense net's
    mean against :data:`PUBLISHED` ``dense_target``), ``gmp_words`` (gradual magnitude pruning's
    mean against the dense mean less ``gmp_margin``) and ``base_words`` (which methods' final
    networks fall below the best trivial baseline, by mean test accuracy)."""
    from xferutils.core.baselines import NAMES

    dense = 100 * sum(float(v) for v in dense_test) / len(dense_test)
    target = PUBLISHED["dense_target"]
    out = {"dense_words": (f"which it reaches (mean {dense:.2f} %)" if dense >= target else
                           f"which it misses by {target - dense:.2f} points")}
    if "gmp" in [m.name for m in tr.methods]:
        gap = dense - 100 * float(tr.final["test"][tr.index("gmp")].mean())
        margin = PUBLISHED["gmp_margin"]
        out["gmp_words"] = (f"within {margin:g} point of the dense net ({gap:.2f} points below it): the published level"
                            if gap <= margin else
                            f"{gap:.2f} points below the dense net: short of the published level")
    best_name = max(base, key=base.get)
    below = [LABELS.get(m.name, m.name) for i, m in enumerate(tr.methods)
             if 100 * float(tr.final["test"][i].mean()) < base[best_name]]
    out["base_words"] = ("every method's final network is above both" if not below else
                         f"below {NAMES[best_name]}: " + "; ".join(below))
    return out


def survival_table(dense_state: dict, x: torch.Tensor, y: torch.Tensor, Ks: Sequence[int],
                   kinds: Sequence[str] = KINDS) -> str:
    """Markdown: a trained dense net's weights in the sparse net, per K and kind: active units
    per layer (%), test accuracy (%), and the gradient norm that reaches the first layer."""
    from xferutils.pages.plotting import markdown_table

    rows = []
    for kind in kinds:
        for K in Ks:
            net = sparse_net(K, kind)
            net.load_state_dict(dense_state)
            logits = net(x)
            nn.functional.cross_entropy(logits, y).backward()
            active = " / ".join(f"{100 * a:.2f}" for a in active_fraction(net, x))
            acc = 100 * (logits.argmax(1) == y).float().mean().item()
            grad = net.linears()[0].weight.grad.norm().item()
            rows.append([kind, K, active, f"{acc:.1f}", tidy(f"{grad:.2g}")])  # 7 × 10⁻⁷, not 7e-07
    return markdown_table(["activation", "K", "active units per layer (%)", "accuracy (%)",
                           "gradient norm, first layer"], rows, "lrrrr")
