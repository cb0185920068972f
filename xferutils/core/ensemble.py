"""K replicas of one architecture trained at once, as one vectorized model (every chapter).

The replicas' parameters are stacked along a leading axis and the forward pass is
``torch.func.vmap`` over ``functional_call``; each replica has its own batch order (its seed),
its own Adam state and its own learning rate. Training K replicas this way gives the same
result as K calls of :func:`xferutils.core.train.fit` (see ``tests/test_ensemble.py``).

The trainer contract (shared with :func:`xferutils.core.train.fit`, the readable single-model
reference): Adam (betas 0.9/0.999, eps 1e-8) on cross-entropy, batches from a seeded
``randperm`` per epoch with the last incomplete batch dropped, a ``"constant"`` or
``"onecycle"`` schedule of the learning rate, per-parameter rate multipliers (0 freezes),
a penalty added to the loss, and early stopping on ``val`` that keeps the best epoch.
``fit_replicas`` adds what only many models need: one rate (or multiplier) per replica, an
``objective`` hook, per-replica data, an episode sampler (``batches``) and a validation
``score``. Models go to the training data's device.

Every network of the book trains through it, with three documented exceptions that share its
Adam (:mod:`xferutils.core.optim`): the convex probes (L-BFGS in :mod:`xferutils.core.sharing`,
and chapter 5's linear head per few-shot task, :class:`~xferutils.core.optim.ReplicaAdam`), the
NumPy network of chapter 2 (the teaching exception), and chapter 6's traversal, which trains two
networks per replica under a per-step mixing schedule, with targets from the previous step and
pruning masks between steps (:func:`xferutils.chapters.traversal.traverse`); it stops with the
same early stopping (:class:`~xferutils.core.train.EarlyStopping`).

Two engines run that contract (``engine=``, see :mod:`xferutils.core.step`): ``"eager"``, the
reference and the CPU default, and ``"graph"``/``"fused"``, one fused step captured as a CUDA
graph (the CUDA default).
"""
from __future__ import annotations

import copy
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from xferutils.core.config import ParameterError, check_choice, check_float, check_int, check_seeds
from xferutils.core.data import Split
from xferutils.core.optim import adam_
from xferutils.core.step import ENGINES, ReplicaStep, choose_engine, resolve_engine  # noqa: F401 (ENGINES and resolve_engine: re-exported for bench)
from xferutils.core.train import (SCHEDULES, EarlyStopping, History, _check_patience, autocast, epoch_generator,
                                  lr_factor)

Params = dict[str, torch.Tensor]
LrMult = Mapping[str, float] | Callable[[int], Mapping[str, float]]
Objective = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]
Batches = Callable[[int, Sequence[int]], Iterable[tuple[torch.Tensor, torch.Tensor]]]
"""An episode sampler: ``batches(epoch, alive)`` yields the epoch's steps, each ``(xb, yb)`` with
one row per replica still training (``alive``: their indices among the seeds); chapter 5's
prototypical networks draw their tasks this way."""
Score = Callable[["Replicas"], Sequence[float]]
"""A validation criterion: one score per replica (higher is better), in place of accuracy on ``val``."""


def replicate(make_model: Callable[[], nn.Module], seeds: Sequence[int]) -> list[nn.Module]:
    """One freshly initialised model per seed (``torch.manual_seed(seed)`` before construction)."""
    models = []
    for s in check_seeds("seeds", seeds):
        torch.manual_seed(s)
        models.append(make_model())
    return models


def _multiplier(lr_mult: Mapping[str, float | Sequence[float]], name: str) -> float | list[float]:
    """The first matching prefix's multiplier: one number, or one per replica."""
    m = next((m for key, m in lr_mult.items() if name.startswith(key)), 1.0)
    return float(m) if isinstance(m, (int, float)) else [float(v) for v in m]


CPU_EVAL_FLOATS = 2 ** 24
"""What one evaluation chunk may write on a CPU, in floats (64 MB, every replica's activations
together): a chunk that stays near the cache runs several times faster than one that does not
(measured on this book's 2-core CPU, one thread: 150 LeNet-5 replicas on 960 images in 7 s in
chunks of 16 images, 50 s in one chunk; 110 MLPs of chapter 6 on 2,000 images, 3.8 s in chunks
of 100, 4.7 s in one)."""


