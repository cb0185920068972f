"""Training one network on resident tensors (every chapter; :mod:`xferutils.core.ensemble` does many).

No ``DataLoader``: each epoch is a seeded ``randperm`` of the resident data, cut into batches.
The loss is accumulated on the device and read once per epoch, so the loop never waits on the host.

:func:`fit` is the readable single-model reference of the trainer contract that
:func:`xferutils.core.ensemble.fit_replicas` implements for K models at once (Adam, seeded batch
order, ``"constant"``/``"onecycle"`` schedule, rate multipliers, penalty, early stopping on
``val``); the tests check that the two agree, and the benchmark times this one against seed
002's loop. The model is moved to the training data's device before training.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from xferutils.core.config import ParameterError, check_choice, check_float, check_int
from xferutils.core.data import Split


@dataclass
class History:
    """Per-epoch training loss and (when a validation split is given) validation accuracy.

    With early stopping, ``best_epoch`` is the epoch (1-based) whose weights were kept: the
    budget the run used. Without it, ``best_epoch`` is the last epoch. ``seconds`` is the wall
    time of the training call (shared by replicas trained together; kept by the model store, so
    a chapter that reads stored weights still reports what training them cost).
    """

    loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0

    @property
    def epochs(self) -> int:
        """Epochs trained (early stopping may end a run before its maximum)."""
        return len(self.loss)


def batches(n: int, batch_size: int, gen: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    """Index tensors of one shuffled epoch; the last incomplete batch is dropped.

    ``batch_size`` larger than ``n`` gives one batch of all samples.
    """
    bs = min(batch_size, n)
    perm = torch.randperm(n, generator=gen, device=gen.device).to(device)
    for i in range(n // bs):
        yield perm[i * bs:(i + 1) * bs]


def epoch_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator that orders the batches of a run with ``seed`` (shared with the ensemble)."""
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    return torch.Generator(device=gen_device).manual_seed(seed)


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on ``device`` when ``amp`` is true, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


SCHEDULES = ("constant", "onecycle")


def lr_factor(schedule: str, step: int, total: int, warmup: float = 0.1) -> float:
    """Multiplier of the learning rate at ``step`` of ``total``.

    ``onecycle`` rises linearly over the first ``warmup`` fraction of the steps and then falls
    linearly to zero: short runs reach a given accuracy in fewer epochs (used by the benchmark).
    """
    if schedule == "constant":
        return 1.0
    rise = max(1, int(warmup * total))
    return min((step + 1) / rise, max(0.0, (total - step) / max(1, total - rise)))


