"""Traversing the mixture from the dense to the sparse network, and the baselines (chapter 6).

The mixture weight ``q`` rises from 0 to 1 in ``steps`` steps on a schedule; at each step both
networks train for ``batches`` batches on the mixture (each sample routed to the sparse net with
probability ``q``), plus a retention term:

- ``none``: nothing;
- ``trust``: λ·KL(previous step's mixture ‖ this mixture), a trust region around the last step
  (seed 002's "optimal infinitesimal step" made concrete);
- ``dense``: λ·KL(original dense net ‖ mixture), distillation toward where the path started;
- ``anchor``: λ/2·‖θ − θ_dense‖², L2-SP toward the dense weights.

Baselines run through the same loop, with the same images and batches: ``abrupt`` (q = 1 from
the first step), ``distill`` (q = 1 with the ``dense`` term: Hinton distillation at T = 1),
``scratch`` (q = 1, sparse net from a random start) and ``gmp`` (q = 0: the dense net pruned by
weight magnitude on Zhu & Gupta's cubic schedule, which reaches its final sparsity at the middle
step, ``gmp_ramp(steps)``, and fine-tunes at that sparsity for the remaining steps). Every method, seed and λ is one replica of one
vectorized model.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from .config import ParameterError, check_choice, check_float, check_int
from .data import Split
from .ensemble import Replicas, _adam_step, replicate
from .mixture import mixed_log_probs, sampled_logits
from .sparse import KINDS, check_k, sparse_net

RETENTION = ("none", "trust", "dense", "anchor")
LABELS = {"none": "traversal, no retention", "trust": "traversal + trust region (KL to last step)",
          "dense": "traversal + distillation to the dense net", "anchor": "traversal + L2-SP anchor",
          "abrupt": "abrupt switch (fine-tune at q = 1)", "distill": "direct distillation",
          "scratch": "sparse net from scratch (reference)", "gmp": "gradual magnitude pruning"}


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


def baselines(prune: float = 0.9, lam: float = 1.0) -> list[Method]:
    """The dense-to-sparse baselines: abrupt switch, direct distillation, scratch, gmp."""
    return [Method("abrupt", schedule="abrupt"), Method("distill", "dense", lam, "abrupt"),
            Method("scratch", schedule="abrupt", init="random"),
            Method("gmp", schedule="zero", prune=prune)]


@dataclass
class Traversal:
    """Accuracies along the path: ``acc[split][part]`` is (methods, seeds, steps) for each split
    given (``val``/``test``, on their first ``n_eval`` images) and part ``mixture``/``dense``/
    ``sparse``; ``final[split]`` (methods, seeds) is the full-split accuracy of the network each
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

    def index(self, name: str) -> int:
        return [m.name for m in self.methods].index(name)

    def net(self, name: str, seed_index: int = 0) -> nn.Module:
        """The network ``name`` ends with for one seed, as an ordinary module."""
        m = self.index(name)
        r = m * len(self.seeds) + seed_index
        part = "d." if self.q[m, -1] < 1 else "s."
        net = sparse_net(self.K, self.kind) if part == "s." else _dense()
        net.load_state_dict({k[2:]: v[r] for k, v in self.params.items() if k.startswith(part)})
        return net.eval()

    def as_dict(self) -> dict:
        return {"methods": [m.__dict__ for m in self.methods], "seeds": self.seeds, "q": self.q,
                "images": self.images, "final": self.final,
                "acc": self.acc, "K": self.K, "kind": self.kind}


def _dense() -> nn.Module:
    from .models import dense_net
    return dense_net()


