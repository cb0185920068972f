"""Few-shot learning (chapter 5: document 000's recommended solutions 2 and 3).

- N-way k-shot *tasks* over held-out digits: sampled as index tensors, all tasks at once;
- the *prototype classifier* (Snell et al. 2017): each class is the mean of its support
  embeddings, a query goes to the nearest mean;
- *prototypical networks*: an embedding trained on episodes (tasks over the training digits),
  K seeds at once (vmap), stopped on validation tasks;
- a *fine-tuning baseline*: a new linear head per task on frozen pretrained features, its number
  of steps chosen on validation tasks;
- :func:`labels_to_reach`: how many labels a learning curve needs to reach a target.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from xferutils.core.config import ParameterError, check_int, check_seeds
from xferutils.core.data import Split
from xferutils.pages.plotting import log_count_axes
from xferutils.core.ensemble import Replicas, fit_replicas, replicate
from xferutils.core.optim import ReplicaAdam
from xferutils.chapters.what_works.freezing import Fit, train_classifier


# Published 5-way accuracies (%), 1-shot / 5-shot: context, not targets (other data sets).
PUBLISHED = {
    "Prototypical networks, Omniglot (Snell et al. 2017)": (98.8, 99.7),
    "Prototypical networks, miniImageNet (Snell et al. 2017)": (49.42, 68.20),
    "MAML, miniImageNet (Finn et al. 2017)": (48.70, 63.11),
    "Fine-tuning baseline, miniImageNet (as in Finn et al. 2017)": (28.86, 49.79),
}


EMBED_WIDTHS = (784, 256, 128, 64)  # section 5's embedding: an MLP whose widest layer is its first


def embedding_net(n_classes: int) -> nn.Module:
    """Section 5's network: the prototypical network's embedding is its ``features``, and the
    ordinary classifier it is compared with has the same layers and a head."""
    from xferutils.core.models import MLP

    return MLP(list(EMBED_WIDTHS), n_classes)


# --- the prototype classifier -----------------------------------------------------------------

def prototypes(support: torch.Tensor) -> torch.Tensor:
    """Class means of support embeddings arranged ``(..., N, k, d)`` → ``(..., N, d)``."""
    return support.mean(-2)


def prototype_logits(query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Negative squared Euclidean distance of each query ``(..., m, d)`` to each prototype
    ``(..., N, d)``: logits ``(..., m, N)``."""
    return -(query.pow(2).sum(-1, keepdim=True) - 2 * query @ protos.transpose(-1, -2)
             + protos.pow(2).sum(-1)[..., None, :])


