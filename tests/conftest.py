import pytest
import torch

import xferutils as xu


@pytest.fixture(scope="session")
def mnist() -> xu.data.MNIST:
    """MNIST on the CPU, from $XFER_DATA_DIR (the root conftest points it at shared/data)."""
    return xu.data.load_mnist(device="cpu")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    yield
