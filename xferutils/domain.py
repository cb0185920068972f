"""Domain adaptation pieces: gradient reversal (DANN, chapters 3 and 4)."""
from __future__ import annotations

import torch


def grad_reverse(x: torch.Tensor, lam: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-lam`` in the backward pass.

    Written without a custom autograd.Function, so it works inside ``torch.func.vmap``.
    """
    x0 = x.detach()
    return x0 - lam * (x - x0)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s ramp λ_p = 2 / (1 + exp(-γ p)) - 1 for training progress p in [0, 1]."""
    import math

    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0
