"""One training step of K stacked replicas as a single unit, ready for CUDA graphs (every chapter).

:func:`xferutils.core.ensemble.fit_replicas` has two engines with one contract:

* ``"eager"`` — the reference: a Python loop over the parameters, one Adam update each (the
  CPU default; its numbers are the book's).
* ``"fused"`` / ``"graph"`` — :class:`ReplicaStep`: the forward pass, the backward pass and a
  the book's one Adam (:func:`xferutils.core.optim.adam_`, all of its quantities on the device) of all replicas in one function whose inputs live
  in static buffers: the batch indices are copied into one index buffer, the learning rates
  (per replica, per parameter, times the schedule's factor) are tensors refilled in place, the
  Adam step counts and the epoch's loss sums are device tensors updated inside the step. No
  value is read back to the host, so on CUDA the whole step is captured once as a CUDA graph
  (``"graph"``) and replayed: hundreds of small kernel launches become one.

``fused`` is the same step without capture (it runs on the CPU; ``tests/test_ensemble.py``
checks it against ``eager``). A new set of trained parameters (gradual unfreezing) gets its own
graph. A graph replays the step as it was recorded, so what runs inside it must be a pure
function of tensors: no values read to the host (``.item()``, a Python ``if`` on a tensor) and
no Python state that changes from call to call (a step counter in an objective would be frozen at
its recorded value). Penalties are assumed pure; an objective other than the default
cross-entropy opts in with an attribute ``graph_safe = True`` (:func:`graph_safe`), otherwise
``engine="auto"`` runs it ``fused``. A capture that fails falls back to ``fused`` with a warning.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch

from xferutils.core.optim import adam_

Params = dict[str, torch.Tensor]
ENGINES = ("auto", "eager", "fused", "graph")


def resolve_engine(engine: str, device: torch.device) -> str:
    """``auto``: a captured CUDA graph on CUDA, the eager reference elsewhere.

    On the 2-core CPU the fused step measured no faster than the eager one (see the README's
    Speed section), so the CPU keeps the reference path and its numbers.
    """
    from xferutils.core.config import ParameterError, check_choice

    check_choice("engine", engine, ENGINES)
    if engine == "auto":
        return "graph" if device.type == "cuda" else "eager"
    if engine == "graph" and device.type != "cuda":
        raise ParameterError(f"engine='graph' needs a CUDA device (the data is on {device.type}); "
                             "use 'fused' or 'eager'")
    return engine


def graph_safe(objective: Callable) -> bool:
    """Whether ``objective`` declared itself safe to record in a CUDA graph (``graph_safe = True``)."""
    return bool(getattr(objective, "graph_safe", False))


def choose_engine(engine: str, device: torch.device, objective: Callable) -> str:
    """:func:`resolve_engine`, then ``graph`` only for an objective that is :func:`graph_safe`."""
    from xferutils.core.config import ParameterError

    chosen = resolve_engine(engine, device)
    if chosen == "graph" and not graph_safe(objective):
        if engine == "graph":
            raise ParameterError("engine='graph' replays a recorded step, so the objective must be a pure "
                                 "tensor function and say so with objective.graph_safe = True; "
                                 "use engine='fused' or 'auto'")
        chosen = "fused"
    return chosen


class ReplicaStep:
    """Forward, backward and Adam update of K stacked replicas on one batch, in place.

    ``loss(params, buffers, init, xb, yb)`` returns the K losses. ``x``/``y`` are the resident
    training data, shared (n, d) or one split per replica (K, n, d). ``factors[t]`` multiplies
    every rate at global step ``t`` (the schedule). Call :meth:`set_rates` when the rates change
    (each epoch), then call the step with the (K, batch) indices of one batch and the names
    of the parameters trained in it.
    """

    def __init__(self, loss: Callable[..., torch.Tensor], params: Params, buffers: Params, init: Params,
                 x: torch.Tensor, y: torch.Tensor, batch_size: int, factors: Sequence[float], *,
                 amp: bool = False, capture: bool = False) -> None:
        k = next(iter(params.values())).shape[0]
        device = x.device
        self.loss, self.params, self.buffers, self.init, self.x, self.y = loss, params, buffers, init, x, y
        self.amp, self.capture, self.device = amp, capture, device
        self.idx = torch.zeros(k, batch_size, dtype=torch.long, device=device)
        self.rows = torch.arange(k, device=device)[:, None]
        self.loss_sum = torch.zeros(k, device=device)
        self.factors = torch.tensor(list(factors) + [0.0], device=device)
        self.t = torch.zeros(1, dtype=torch.long, device=device)
        self.rates = {nm: torch.zeros(k, device=device) for nm in params}
        self.m = {nm: torch.zeros_like(p) for nm, p in params.items()}
        self.v = {nm: torch.zeros_like(p) for nm, p in params.items()}
        count_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.count = {nm: torch.zeros((), dtype=count_dtype, device=device) for nm in params}
        self.graphs: dict[tuple[str, ...], torch.cuda.CUDAGraph] = {}

    def set_rates(self, rates: Params) -> None:
        """Copy this epoch's per-replica rates (lr × multiplier, shape (K,)) into the static buffers."""
        for nm, r in rates.items():
            self.rates[nm].copy_(r)

    def __call__(self, idx: torch.Tensor, live: Sequence[str]) -> None:
        self.idx.copy_(idx)
        key = tuple(live)
        if self.capture and key not in self.graphs:
            self.graphs[key] = self._capture(key)
        graph = self.graphs.get(key)
        if graph is None:
            self._body(key)
        else:
            graph.replay()

    def epoch_losses(self) -> torch.Tensor:
        """The summed batch losses of the epoch so far (K,), and a reset of the sum."""
        out = self.loss_sum.clone()
        self.loss_sum.zero_()
        return out

    # -- the step ---------------------------------------------------------------------------------

    def _body(self, live: tuple[str, ...]) -> None:
        idx = self.idx
        shared = self.x.dim() != 3  # as the eager path: (K, n, d) is one split per replica
        xb = self.x[idx] if shared else self.x[self.rows, idx]
        yb = self.y[idx] if shared else self.y[self.rows, idx]
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False) \
            if self.amp else nullcontext()
        with amp:
            losses = self.loss(self.params, self.buffers, self.init, xb, yb)
        grads = torch.autograd.grad(losses.sum(), [self.params[nm] for nm in live], allow_unused=True)
        with torch.no_grad():
            used = [(nm, g) for nm, g in zip(live, grads) if g is not None]
            if used:
                factor = self.factors.index_select(0, self.t)
                adam_([self.params[nm] for nm, _ in used], [g for _, g in used],
                      [self.m[nm] for nm, _ in used], [self.v[nm] for nm, _ in used],
                      [self.count[nm] for nm, _ in used], [self.rates[nm] * factor for nm, _ in used],
                      on_device=self.capture)
            self.t.add_(1)
            self.loss_sum.add_(losses.detach().float())

    def _state(self) -> list[torch.Tensor]:
        return [*self.params.values(), *self.m.values(), *self.v.values(), *self.count.values(),
                self.t, self.loss_sum]

    def _capture(self, live: tuple[str, ...]) -> torch.cuda.CUDAGraph | None:
        """Record the step as a CUDA graph (after one warm-up run whose effects are undone)."""
        with torch.no_grad():
            saved = [t.detach().clone() for t in self._state()]
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        try:
            with torch.cuda.stream(stream):
                self._body(live)  # warm-up: autograd and cuBLAS set themselves up outside the capture
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._body(live)
        except RuntimeError as err:  # e.g. an objective that reads a value to the host
            warnings.warn(f"the training step could not be captured as a CUDA graph ({err}); "
                          "running it uncaptured (engine='fused')", RuntimeWarning, stacklevel=3)
            self.capture, graph = False, None
        torch.cuda.synchronize(self.device)
        with torch.no_grad():
            for t, s in zip(self._state(), saved):
                t.copy_(s)  # the warm-up (and a failed capture) leave no trace
        return graph
