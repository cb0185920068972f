import pytest
import torch

import xferutils as xu


@pytest.fixture(scope="session")
def mnist() -> xu.data.MNIST:
    """MNIST on the CPU, from $XFER_DATA_DIR (the root conftest points it at shared/data)."""
    return xu.data.load_mnist(device="cpu")


@pytest.fixture(scope="module")
def data() -> xu.data.Split:
    """96 random images of 4 classes (seed 0): the toy split of the strategy and fine-tuning tests."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(96, 784, generator=gen)
    y = torch.randint(0, 4, (96,), generator=gen)
    return xu.data.Split(x, y)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    yield
