"""The book's one Adam: stacked replicas, one learning rate per replica (every chapter).

:func:`adam_` is the update that :func:`xferutils.core.ensemble.fit_replicas` runs on every path
(the eager loop, the fused step and the CUDA graph of :mod:`xferutils.core.step`) and that
chapter 6's traversal runs; :class:`ReplicaAdam` holds its state for chapter 5's per-task heads.
Its arithmetic is ``torch.optim.Adam``'s (betas 0.9/0.999, eps 1e-8, no weight decay;
``tests/test_optim.py`` compares both branches, and :class:`ReplicaAdam`, with it):

- where the rates may be read on the host (not inside a CUDA graph), the replicas are grouped by
  rate and each group goes through PyTorch's public functional Adam with its fused kernel
  (``torch.optim.adam.adam(..., fused=True)``; on the CPU it reads and writes each tensor once,
  a third of a small MLP's training time);
- inside a CUDA graph the rates are device tensors that change between replays, which
  ``torch.optim`` cannot take per replica; there the same update is written with
  ``torch._foreach_*`` operations, every quantity on the device.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim.adam import adam as functional_adam

BETAS = (0.9, 0.999)
EPS = 1e-8


def adam_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], exp_avgs: Sequence[torch.Tensor],
          exp_avg_sqs: Sequence[torch.Tensor], steps: Sequence[torch.Tensor], rates: Sequence[torch.Tensor],
          *, on_device: bool = False) -> None:
    """One Adam update, in place, of stacked parameters ``params[j]`` (replicas on axis 0).

    ``rates[j]`` holds parameter j's learning rate for each replica (shape (K,); 0 leaves that
    replica's weights unchanged while its moments still run). ``steps[j]`` is parameter j's step
    count, a 0-d float tensor incremented here (the bias corrections use the new count).
    ``on_device=True`` keeps every quantity on the device (no host reads: the CUDA-graph path).
    """
    if not params:
        return
    if on_device or not _fused_supported(params[0].device):
        _foreach_adam(list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), list(steps), list(rates))
        return
    groups: dict[tuple[float, float], list[tuple[torch.Tensor, ...]]] = {}
    for p, g, m, v, step, rate in zip(params, grads, exp_avgs, exp_avg_sqs, steps, rates):
        step.add_(1)
        g = g.contiguous()  # the fused kernel reads memory in order: a transposed gradient would be misread
        host = rate.tolist()
        if len(set(host)) == 1:
            groups.setdefault((host[0], step.item()), []).append((p, g, m, v))
        else:
            for k, r in enumerate(host):
                groups.setdefault((r, step.item()), []).append((p[k], g[k], m[k], v[k]))
    for (rate, count), group in groups.items():
        ps, gs, ms, vs = (list(t) for t in zip(*group))
        # functional Adam increments the counts it is given: each tensor gets its own, one below
        counts = [torch.tensor(count - 1.0, device=ps[0].device) for _ in ps]
        functional_adam(ps, gs, ms, vs, [], counts, fused=True, amsgrad=False, beta1=BETAS[0],
                        beta2=BETAS[1], lr=rate, weight_decay=0.0, eps=EPS, maximize=False)


def _fused_supported(device: torch.device) -> bool:
    """PyTorch's fused Adam kernel exists for this device type."""
    return device.type in ("cpu", "cuda", "mps")


def _foreach_adam(ps: list[torch.Tensor], gs: list[torch.Tensor], ms: list[torch.Tensor],
                  vs: list[torch.Tensor], counts: list[torch.Tensor], rates: list[torch.Tensor]) -> None:
    """:func:`adam_` with every quantity on the device (``torch._foreach_*``, no host reads)."""
    b1, b2 = BETAS
    torch._foreach_add_(counts, 1.0)
    torch._foreach_lerp_(ms, gs, 1 - b1)
    torch._foreach_mul_(vs, b2)
    torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
    bc1 = torch._foreach_pow(b1, counts)           # b1^t
    torch._foreach_neg_(bc1)
    torch._foreach_add_(bc1, 1.0)                  # 1 - b1^t
    bc2 = torch._foreach_pow(b2, counts)
    torch._foreach_neg_(bc2)
    torch._foreach_add_(bc2, 1.0)
    torch._foreach_sqrt_(bc2)                      # sqrt(1 - b2^t)
    sizes = torch._foreach_div(rates, bc1)         # lr_k / (1 - b1^t), per replica
    sizes = [s.reshape((-1,) + (1,) * (p.dim() - 1)) for s, p in zip(sizes, ps)]
    denom = torch._foreach_sqrt(vs)
    torch._foreach_div_(denom, bc2)
    torch._foreach_add_(denom, EPS)
    torch._foreach_reciprocal_(denom)
    torch._foreach_mul_(denom, ms)
    torch._foreach_mul_(denom, sizes)
    torch._foreach_sub_(ps, denom)


class ReplicaAdam:
    """:func:`adam_` with its state: moments, counts and one rate per replica (axis 0 of every
    tensor). For a loop that is not :func:`~xferutils.core.ensemble.fit_replicas`'s: chapter 5's
    linear head per few-shot task (one replica per seed, every task's head in one tensor)."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float) -> None:
        self.params = list(params)
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in self.params]
        self.counts = [torch.zeros((), dtype=torch.float32 if p.device.type == "mps" else torch.float64,
                                   device=p.device) for p in self.params]
        self.rates = [torch.full((p.shape[0],), float(lr), device=p.device) for p in self.params]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        """One update of every parameter from its gradient (same order as ``params``)."""
        adam_(self.params, list(grads), [m for m, _ in self.moments], [v for _, v in self.moments],
              self.counts, self.rates)
