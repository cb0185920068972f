"""The book's networks, each split into a feature extractor φ and a head g (f = g∘φ).

- :func:`dense_net`: 784-512-256-128-10, the dense network of seed 002 (chapters 1, 4, 5).
- :func:`wide_nn` and :func:`deep_nn`: WideNN and DeepNN of seed 000 (chapters 3, 5).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import check_int


class MLP(nn.Module):
    """A ReLU multilayer perceptron ``head(features(x))`` on flattened 28×28 images."""

    def __init__(self, widths: Sequence[int], n_classes: int) -> None:
        super().__init__()
        widths = [check_int("width", w, 1) for w in widths]
        check_int("n_classes", n_classes, 1)
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], n_classes)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features φ(x)."""
        return self.features(x.flatten(1))


def dense_net(n_classes: int = 10) -> MLP:
    """Seed 002's DenseNet: 784-512-256-128 features and a 128→classes head."""
    return MLP([784, 512, 256, 128], n_classes)


def wide_nn(n_classes: int = 10) -> MLP:
    """Seed 000's WideNN: 6 linear layers, widest 256, 64-d penultimate features."""
    return MLP([784, 256, 256, 128, 128, 64], n_classes)


def deep_nn(n_classes: int = 10) -> MLP:
    """Seed 000's DeepNN: 8 linear layers, widest 128, 32-d penultimate features."""
    return MLP([784, 128, 128, 128, 64, 64, 32, 32], n_classes)


ARCHITECTURES = {"dense": dense_net, "wide": wide_nn, "deep": deep_nn}


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The linear layers of ``model`` from input to output (the l = 1..L of layer-wise rules)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def embed(model: MLP, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Penultimate features of many inputs, in batches, without gradients."""
    was_training = model.training
    model.eval()
    out = torch.cat([model.embed(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out
