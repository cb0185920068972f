"""Small shared pieces of the tests: a toy MLP, and which parameters a step changed (the toy split
is the ``data`` fixture of ``conftest.py``)."""
import torch

import xferutils as xu


def net(n_classes: int = 3) -> xu.models.MLP:
    """A 784-16-12-8 MLP with fixed weights (seed 0)."""
    torch.manual_seed(0)
    return xu.models.MLP([784, 16, 12, 8], n_classes)


def changed(before: torch.nn.Module, after: torch.nn.Module) -> dict[str, bool]:
    """Per parameter name: whether ``after`` differs from ``before``."""
    a, b = dict(before.named_parameters()), dict(after.named_parameters())
    return {n: not torch.equal(a[n], b[n]) for n in a}