def param_groups(model: nn.Module, lr: float, multipliers: Mapping[str, float] | None = None) -> list[dict]:
    """Adam parameter groups: a parameter whose name starts with a key gets ``lr * multiplier``.

    The first matching key wins; unmatched parameters get ``lr``. A multiplier of 0 freezes the
    parameter (``requires_grad = False``) instead of giving Adam a zero learning rate.
    """
    multipliers = dict(multipliers or {})
    groups: dict[float, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        mult = next((m for key, m in multipliers.items() if name.startswith(key)), 1.0)
        check_float(f"multipliers[{name!r}]", mult, 0.0)
        p.requires_grad_(mult > 0)
        if mult > 0:
            groups.setdefault(lr * mult, []).append(p)
    return [{"params": ps, "lr": g_lr} for g_lr, ps in groups.items()]


def fit(model: nn.Module, train: Split, *, epochs: int, lr: float = 1e-3, batch_size: int = 256,
        seed: int = 0, groups: list[dict] | None = None, val: Split | None = None,
        penalty: Callable[[nn.Module], torch.Tensor] | None = None, amp: bool = False,
        on_epoch: Callable[[int, nn.Module], None] | None = None,
        schedule: str = "constant", patience: int | None = None) -> History:
    """Train ``model`` in place with Adam and cross-entropy; return the :class:`History`.

    ``groups`` are Adam parameter groups (see :func:`param_groups`); by default every parameter
    with ``requires_grad`` is trained at ``lr``. ``penalty(model)`` is added to every batch loss
    (L2-SP, chapter 2). ``on_epoch(epoch, model)`` runs before each epoch (gradual unfreezing).
    ``schedule``: ``"constant"`` learning rates, or ``"onecycle"`` (see :func:`lr_factor`).
    ``patience``: stop when validation accuracy has not improved for that many epochs and keep
    the best epoch's weights (needs ``val``); ``epochs`` is then the maximum.
    """
    check_choice("schedule", schedule, SCHEDULES)
    _check_patience(patience, val)
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    check_float("lr", lr, 0.0)
    if len(train) == 0:
        raise ParameterError("train is empty; give at least one training sample")
    device = train.x.device
    to_device(model, device)
    if groups is None:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]
    # on the CPU PyTorch's fused kernel (as fit_replicas uses there): same update, one pass
    opt = torch.optim.Adam(groups, lr=lr, fused=device.type == "cpu" or None)
    steps_per_epoch = len(train) // min(batch_size, len(train))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(schedule, step, epochs * steps_per_epoch))
    gen = epoch_generator(seed, device)
    hist = History()
    best_acc, best_state = -1.0, None
    for epoch in range(epochs):
        if on_epoch is not None:
            on_epoch(epoch, model)
        model.train()
        total, steps = torch.zeros((), device=device), 0
        for idx in batches(len(train), batch_size, gen, device):
            with autocast(device, amp):
                loss = F.cross_entropy(model(train.x[idx]), train.y[idx])
            if penalty is not None:
                loss = loss + penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach().float()
            steps += 1
        hist.loss.append(total.item() / steps)
        if val is not None:
            hist.val_acc.append(evaluate(model, val))
        if patience is not None:
            if hist.val_acc[-1] > best_acc:
                best_acc, hist.best_epoch = hist.val_acc[-1], epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif epoch + 1 - hist.best_epoch >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        hist.best_epoch = len(hist.loss)
    model.eval()
    return hist


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` (in place, keeping its parameter objects) to ``device``, where the data is.

    A model whose weights are ``meta`` placeholders has no values to move: a clear error.
    """
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        raise ParameterError("the model has parameters on the 'meta' device (no values); build it on "
                             "a real device or load its weights first")
    return model.to(device)


def _check_patience(patience: int | None, val: object) -> None:
    """Early stopping needs a validation split and a patience of at least one epoch."""
    if patience is not None:
        check_int("patience", patience, 1)
        if val is None:
            raise ParameterError("patience needs a validation split: give val=...")


class EarlyStopping:
    """Early stopping for K replicas at once (:func:`~xferutils.core.ensemble.fit_replicas`, every
    chapter; chapter 6's traversal): each replica keeps the weights of its best score, and is out
    of patience once ``patience`` measurements have passed without a better one.

    ``together=False`` (the trainer's rule): each replica stops on its own, so K replicas trained
    together end as K separate runs would. ``together=True``: no replica stops until every one
    is out of patience at once (chapter 6, where a stale replica may still improve later).
    ``params`` are the stacked weights (replica on axis 0) whose best values are kept.
    """

    def __init__(self, params: Mapping[str, torch.Tensor], patience: int, *, together: bool = False):
        self.patience = check_int("patience", patience, 1)
        self.together = together
        k = next(iter(params.values())).shape[0]
        self.score = torch.full((k,), -1.0)  # every real score (an accuracy, a negative loss) beats it
        self.at = torch.zeros(k, dtype=torch.long)  # the best measurement's number (1-based); 0: none
        self.done = torch.zeros(k, dtype=torch.bool)  # out of patience: trains no further
        self.best = {nm: t.detach().clone() for nm, t in params.items()}

    @torch.no_grad()
    def update(self, when: int, rows: torch.Tensor, scores: torch.Tensor,
               params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Record measurement number ``when`` (1-based): ``scores[j]`` of replica ``rows[j]``,
        whose weights are ``params[name][j]`` (NaN: not measured). Returns which of ``rows``
        improved; a replica already out of patience keeps its best."""
        rows, scores = rows.cpu(), scores.detach().float().cpu()
        improved = (scores > self.score[rows]) & ~self.done[rows]
        self.score[rows[improved]], self.at[rows[improved]] = scores[improved], when
        if bool(improved.any()):
            for nm, t in params.items():
                self.best[nm][rows[improved].to(t.device)] = t[improved.to(t.device)].detach()
        stale = when - self.at >= self.patience
        if self.together:
            self.done |= bool(stale.all())
        else:
            self.done[rows] |= stale[rows]
        return improved

    @property
    def finished(self) -> bool:
        """Whether every replica is out of patience."""
        return bool(self.done.all())


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Predicted class of every input (argmax of the logits), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters(), x).device
    out = torch.cat([model(x[i:i + batch_size].to(device)).argmax(1) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def evaluate(model: nn.Module, data: Split) -> float:
    """Accuracy of ``model`` on ``data`` (a fraction in [0, 1])."""
    pred = predict(model, data.x)
    return (pred == data.y.to(pred.device)).float().mean().item()