def traverse(dense: Replicas, methods: Sequence[Method], train: Split, evals: dict[str, Split], *,
             K: int = 10, kind: str = "softmax", steps: int = 5, batches: int = 10,
             batch_size: int = 256, lr: float = 1e-3, n_eval: int = 1000) -> Traversal:
    """Run every method from each trained dense replica (one per seed), all as one vectorized model.

    ``evals`` maps split names (``"val"``, ``"test"``) to the data measured after every step.
    """
    K, kind = check_k(K), check_choice("kind", kind, KINDS)
    steps, batches = check_int("steps", steps, 1), check_int("batches", batches, 1)
    bs, n_eval = check_int("batch_size", batch_size, 1, len(train)), check_int("n_eval", n_eval, 1)
    check_float("lr", lr, 0.0)
    methods = list(methods)
    if not methods:
        raise ParameterError("methods is empty; give at least one Method")
    seeds, n_s, M = dense.seeds, len(dense.seeds), len(methods)
    R, dev = M * n_s, train.x.device
    per_r = lambda values: torch.tensor(values, device=dev, dtype=torch.float).repeat_interleave(n_s)  # noqa: E731
    q = torch.tensor([q_schedule(m.schedule, steps) for m in methods], device=dev)
    q_r = q.repeat_interleave(n_s, 0)
    lam_kl = per_r([m.lam if m.retention in ("trust", "dense") else 0.0 for m in methods])
    lam_l2 = per_r([m.lam if m.retention == "anchor" else 0.0 for m in methods])
    lr_r = torch.full((R,), float(lr), device=dev)

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
    for v in params.values():
        v.requires_grad_(True)
    state = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in params.items()}
    prune = per_r([m.prune for m in methods])
    masks = {k: torch.ones_like(v) for k, v in params.items() if k.startswith("d.") and v.dim() == 3}

    def one(p: dict[str, torch.Tensor], x: torch.Tensor, prefix: str) -> torch.Tensor:
        base = d_base if prefix == "d." else s_base
        return functional_call(base, {k[2:]: v for k, v in p.items() if k.startswith(prefix)}, (x,))

    def logits(p: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return one(p, x, "d."), one(p, x, "s.")

    def loss_one(p, a, xb, yb, chosen, qr, target, lkl, ll2):
        ld, ls = logits(p, xb)
        ce = F.cross_entropy(sampled_logits(ld, ls, chosen), yb)
        return ce + lkl * kl_to(target, mixed_log_probs(ld, ls, qr)) + ll2 * l2_sp(p, a)

    batched_loss = vmap(loss_one)
    evaluate = _evaluator(logits)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    acc = {sp: {pt: torch.zeros(M, n_s, steps) for pt in ("mixture", "dense", "sparse")} for sp in evals}
    step_n = batches * bs
    for s in range(steps):
        idx = torch.stack([torch.randperm(len(train), generator=g)[:step_n] for g in gens])
        u = torch.stack([torch.rand(step_n, generator=g) for g in gens])
        idx, u = idx.repeat(M, 1).to(dev), u.repeat(M, 1).to(dev)  # the same images for every method
        chosen = u < q_r[:, s:s + 1]
        q_prev = q_r[:, s - 1] if s > 0 else torch.zeros(R, device=dev)
        target = _targets(methods, n_s, params, anchor, train.x[idx], q_prev, logits)
        ramp = gmp_ramp(steps)
        _prune(masks, params, prune, min(s + 1, ramp), ramp)
        for b in range(batches):
            cols = slice(b * bs, (b + 1) * bs)
            losses = batched_loss(params, anchor, train.x[idx[:, cols]], train.y[idx[:, cols]],
                                  chosen[:, cols], q_r[:, s], target[:, cols], lam_kl, lam_l2)
            grads = torch.autograd.grad(losses.sum(), list(params.values()))
            with torch.no_grad():
                for (k, p), g in zip(params.items(), grads):
                    _adam_step(p, g, *state[k], s * batches + b + 1, lr_r)
                    if k in masks:
                        p.mul_(masks[k])
        for sp, data in evals.items():
            ld, ls = evaluate(params, data.x[:n_eval])
            mix = mixed_log_probs(ld, ls, q_r[:, s].view(R, 1, 1))
            for pt, lg in (("dense", ld), ("sparse", ls), ("mixture", mix)):
                hits = (lg.argmax(-1) == data.y[:n_eval]).float().mean(-1)
                acc[sp][pt][:, :, s] = hits.view(M, n_s).cpu()
    ends_sparse = q_r[:, -1] == 1
    final = {sp: _final_accuracy(params, ends_sparse, one, data).view(M, n_s).cpu()
             for sp, data in evals.items()}
    for v in params.values():
        v.requires_grad_(False)
    return Traversal(methods, list(seeds), q.cpu(), [step_n * (s + 1) for s in range(steps)], acc,
                     final, params, K, kind, masks)


def _evaluator(logits: Callable) -> Callable:
    """Both networks' logits for every replica on shared inputs, in chunks, without gradients."""
    call = vmap(logits, in_dims=(0, None))

    @torch.no_grad()
    def run(params: dict[str, torch.Tensor], x: torch.Tensor, chunk: int = 2500):
        outs = [call(params, x[i:i + chunk]) for i in range(0, len(x), chunk)]
        return torch.cat([o[0] for o in outs], 1), torch.cat([o[1] for o in outs], 1)

    return run


@torch.no_grad()
def _final_accuracy(params: dict, ends_sparse: torch.Tensor, one: Callable, data: Split,
                    chunk: int = 2500) -> torch.Tensor:
    """Accuracy of the network each replica ends with (only that network is evaluated)."""
    out = torch.zeros(len(ends_sparse), device=data.x.device)
    for prefix, rows in (("s.", torch.nonzero(ends_sparse).flatten()),
                         ("d.", torch.nonzero(~ends_sparse).flatten())):
        if len(rows) == 0:
            continue
        sub = {k: v[rows] for k, v in params.items() if k.startswith(prefix)}
        call = vmap(lambda p, x, pre=prefix: one(p, x, pre), in_dims=(0, None))
        hits = sum((call(sub, data.x[i:i + chunk]).argmax(-1) == data.y[i:i + chunk]).sum(-1)
                   for i in range(0, len(data), chunk))
        out[rows] = hits.float() / len(data)
    return out


@torch.no_grad()
def _targets(methods: list[Method], n_s: int, params: dict, anchor: dict, x: torch.Tensor,
             q_prev: torch.Tensor, logits: Callable) -> torch.Tensor:
    """Teacher probabilities per replica: the previous mixture (trust) or the dense net (dense)."""
    out = torch.full(x.shape[:2] + (10,), 0.1, device=x.device)
    call = vmap(logits)
    for kind in ("trust", "dense"):
        rows = torch.tensor([m * n_s + i for m, meth in enumerate(methods) if meth.retention == kind
                             for i in range(n_s)], dtype=torch.long, device=x.device)
        if len(rows) == 0:
            continue
        src = params if kind == "trust" else anchor
        ld, ls = call({k: v[rows] for k, v in src.items()}, x[rows])
        qp = q_prev[rows].view(-1, 1, 1) if kind == "trust" else torch.zeros(len(rows), 1, 1, device=x.device)
        out[rows] = mixed_log_probs(ld, ls, qp).exp()
    return out


@torch.no_grad()
def _prune(masks: dict, params: dict, prune: torch.Tensor, step: int, steps: int) -> None:
    """Set each gmp replica's smallest-magnitude weights to zero, to this step's cubic sparsity."""
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
    """The method of ``retention`` on ``schedule`` whose final validation accuracy is highest."""
    options = [i for i, m in enumerate(tr.methods) if m.retention == retention and m.schedule == schedule]
    if not options:
        raise ParameterError(f"no method with retention={retention!r} and schedule={schedule!r}")
    return tr.methods[max(options, key=lambda i: float(tr.final["val"][i].mean()))]


def target_curve(tr: Traversal, split: str = "test") -> torch.Tensor:
    """(methods, seeds, steps): accuracy of the network each method ends with, after every step."""
    ends_sparse = (tr.q[:, -1] == 1).view(-1, 1, 1)
    return torch.where(ends_sparse, tr.acc[split]["sparse"], tr.acc[split]["dense"])


def worst_along_path(tr: Traversal, split: str = "test") -> torch.Tensor:
    """(methods, seeds): the lowest mixture accuracy over the steps."""
    return tr.acc[split]["mixture"].min(-1).values


def register_claims(family, tr: Traversal, dense_test: Sequence[float], tol: float = 0.01,
                    main: str = "trust") -> None:
    """Chapter 6's claims: seed 002's hopes ("002-...") and the book's comparisons ("ch6-..."),
    for the traversal method ``main``."""
    dense = torch.tensor(list(dense_test))
    fin = {m.name: tr.final["test"][i] for i, m in enumerate(tr.methods)}
    worst = worst_along_path(tr)[tr.index(main)]
    family.threshold("002-accuracy-sustained", "seed 002", f"along the {main} traversal, the "
                     "mixture's test accuracy never falls more than 1 point below the dense net's",
                     (worst - dense) * 100, -100 * tol, unit="points")
    family.threshold("002-sparse-useful", "seed 002", f"the sparse net at the end of the {main} "
                     "traversal is within 1 point of the dense net", (fin[main] - dense) * 100,
                     -100 * tol, unit="points")
    same = " (same images, same batches)"
    if main != "none":
        family.direction("002-beats-other-traversals", "seed 002", f"optimal retention ({main}) "
                         "beats other traversal strategies: it ends with a more accurate sparse "
                         "net than the same traversal without retention (none)" + same,
                         fin[main] * 100, fin["none"] * 100, unit="points")
    family.direction("002-sparse-from-prefit", "seed 002", "transfer from a prefit model, as "
                     "recommended: the abrupt switch from the dense weights ends with a more "
                     "accurate sparse net than the same training from scratch" + same,
                     fin["abrupt"] * 100, fin["scratch"] * 100, unit="points")
    pairs = [(f"ch6-{main}-vs-{b}", main, b) for b in ("abrupt", "distill", "gmp") if b != main]
    pairs += [("ch6-gradual-vs-abrupt", "none", "abrupt")] if main != "none" else []
    for cid, a, b in pairs:
        family.direction(cid, "book", f"{a} ends with a more accurate network than {b}" + same,
                         fin[a] * 100, fin[b] * 100, unit="points")


def claim_id(main: str, other: str) -> str:
    """The id of the claim comparing the traversal ``main`` with ``other`` (chapter 6)."""
    return "002-beats-other-traversals" if other == "none" else f"ch6-{main}-vs-{other}"


def final_table(tr: Traversal, dense_test: Sequence[float]) -> str:
    """Markdown: every method's final test accuracy, worst mixture accuracy, and λ."""
    from .metrics import spread
    from .plotting import markdown_table

    worst = worst_along_path(tr)
    rows = [["dense net (reference, start of the path)", "–", spread(dense_test).fmt(), "–"]]
    for i, m in enumerate(tr.methods):
        on_path = spread(worst[i].tolist()).fmt() if 0 < tr.q[i, 0] < 1 else "–"
        lam = f"{m.lam:g}" if m.retention != "none" else "–"
        rows.append([LABELS.get(m.name, m.name), lam,
                     spread(tr.final["test"][i].tolist()).fmt(), on_path])
    return markdown_table(["method", "λ", "final test accuracy (%)", "worst mixture accuracy on the path (%)"],
                          rows, "lrrr")


def traversal_figure(tr: Traversal, names: Sequence[str] | None = None):
    """Left: mixture test accuracy against q per traversal method (mean ± std over seeds).
    Right: accuracy of the network each method ends with against images seen."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for i, m in enumerate(tr.methods):
        if names is not None and m.name not in names:
            continue
        for ax, x, y in ((ax1, tr.q[i].numpy(), tr.acc["test"]["mixture"][i]),
                         (ax2, np.array(tr.images) / 1000, target_curve(tr)[i])):
            if ax is ax1 and not 0 < tr.q[i, 0] < 1:
                continue
            mean, std = 100 * y.mean(0).numpy(), 100 * y.std(0).numpy()
            ax.plot(x, mean, marker="o", ms=3, label=m.name)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax1.set(xlabel="mixture weight q (share of the sparse net)", ylabel="mixture test accuracy (%)")
    ax2.set(xlabel="training images seen (thousands)", ylabel="final network's accuracy (%)")
    ax1.legend(fontsize=9)
    ax2.legend(fontsize=9)
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
