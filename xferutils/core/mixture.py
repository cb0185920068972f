"""A Bernoulli mixture of two classifiers, sampled and in expectation (chapter 6).

Each sample goes to the first model (the dense net) with probability ``1 − q`` and to the second
(the sparse net) with probability ``q``. Its expected prediction is ``(1 − q)·p₁ + q·p₂``.
Both functions take logits with any leading axes (replicas, several q values) and a ``q`` that
broadcasts against them, so seeds and q values run together.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from xferutils.core.config import ParameterError, check_float


def check_q(q: float | torch.Tensor) -> torch.Tensor:
    """``q`` (one value or a tensor of values) within [0, 1], as a float tensor."""
    if isinstance(q, torch.Tensor):
        if not bool(((q >= 0) & (q <= 1)).all()):
            raise ParameterError(f"q must lie in [0, 1]; got values from {q.min().item():.3g} "
                                 f"to {q.max().item():.3g}")
        return q.float()
    return torch.tensor(check_float("q", q, 0.0, 1.0))


def expected_log_probs(logits1: torch.Tensor, logits2: torch.Tensor,
                       q: float | torch.Tensor) -> torch.Tensor:
    """log((1 − q)·p₁ + q·p₂), computed stably; ``q`` is a number or one value per leading index."""
    q = check_q(q)
    return mixed_log_probs(logits1, logits2, q.reshape(q.shape + (1,) * (logits1.dim() - q.dim())))


def mixed_log_probs(logits1: torch.Tensor, logits2: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """:func:`expected_log_probs` without the check (usable inside ``vmap``; ``q`` broadcasts)."""
    q = q.to(logits1.device).detach()
    w1 = torch.where(q < 1, torch.log1p(-q.clamp(max=1 - 1e-12)), -math.inf)
    w2 = torch.where(q > 0, torch.log(q.clamp(min=1e-12)), -math.inf)
    return torch.logsumexp(torch.stack([w1 + logits1.log_softmax(-1), w2 + logits2.log_softmax(-1)]), 0)


def route(n: int, q: float | torch.Tensor, generator: torch.Generator | None = None,
          device: torch.device | str = "cpu") -> torch.Tensor:
    """Bernoulli(q) draws, shape (n,) or (R, n): True sends a sample to the second model."""
    q = check_q(q)
    u = torch.rand(q.shape + (n,), generator=generator, device=device)
    return u < q.to(device).unsqueeze(-1)


def sampled_logits(logits1: torch.Tensor, logits2: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """The routed prediction: sample i gets model 2's logits where ``chosen[..., i]``."""
    return torch.where(chosen.unsqueeze(-1), logits2, logits1)


class Mixture(nn.Module):
    """Document 002's ``MixtureModel``, fixed: a module with outputs of shape (n, classes).

    ``forward`` samples the route per input and runs each model only on its own inputs;
    ``expected`` returns the log-probabilities of the mixture in expectation.
    """

    def __init__(self, model1: nn.Module, model2: nn.Module, q: float) -> None:
        super().__init__()
        self.model1, self.model2 = model1, model2
        self.q = float(check_q(q))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        chosen = route(len(x), self.q, generator, x.device)
        routes = ((~chosen).nonzero().flatten(), self.model1), (chosen.nonzero().flatten(), self.model2)
        parts = [(rows, m(x[rows])) for rows, m in routes if len(rows)]
        out = parts[0][1].new_empty((len(x), parts[0][1].shape[-1]))
        for rows, logits in parts:
            out[rows] = logits
        return out

    def expected(self, x: torch.Tensor) -> torch.Tensor:
        return expected_log_probs(self.model1(x), self.model2(x), self.q)