def classify(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Nearest-prototype class (0..N-1) of every query, from support ``(..., N, k, d)``."""
    return prototype_logits(query, prototypes(support)).argmax(-1)


# --- tasks ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tasks:
    """``T`` tasks as indices into one image set: ``support`` (T, N, k), ``query`` (T, N, q);
    class ``i`` of a task is digit ``classes[t, i]``; the label of a row is its position ``i``."""

    support: torch.Tensor
    query: torch.Tensor
    classes: torch.Tensor

    def __len__(self) -> int:
        return len(self.support)

    @property
    def n_way(self) -> int:
        return self.support.shape[1]

    def query_labels(self) -> torch.Tensor:
        """Labels of the queries, (T, N·q)."""
        t, n, q = self.query.shape
        return torch.arange(n, device=self.query.device).repeat_interleave(q).expand(t, n * q)


def sample_tasks(y: torch.Tensor, digits: Sequence[int], n_way: int, k_shot: int, n_query: int, n_tasks: int,
                 seed: int) -> Tasks:
    """``n_tasks`` tasks of ``n_way`` digits drawn from ``digits``, each with ``k_shot`` support and
    ``n_query`` query images per digit, disjoint within a task, drawn by ``seed``."""
    digits = list(digits)
    n_way = check_int("n_way", n_way, 2, len(digits))
    k_shot = check_int("k_shot", k_shot, 1)
    n_query = check_int("n_query", n_query, 1)
    n_tasks = check_int("n_tasks", n_tasks, 1)
    yc = y.cpu()
    pools = [torch.nonzero(yc == d).flatten() for d in digits]
    m = min(len(p) for p in pools)
    if m < k_shot + n_query:
        raise ParameterError(f"k_shot + n_query = {k_shot + n_query} exceeds the {m} images of the rarest digit")
    table = torch.stack([p[:m] for p in pools])  # (D, m)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    cls = torch.rand(n_tasks, len(digits), generator=g).argsort(-1)[:, :n_way]  # (T, N)
    pick = torch.rand(n_tasks, n_way, m, generator=g).argsort(-1)[..., :k_shot + n_query]
    idx = table[cls[..., None], pick].to(y.device)  # (T, N, k+q)
    return Tasks(idx[..., :k_shot], idx[..., k_shot:], torch.tensor(digits)[cls].to(y.device))


def task_accuracy(emb: torch.Tensor, tasks: Tasks) -> torch.Tensor:
    """Nearest-prototype accuracy of every task, from embeddings ``emb`` (n, d) of the image set."""
    pred = classify(emb[tasks.support], emb[tasks.query].flatten(1, 2))
    return (pred == tasks.query_labels()).float().mean(-1)


# --- prototypical networks, trained on episodes -----------------------------------------------

@dataclass
class ProtoNets:
    """K embedding networks trained episodically (stacked parameters)."""

    base: nn.Module
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    best_epoch: list[int]
    val_acc: list[list[float]]
    monitor: list[list[float]] = field(default_factory=list)  # per epoch (0 = untrained), per replica

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``x`` by every replica, (K, n, d)."""
        return vmap(lambda p, b: functional_call(self.base, (p, b), (x,)))(self.params, self.buffers)

    def accuracy(self, x: torch.Tensor, tasks: Tasks) -> torch.Tensor:
        """Per replica and task, (K, T)."""
        return torch.stack([task_accuracy(e, tasks) for e in self.embed(x)])


def train_protonet(make: Callable[[], nn.Module], train: Split, val: Split, val_tasks: Tasks,
                   seeds: Sequence[int], *, n_way: int, k_shot: int, n_query: int, episodes: int = 20,
                   batch: int = 4, fit: Fit = Fit(),
                   monitor: tuple[torch.Tensor, Tasks] | None = None) -> ProtoNets:
    """Episodic training (Snell et al. 2017) of K embeddings ``make()`` on the digits of ``train``,
    through the book's one trainer (:func:`~xferutils.core.ensemble.fit_replicas` with an episode
    sampler): each step, every replica draws ``batch`` tasks of its own and descends the
    cross-entropy of its queries' prototype logits; an epoch is ``episodes`` steps. Each replica
    keeps its best epoch on ``val_tasks`` (tasks over ``val``'s images) and stops after
    ``fit.patience`` epochs without improvement. ``monitor``: images and tasks (e.g. over digits
    never trained on) whose mean accuracy per replica is recorded before training and after every
    epoch (NaN once a replica has stopped), only watched, never used to choose anything."""
    seeds = check_seeds("seeds", seeds)
    digits = torch.unique(train.y).tolist()
    labels = torch.arange(n_way, device=train.x.device).repeat_interleave(n_query)

    def sampler(epoch: int, alive: Sequence[int]):
        """Each replica's own tasks for this epoch (seeded by its seed and the epoch), a step at a time."""
        tasks = [sample_tasks(train.y, digits, n_way, k_shot, n_query, episodes * batch, seeds[j] * 7919 + epoch)
                 for j in alive]
        for step in range(episodes):
            sl = slice(step * batch, (step + 1) * batch)
            xs = torch.stack([train.x[torch.cat([t.support[sl], t.query[sl]], -1)] for t in tasks])
            yield xs, labels.expand(len(alive), batch, -1)

    def episode_loss(f: Callable, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """One replica's loss on its (batch, N, k + q, 784) episodes: queries against prototypes."""
        e = f(xs.flatten(0, 2)).unflatten(0, xs.shape[:3])
        logits = prototype_logits(e[:, :, k_shot:].flatten(1, 2), prototypes(e[:, :, :k_shot]))
        return F.cross_entropy(logits.flatten(0, 1), ys.flatten())

    watched: list[dict[int, float]] = []

    def score(reps: Replicas) -> list[float]:
        """Validation-task accuracy of each replica still training (and the watched accuracy)."""
        if monitor is not None:
            watched.append(dict(zip([seeds.index(s) for s in reps.seeds], _task_means(reps, *monitor))))
        return _task_means(reps, val.x, val_tasks)

    models = replicate(make, seeds)
    if monitor is not None:  # epoch 0: untrained
        params, buffers = stack_module_state(models)
        untrained = Replicas(copy.deepcopy(models[0]).to("meta"), params, buffers, seeds, [])
        watched.append(dict(enumerate(_task_means(untrained, *monitor))))
    reps = fit_replicas(models, train, seeds, epochs=fit.max_epochs, lr=fit.lr, objective=episode_loss,
                        batches=sampler, score=score, patience=fit.patience)
    curve = [[w.get(j, math.nan) for j in range(len(seeds))] for w in watched]
    return ProtoNets(reps.base, reps.params, reps.buffers, [h.best_epoch for h in reps.history],
                     _val_by_epoch(reps), curve)


def _task_means(reps: Replicas, x: torch.Tensor, tasks: Tasks) -> list[float]:
    """Mean nearest-prototype accuracy over ``tasks`` of each replica's embedding of ``x``."""
    return [task_accuracy(e, tasks).mean().item() for e in reps.logits(x)]


def _val_by_epoch(reps: Replicas) -> list[list[float]]:
    """Validation accuracy per epoch (rows) and replica (columns), NaN after a replica stopped."""
    n = max(len(h.val_acc) for h in reps.history)
    return [[h.val_acc[e] if e < len(h.val_acc) else math.nan for h in reps.history] for e in range(n)]


# --- the fine-tuning baseline: a new head per task --------------------------------------------

def finetune_heads(feats: torch.Tensor, tasks: Tasks, *, steps: int, lr: float = 1e-2,
                   record: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """A fresh linear head (zero-initialised) per replica and task on frozen features ``feats``
    (K, n, d), trained full-batch with Adam for ``steps`` steps on the task's support images, all
    K·T heads at once. Returns query accuracy (K, T) and, with ``record``, the mean query accuracy
    after every step (used on validation tasks to choose ``steps``)."""
    steps = check_int("steps", steps, 1)
    k_, t, n, k = feats.shape[0], len(tasks), tasks.n_way, tasks.support.shape[-1]
    sup = feats[:, tasks.support.flatten(1)]  # (K, T, N·k, d)
    qry = feats[:, tasks.query.flatten(1)]
    ys = torch.arange(n, device=feats.device).repeat_interleave(k).expand(k_, t, -1)
    yq = tasks.query_labels().expand(k_, -1, -1)
    w = torch.zeros(k_, t, feats.shape[-1], n, device=feats.device, requires_grad=True)
    b = torch.zeros(k_, t, 1, n, device=feats.device, requires_grad=True)
    opt = ReplicaAdam([w, b], lr)  # the book's one Adam; every head has its own moments
    curve = []
    for _ in range(steps):
        loss = F.cross_entropy((sup @ w + b).flatten(0, 2), ys.flatten(), reduction="sum") / (n * k)
        opt.step(torch.autograd.grad(loss, [w, b]))
        if record:
            with torch.no_grad():
                curve.append(((qry @ w + b).argmax(-1) == yq).float().mean().item())
    with torch.no_grad():
        acc = ((qry @ w + b).argmax(-1) == yq).float().mean(-1)
    return acc.cpu(), np.array(curve)


@dataclass
class Meta:
    """Per k: accuracy of each method on every test task for every seed, (K, T); the
    parameter-free "prototypes on pixels" baseline has no seed, (1, T), on the same tasks."""

    ks: list[int]
    n_way: int
    acc: dict[str, dict[int, torch.Tensor]]
    steps: dict[int, int]
    epochs: dict[str, list[int]]
    cpu_seconds: dict[str, float]
    curve: dict[str, list] = field(default_factory=dict)  # protonet per epoch: val (training digits), held out

    def per_seed(self, method: str, k: int) -> list[float]:
        """Mean task accuracy per seed."""
        return self.acc[method][k].mean(-1).tolist()

    def as_dict(self) -> dict:
        return {"ks": self.ks, "n_way": self.n_way, "steps": self.steps, "epochs": self.epochs,
                "cpu_seconds": self.cpu_seconds, "curve": self.curve,
                "acc": {m: {k: v.tolist() for k, v in d.items()} for m, d in self.acc.items()}}


def meta_learning(make_body: Callable[[], nn.Module], make_net: Callable[[int], nn.Module], train: Split,
                  val: Split, test: Split, train_digits: Sequence[int], test_digits: Sequence[int],
                  seeds: Sequence[int], *, n_way: int, ks: Sequence[int] = (1, 5), n_query: int = 15,
                  n_tasks: int = 100, episodes: int = 20, max_steps: int = 200, fit: Fit = Fit(),
                  held_out_val: Split | None = None) -> Meta:
    """Prototypical networks (episodic on ``train_digits``) against a classifier pretrained on the
    same images, used two ways: nearest prototype on its features, and a fine-tuned head per
    task. Test tasks are N-way k-shot over ``test_digits`` (never seen in training); everything is
    chosen on validation tasks over ``val`` (training digits, held-out images).
    ``held_out_val``: validation images of ``test_digits``; the prototypical network's accuracy
    on tasks over them (and that of nearest prototypes on their pixels) is recorded per epoch
    (``Meta.curve``), to show where episodic training leads on digits it never sees."""
    if set(train_digits) & set(test_digits):
        raise ParameterError(f"test_digits {list(test_digits)} overlap train_digits {list(train_digits)}")
    seeds = check_seeds("seeds", seeds)
    cpu: dict[str, float] = {}
    watch = None
    if held_out_val is not None:
        wt = sample_tasks(held_out_val.y, test_digits, n_way, max(ks), n_query, n_tasks, 3)
        watch = (held_out_val.x, wt)
    keep = torch.tensor(list(train_digits), device=train.y.device)
    train = Split(train.x[torch.isin(train.y, keep)], train.y[torch.isin(train.y, keep)])
    val = Split(val.x[torch.isin(val.y, keep)], val.y[torch.isin(val.y, keep)])
    t0 = time.process_time()
    val_eps = sample_tasks(val.y, train_digits, n_way, max(ks), n_query, n_tasks, 1)
    proto = train_protonet(make_body, train, val, val_eps, seeds, n_way=n_way, k_shot=max(ks), n_query=n_query,
                           episodes=episodes, fit=fit, monitor=watch)
    cpu["protonet"] = time.process_time() - t0
    curve: dict[str, list] = {}
    if watch is not None:
        curve = {"k": max(ks), "episodes_per_epoch": episodes, "val": proto.val_acc, "held_out": proto.monitor,
                 "pixels": task_accuracy(watch[0].flatten(1), watch[1]).mean().item()}
    t0 = time.process_time()
    clf = train_classifier(make_net, train, val, train_digits, seeds, fit)
    nets = clf.unstack()
    cpu["pretrained"] = time.process_time() - t0
    feats_test = torch.stack([embed_features(n, test.x) for n in nets])
    feats_val = torch.stack([embed_features(n, val.x) for n in nets])
    pemb = proto.embed(test.x)
    acc: dict[str, dict[int, torch.Tensor]] = {"protonet": {}, "prototypes on pretrained": {},
                                               "fine-tuned head": {}, "prototypes on pixels": {}}
    steps: dict[int, int] = {}
    t_ft = 0.0
    for k in ks:
        tt = sample_tasks(test.y, test_digits, n_way, k, n_query, n_tasks, 1000 + k)
        vt = sample_tasks(val.y, train_digits, n_way, k, n_query, n_tasks, 2000 + k)
        acc["protonet"][k] = torch.stack([task_accuracy(e, tt) for e in pemb]).cpu()
        acc["prototypes on pretrained"][k] = torch.stack([task_accuracy(f, tt) for f in feats_test]).cpu()
        acc["prototypes on pixels"][k] = task_accuracy(test.x.flatten(1), tt)[None].cpu()  # no seed: (1, T)
        t0 = time.process_time()
        steps[k] = int(np.argmax(finetune_heads(feats_val, vt, steps=max_steps, record=True)[1])) + 1
        acc["fine-tuned head"][k] = finetune_heads(feats_test, tt, steps=steps[k])[0]
        t_ft += time.process_time() - t0
    cpu["fine-tuned head"] = t_ft
    return Meta(list(ks), n_way, acc, steps, {"protonet": proto.best_epoch,
                                              "pretrained": [h.best_epoch for h in clf.history]}, cpu, curve)


@torch.no_grad()
def embed_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features of an MLP (its ``features`` part)."""
    return net.features(x)


def meta_curve_figure(m: Meta) -> plt.Figure:
    """The prototypical network during episodic training: accuracy on validation tasks over the
    training digits and over the held-out digits (mean ± std over the seeds still training at each
    epoch, epoch 0 = untrained),
    and nearest prototypes on pixels for the held-out tasks."""
    if not m.curve:
        raise ParameterError("this Meta has no curve; run meta_learning with held_out_val")
    c = m.curve
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    held = np.array(c["held_out"], dtype=float) * 100  # NaN (or None) once a replica has stopped
    val = np.array(c["val"], dtype=float) * 100

    def band(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean and std over the replicas still training at each epoch."""
        live = (~np.isnan(a)).sum(1)
        std = np.array([np.nanstd(r, ddof=1) if k > 1 else 0.0 for r, k in zip(a, live)])
        return np.nanmean(a, 1), std if a.shape[1] > 1 else None

    for a, x0, marker, label in ((held, 0, "o", "held-out digits (5-9)"),
                                 (val, 1, "s", "training digits (0-4), validation")):
        mean, std = band(a)
        ax.errorbar(range(x0, x0 + len(a)), mean, yerr=std, marker=marker, capsize=3, label=label)
    ax.axhline(100 * c["pixels"], color="gray", ls=":", label="prototypes on pixels (held-out)")
    ax.set_xlabel(f"epoch ({c['episodes_per_epoch']} steps of episodes each; 0 = untrained)")
    ax.set_ylabel(f"{m.n_way}-way {c['k']}-shot accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def curve_summary(m: Meta) -> dict[str, float]:
    """The held-out curve in three numbers (%), for the prose: ``h0`` untrained, ``hmax`` the
    highest mean over the seeds still training at an epoch, ``hlast`` the mean over seeds of each
    seed's accuracy at the epoch it stopped (seeds stop on their own, so later rows hold NaN)."""
    if not m.curve:
        raise ParameterError("this Meta has no curve; run meta_learning with held_out_val")
    held = np.array(m.curve["held_out"], dtype=float) * 100
    last = [col[~np.isnan(col)][-1] for col in held.T]
    return {"h0": float(held[0].mean()), "hmax": float(np.nanmax(np.nanmean(held, 1))),
            "hlast": float(np.mean(last))}


def meta_table(m: Meta) -> str:
    """Markdown: each method's accuracy on N-way k-shot test tasks, mean ± std over seeds (each
    seed's accuracy the mean over its tasks), as every spread in the book and the claims."""
    from xferutils.core.metrics import spread
    from xferutils.pages.plotting import markdown_table

    rows = [[method, *(spread(m.per_seed(method, k)).fmt() for k in m.ks)] for method in m.acc]
    return markdown_table(["method", *[f"{m.n_way}-way {k}-shot, %" for k in m.ks]], rows, "l" + "r" * len(m.ks))


# --- learning curves: labels against accuracy -------------------------------------------------

def labels_to_reach(ns: Sequence[int], acc: Sequence[float], target: float) -> float:
    """Labels needed for a mean learning curve to reach ``target``: interpolated on log n between
    the first two points that straddle it; ``n[0]`` if already there; ``inf`` if never."""
    ns, acc = [float(n) for n in ns], [float(a) for a in acc]
    if len(ns) != len(acc) or not ns:
        raise ParameterError("ns and acc must be non-empty and of equal length")
    if any(b <= a for a, b in zip(ns, ns[1:])) or ns[0] <= 0:
        raise ParameterError(f"ns must be positive and increasing, got {ns}")
    if acc[0] >= target:
        return ns[0]
    for (n0, a0), (n1, a1) in zip(zip(ns, acc), zip(ns[1:], acc[1:])):
        if a1 >= target:
            w = (target - a0) / (a1 - a0)
            return float(math.exp(math.log(n0) + w * (math.log(n1) - math.log(n0))))
    return math.inf


def curve_figure(ns: Sequence[int], curves: dict[str, dict[int, list[float]]], target: float = 0.9) -> plt.Figure:
    """Transfer accuracy against labelled images (log scale), mean ± std over seeds per method."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, (name, c) in enumerate(curves.items()):
        arr = np.array([c[n] for n in ns]) * 100
        ax.errorbar(ns, arr.mean(1), yerr=arr.std(1, ddof=1), marker="o", capsize=3, label=name)
    ax.axhline(100 * target, color="gray", ls=":", lw=1, label=f"{100 * target:.0f} %")
    return log_count_axes(fig, ax, "labelled transfer-digit images", "transfer digit, test (%)")


# --- few-shot acceleration: transfer accuracy against labels (document 000, solution 2) ------------

CURVE_METHODS = ("scratch", "fine-tune Network 1", "feature bridging", "distillation + labels",
                 "logistic regression on pixels")


def pixel_logistic_predict(train: Split, x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Classes predicted for ``x`` by multinomial logistic regression on raw pixels fitted on
    ``train`` (the fixed recipe of :mod:`xferutils.core.baselines`, with classes weighted to balance,
    as the networks' rows tile the few new-digit images to balance)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from xferutils.core.baselines import C, _arrays, _classes, _threads

    xtr, ytr = _arrays(train, "train")
    _classes(ytr)
    xte = x.detach().float().cpu().numpy().reshape(len(x), -1)
    if xte.shape[1] != xtr.shape[1]:
        raise ParameterError(f"x has {xte.shape[1]} inputs per image, train {xtr.shape[1]}")
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=1000, class_weight="balanced",
                             random_state=check_int("seed", seed, 0))
    with warnings.catch_warnings(), _threads():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, ytr)
        pred = clf.predict(xte)
    return torch.as_tensor(pred, device=x.device)


@dataclass
class Curves:
    """Per method and number of labels n: transfer and retention per seed; CPU seconds per method;
    the epoch each replica kept; ``rows``: per n, each seed's training set size (scratch and
    fine-tuning train on these rows)."""

    ns: list[int]
    transfer: dict[str, dict[int, list[float]]]
    retention: dict[str, dict[int, list[float]]]
    cpu_seconds: dict[str, dict[int, float]]
    epochs: dict[str, dict[int, list[int]]]
    rows: dict[int, list[int]] = field(default_factory=dict)

    def images(self, method: str, n: int) -> list[float]:
        """Per seed, the training images ``method`` processed up to its kept epoch with ``n`` labels."""
        return [float(e * r) for e, r in zip(self.epochs[method][n], self.rows[n])]

    def mean(self, method: str) -> list[float]:
        return [float(np.mean(self.transfer[method][n])) for n in self.ns]

    def as_dict(self) -> dict:
        return {"ns": self.ns, "transfer": self.transfer, "retention": self.retention,
                "cpu_seconds": self.cpu_seconds, "epochs": self.epochs, "rows": self.rows}


def label_curve(case, nets1: Sequence[nn.Module], nets2: Sequence[nn.Module], own: Split, transfer_pool: Split,
                unlabelled_x: torch.Tensor, val: Split, test: Split, seeds: Sequence[int], ns: Sequence[int], *,
                make: Callable[[int], nn.Module], T: float, feats_train, feats_test, settings,
                fit: Fit = Fit(), feats_val=None, finetune_epochs: int | None = None) -> Curves:
    """For each n in ``ns``, every method with n labelled transfer-digit images (each seed its own
    draw): a fresh network (scratch), Network 1 with a grown head fine-tuned, chapter 4's
    feature bridging (``shared_layers.train_approach``), and distillation from the donor plus the
    labels. ``own``: Network 1's labelled digits; ``val``: labelled validation images of
    ``digits1 + [transfer]`` (distillation stops on agreement with its teacher instead);
    ``feats_val``: their features, on which bridging stops as in chapter 4. ``finetune_epochs``:
    fine-tuning Network 1 trains for exactly that many epochs (a budget fixed beforehand) instead
    of stopping on ``val``, where the new digit is one class of several and Network 1 starts with
    every old digit right, so that validation accuracy barely moves while the new digit is learnt.
    The last column is logistic regression on the raw pixels of the same labelled images."""
    if finetune_epochs is not None:
        finetune_epochs = check_int("finetune_epochs", finetune_epochs, 1)
    from xferutils.chapters.what_works import distillation as distill
    from xferutils.core import sharing as shared
    from xferutils.core.data import sample
    from xferutils.chapters.what_works.freezing import grow_head, balanced_rows, relabelled

    seeds = check_seeds("seeds", seeds)
    ns = [check_int("n", n, 1, len(transfer_pool)) for n in ns]
    digits = [*case.digits1, case.transfer]
    lookup = torch.tensor(digits, device=test.y.device)
    res = {m: {} for m in CURVE_METHODS}
    ret = {m: {} for m in CURVE_METHODS}
    eps = {m: {} for m in CURVE_METHODS}
    cpu: dict[str, dict[int, float]] = {m: {} for m in CURVE_METHODS}
    sizes: dict[int, list[int]] = {}
    own_pc = len(own) // len(case.digits1)
    vrel = relabelled(val, digits)
    for n in ns:
        extras = [sample(transfer_pool, n, s) for s in seeds]
        reps_own = max(1, -(-n // own_pc))
        own_n = Split(own.x.repeat(reps_own, 1), own.y.repeat(reps_own))
        rows = [balanced_rows(own_n, e, digits, own_pc * reps_own) for e in extras]
        sizes[n] = [len(r) for r in rows]
        for method in CURVE_METHODS:
            t0 = time.process_time()
            if method == "logistic regression on pixels":
                pred = torch.stack([pixel_logistic_predict(
                    Split(torch.cat([own.x, e.x]), torch.cat([own.y, e.y])), test.x, seed=s)
                    for e, s in zip(extras, seeds)])
                m = shared.transfer_metrics(pred, test.y, case)
                e = [0] * len(seeds)
            elif method == "feature bridging":
                s = shared.Settings(**{**settings.__dict__, "n_bridge": n})
                out = shared.train_approach("bridging", feats_train, case, seeds, s, val=feats_val)
                m = shared.transfer_metrics(out.predict1(feats_test.f1), feats_test.y, case)
                e = [h.best_epoch for h in out.history]
            else:
                if method == "distillation + labels":
                    reps, _ = distill.distill_into(nets1, nets2, own, unlabelled_x, val.x, case.digits1,
                                                   case.digits2, case.transfer, seeds, T=T, extras=extras, fit=fit)
                else:
                    models = (replicate(lambda: make(len(digits)), seeds) if method == "scratch"
                              else [grow_head(net, 1, s) for net, s in zip(nets1, seeds)])
                    fixed = method != "scratch" and finetune_epochs is not None
                    reps = fit_replicas(models, rows, seeds, epochs=finetune_epochs if fixed else fit.max_epochs,
                                        lr=fit.lr, batch_size=fit.batch(len(rows[0])),
                                        val=None if fixed else vrel, patience=None if fixed else fit.patience)
                m = shared.transfer_metrics(lookup[reps.predict(test.x)], test.y, case)
                e = [h.best_epoch for h in reps.history]
            cpu[method][n] = time.process_time() - t0
            res[method][n], ret[method][n], eps[method][n] = m["transfer"], m["retention"], e
    return Curves(list(ns), res, ret, cpu, eps, sizes)