_ACTIVATIONS: weakref.WeakKeyDictionary[nn.Module, dict[int, int]] = weakref.WeakKeyDictionary()


def activation_floats(model: nn.Module, in_features: int) -> int:
    """Floats one input row writes in a forward pass of ``model``: the outputs of its leaf modules,
    measured on the ``meta`` device (no computation, no memory; remembered per model); 1 when it
    cannot run there."""
    known = _ACTIVATIONS.setdefault(model, {})
    if in_features not in known:
        known[in_features] = _count_activations(model, in_features)
    return known[in_features]


def _count_activations(model: nn.Module, in_features: int) -> int:
    total = 0

    def count(_m: nn.Module, _inp: object, out: object) -> None:
        nonlocal total
        total += out.numel() if isinstance(out, torch.Tensor) else 0

    probe = copy.deepcopy(model).to("meta")
    hooks = [m.register_forward_hook(count) for m in probe.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            probe(torch.empty(1, in_features, device="meta"))
    except (RuntimeError, NotImplementedError):  # a layer the meta device cannot run: size unknown
        total = 0
    finally:
        for h in hooks:
            h.remove()
    return max(1, total)


def eval_rows(model: nn.Module, replicas: int, in_features: int, device: torch.device | str) -> int:
    """Rows of input per evaluation chunk for ``replicas`` copies of ``model``: on a CPU, as many as
    keep their activations within :data:`CPU_EVAL_FLOATS` (at least 1); elsewhere 8,192."""
    if torch.device(device).type != "cpu":
        return 8192
    per_row = check_int("replicas", replicas, 1) * activation_floats(model, in_features)
    return int(min(8192, max(1, CPU_EVAL_FLOATS // per_row)))


@dataclass
class Replicas:
    """K trained replicas: a template module and its parameters stacked on axis 0."""

    base: nn.Module
    params: Params
    buffers: Params
    seeds: list[int]
    history: list[History]

    def __len__(self) -> int:
        return len(self.seeds)

    def logits(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Logits of every replica, shape (K, n, classes); ``x`` is (n, d) shared or (K, n, d).
        Computed in evaluation mode (a network with dropout uses all its units), ``batch_size``
        rows at a time (default: :func:`eval_rows`)."""
        in_dim = 0 if x.dim() == 3 else None
        x = x.to(self.device)
        if batch_size is None:
            batch_size = eval_rows(self.base, len(self), x.shape[-1], x.device)
        call = vmap(lambda p, b, xb: functional_call(self.base, (p, b), (xb,)), in_dims=(0, 0, in_dim))
        was_training = self.base.training
        self.base.eval()  # evaluation mode (dropout off); training resumes in the caller's mode
        try:
            with torch.no_grad():
                chunks = [call(self.params, self.buffers, x[..., i:i + batch_size, :])
                          for i in range(0, x.shape[-2], batch_size)]
        finally:
            self.base.train(was_training)
        return torch.cat(chunks, dim=1)

    @property
    def device(self) -> torch.device:
        """Where the stacked parameters live."""
        return next(iter(self.params.values())).device

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes, shape (K, n)."""
        return self.logits(x).argmax(-1)

    def evaluate(self, data: Split | Sequence[Split]) -> list[float]:
        """Accuracy of every replica on shared ``data`` or on one split per replica.

        Replicas given the same split object are evaluated on it together, without stacking
        copies of it (chapter 3 gives 90 replicas six rotated test sets).
        """
        if not isinstance(data, Split) and len(data) == len(self):
            shared: dict[int, tuple[Split, list[int]]] = {}
            for j, split in enumerate(data):
                shared.setdefault(id(split), (split, []))[1].append(j)
            if len(shared) < len(data):
                out = [0.0] * len(self)
                for split, idx in shared.values():
                    for j, acc in zip(idx, self.select(idx).evaluate(split)):
                        out[j] = acc
                return out
        x, y = _stack(data, len(self))
        return (self.predict(x) == y.to(self.device)).float().mean(-1).tolist()

    def select(self, idx: Sequence[int]) -> Replicas:
        """The replicas ``idx`` (a view of their stacked parameters) as a smaller set."""
        rows = torch.tensor(list(idx), device=self.device)
        return Replicas(self.base, {n: t.index_select(0, rows) for n, t in self.params.items()},
                        {n: t.index_select(0, rows) for n, t in self.buffers.items()},
                        [self.seeds[i] for i in idx], [self.history[i] for i in idx if i < len(self.history)])

    def unstack(self) -> list[nn.Module]:
        """The replicas as K ordinary modules (copies, on the parameters' device)."""
        out = []
        for k in range(len(self)):
            m = copy.deepcopy(self.base).to_empty(device=self.device)
            state = {n: t[k] for n, t in {**self.params, **self.buffers}.items()}
            m.load_state_dict(state)
            out.append(m.eval())
        return out


def _stack(data: Split | Sequence[Split], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shared data as (n, d)/(n,), or one equally long split per replica as (K, n, d)/(K, n)."""
    if isinstance(data, Split):
        return data.x, data.y
    if len(data) != k or len({len(s) for s in data}) != 1:
        raise ParameterError(f"give one split per replica ({k}), all of one length; got "
                             f"{[len(s) for s in data]}")
    device = data[0].x.device
    return torch.stack([s.x.to(device) for s in data]), torch.stack([s.y.to(device) for s in data])


def batch_rows(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (K, B) batch ``idx`` of shared data (n, d)/(n,) or of per-replica data (K, n, d)/(K, n).

    ``index_select`` on rows: the same values as ``x[idx]`` / ``x[rows, idx]``, faster on the CPU.
    """
    k, b = idx.shape
    if x.dim() != 3:  # shared data (the trainers' rule: a 3-d x holds one split per replica)
        flat = idx.reshape(-1)
        return (x.index_select(0, flat).view(k, b, *x.shape[1:]),
                y.index_select(0, flat).view(k, b, *y.shape[1:]))
    n = x.shape[1]
    flat = (idx + n * torch.arange(k, device=idx.device)[:, None]).reshape(-1)
    return (x.reshape(k * n, -1).index_select(0, flat).view(k, b, -1),
            y.reshape(k * n, *y.shape[2:]).index_select(0, flat).view(k, b, *y.shape[2:]))


def cross_entropy(fmodel: Callable[[torch.Tensor], torch.Tensor], xb: torch.Tensor,
                  yb: torch.Tensor) -> torch.Tensor:
    """The default objective: mean cross-entropy of one replica on one batch."""
    return F.cross_entropy(fmodel(xb), yb)


cross_entropy.graph_safe = True  # a pure tensor function: it may be recorded in a CUDA graph


def fit_replicas(models: Sequence[nn.Module], train: Split | Sequence[Split], seeds: Sequence[int], *,
                 epochs: int, lr: float | Sequence[float] = 1e-3, batch_size: int = 256,
                 lr_mult: LrMult | None = None, val: Split | Sequence[Split] | None = None,
                 penalty: Callable[[Params, Params], torch.Tensor] | None = None,
                 objective: Objective = cross_entropy, amp: bool = False,
                 patience: int | None = None, schedule: str = "constant",
                 engine: str = "auto", batches: Batches | None = None,
                 score: Score | None = None) -> Replicas:
    """Train same-shaped ``models`` together with Adam, replica k with batch order ``seeds[k]``.

    ``lr`` is one rate or one per replica. ``lr_mult`` maps parameter-name prefixes to
    multipliers of the rate (0 freezes), or is a function of the epoch returning such a map
    (gradual unfreezing). A parameter with ``requires_grad=False`` in a model stays fixed in
    that replica, whatever ``lr_mult`` says. A multiplier may also be a list with one value per
    replica, so that strategies that differ only in their rates train together (chapter 3); a
    replica whose value is 0 keeps that parameter unchanged (its Adam moments still run).
    ``penalty(params, init)`` is added to each replica's loss, with ``init`` its parameters
    before training (L2-SP). ``objective(fmodel, xb, yb)`` replaces the cross-entropy.
    ``train``/``val`` are shared splits or one split per replica. ``schedule``: ``"constant"``
    or ``"onecycle"`` (as :func:`xferutils.core.train.fit`).

    ``patience``: early stopping on ``val``. Each replica keeps the weights of its best
    validation epoch (``history[k].best_epoch``); training ends when every replica has gone
    ``patience`` epochs without improving, or after ``epochs``.

    Hooks for training that is not shuffled rows (chapter 5's episodes): ``batches`` (a
    :data:`Batches` sampler) gives each epoch's steps instead of shuffled rows of ``train``
    (which then only says where the data lives; eager engine, constant schedule), and ``score``
    (a :data:`Score`) replaces accuracy on ``val`` as the early-stopping criterion.

    The models may live anywhere: their parameters are stacked on the training data's device.
    ``engine``: ``"eager"`` (the reference), ``"fused"`` (one multi-tensor step) or ``"graph"``
    (that step captured as a CUDA graph); ``"auto"`` is ``"graph"`` on CUDA (``"fused"`` for an
    objective not marked ``graph_safe``, see :mod:`xferutils.core.step`), else ``"eager"``.
    """
    seeds = check_seeds("seeds", seeds)
    _check_patience(patience, val if score is None else score)
    check_choice("schedule", schedule, SCHEDULES)
    if batches is not None and (schedule != "constant" or engine not in ("auto", "eager")):
        raise ParameterError(f"batches (an episode sampler) runs on engine='eager' with schedule='constant'; "
                             f"got engine={engine!r}, schedule={schedule!r}")
    start = time.perf_counter()
    k = len(seeds)
    if len(models) != k:
        raise ParameterError(f"models has {len(models)} entries but seeds has {k}; give one seed per model")
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    lrs = [check_float("lr", r, 0.0) for r in ([lr] * k if isinstance(lr, (int, float)) else lr)]
    if len(lrs) != k:
        raise ParameterError(f"lr has {len(lrs)} values but there are {k} replicas")
    x, y = _stack(train, k)
    device = x.device
    engine = "eager" if batches is not None else choose_engine(engine, device, objective)
    n = x.shape[-2]
    if n == 0:
        raise ParameterError("train is empty; give at least one training sample")
    _check_materialised(models)

    base = copy.deepcopy(models[0]).to("meta")
    names = [name for name, _ in models[0].named_parameters()]
    params = {nm: torch.stack([dict(m.named_parameters())[nm].detach().to(device) for m in models])
              for nm in names}
    buffers = {nm: torch.stack([dict(m.named_buffers())[nm].to(device) for m in models])
               for nm, _ in models[0].named_buffers()}
    init = {nm: t.clone() for nm, t in params.items()}
    trains = {nm: torch.tensor([float(dict(m.named_parameters())[nm].requires_grad) for m in models],
                               device=device) for nm in names}  # 0 where a replica froze it
    frozen = {nm for nm, t in trains.items() if not t.any()}
    lr_t = torch.tensor(lrs, device=device)
    state = {nm: (torch.zeros_like(t), torch.zeros_like(t)) for nm, t in params.items()}
    count_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    steps = {nm: torch.zeros((), dtype=count_dtype, device=device) for nm in names}  # Adam's counts

    def loss_one(p: Params, b: Params, p0: Params, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        loss = objective(lambda inp: functional_call(base, (p, b), (inp,)), xb, yb)
        return loss + penalty(p, p0) if penalty is not None else loss

    batched_loss = vmap(loss_one, in_dims=(0, 0, 0, 0, 0), randomness="different")
    gens = [epoch_generator(s, device) for s in seeds]
    bs = min(batch_size, n)
    per_epoch = n // bs
    factors = [lr_factor(schedule, t, epochs * per_epoch) for t in range(epochs * per_epoch)]
    fused = None if engine == "eager" else ReplicaStep(
        batched_loss, params, buffers, init, x, y, bs, factors, amp=amp, capture=engine == "graph")
    shrink = fused is None and patience is not None  # stopped replicas leave the eager step
    all_buffers = buffers
    alive = list(range(k))  # the original index of each replica still training
    losses_of: list[list[float]] = [[] for _ in range(k)]
    vals_of: list[list[float]] = [[] for _ in range(k)]
    stopping = EarlyStopping(params, patience) if patience is not None else None
    done = stopping.done if stopping is not None else torch.zeros(k, dtype=torch.bool)
    for epoch in range(epochs):
        mults = (lr_mult(epoch) if callable(lr_mult) else lr_mult) or {}
        active = {nm: _multiplier(mults, nm) for nm in names}
        if any(not isinstance(a, float) and len(a) != k for a in active.values()):
            raise ParameterError(f"a per-replica lr_mult needs one value per replica ({k})")
        active = {nm: a if isinstance(a, float) else [a[j] for j in alive] for nm, a in active.items()}
        rates = {nm: lr_t * trains[nm] * (a if isinstance(a, float) else torch.tensor(a, device=device))
                 for nm, a in active.items()}
        live = [nm for nm, a in active.items()
                if nm not in frozen and (a if isinstance(a, float) else max(a)) > 0]
        if not live:
            raise ParameterError(f"nothing to train in epoch {epoch}: every parameter is frozen")
        for nm, t in params.items():
            t.requires_grad_(nm in live)  # no gradients are computed for frozen parameters
        if fused is not None:
            fused.set_rates(rates)
        total, n_steps = torch.zeros(len(alive), device=device), per_epoch
        if batches is None:
            perms = torch.stack([torch.randperm(n, generator=g, device=g.device) for g in gens]).to(device)
            steps_of = (perms[:, i * bs:(i + 1) * bs] for i in range(per_epoch))
        else:
            steps_of, n_steps = batches(epoch, list(alive)), 0
        for i, idx in enumerate(steps_of):
            if fused is not None:
                fused(idx, live)
                continue
            xb, yb = batch_rows(x, y, idx) if batches is None else idx
            n_steps = max(n_steps, i + 1)
            with autocast(device, amp):
                losses = batched_loss(params, buffers, init, xb, yb)
            grads = torch.autograd.grad(losses.sum(), [params[nm] for nm in live], allow_unused=True)
            factor = 1.0 if schedule == "constant" else factors[epoch * per_epoch + i]
            with torch.no_grad():
                used = [(nm, g) for nm, g in zip(live, grads) if g is not None]
                adam_([params[nm] for nm, _ in used], [g for _, g in used], [state[nm][0] for nm, _ in used],
                      [state[nm][1] for nm, _ in used], [steps[nm] for nm, _ in used],
                      [rates[nm] if schedule == "constant" else rates[nm] * factor for nm, _ in used])
                total += losses.detach().float()
        if fused is not None:
            total = fused.epoch_losses()
        for j, v in zip(alive, (total / max(1, n_steps)).tolist()):
            if not done[j]:
                losses_of[j].append(v)
        if val is None and score is None:
            continue
        now = Replicas(base, params, buffers, [seeds[j] for j in alive], [])
        accs = (list(score(now)) if score is not None else
                now.evaluate(val if isinstance(val, Split) else [val[j] for j in alive]))
        for j, a in zip(alive, accs):
            if not done[j]:
                vals_of[j].append(a)
        if patience is None:
            continue
        rows = torch.tensor(alive)
        stopping.update(epoch + 1, rows, torch.tensor(accs), params)
        if stopping.finished:
            break
        stopped = done[rows]
        if shrink and bool(stopped.any()):  # each replica stops on its own, as sequential fits would
            sel = torch.nonzero(~stopped).flatten()
            alive = [alive[j] for j in sel.tolist()]
            sel = sel.to(device)
            with torch.no_grad():
                params = {nm: t.index_select(0, sel).detach() for nm, t in params.items()}
                buffers = {nm: t.index_select(0, sel) for nm, t in buffers.items()}
                init = {nm: t.index_select(0, sel) for nm, t in init.items()}
                state = {nm: (m.index_select(0, sel), v.index_select(0, sel)) for nm, (m, v) in state.items()}
            lr_t = lr_t.index_select(0, sel)
            trains = {nm: t.index_select(0, sel) for nm, t in trains.items()}
            gens = [gens[j] for j in sel.tolist()]
            if x.dim() == 3:
                x, y = x.index_select(0, sel), y.index_select(0, sel)
    with torch.no_grad():
        final = stopping.best if stopping is not None else params
        params = {nm: t.detach().clone() if stopping is None else t for nm, t in final.items()}
    ends = stopping.at.tolist() if stopping is not None else [len(losses_of[j]) for j in range(k)]
    seconds = time.perf_counter() - start
    history = [History(loss=losses_of[j], val_acc=vals_of[j], best_epoch=ends[j], seconds=seconds)
               for j in range(k)]
    return Replicas(base, params, all_buffers, seeds, history)


def _check_materialised(models: Sequence[nn.Module]) -> None:
    """Models must hold real weights (not ``meta`` placeholders) before they are stacked."""
    for i, m in enumerate(models):
        if any(t.is_meta for t in [*m.parameters(), *m.buffers()]):
            raise ParameterError(f"models[{i}] has parameters on the 'meta' device (no values); "
                                 "build it on a real device or load its weights first")
