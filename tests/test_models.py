import pytest
import torch

import xferutils as xu
from xferutils.config import ParameterError


@pytest.mark.parametrize("make,n_linear,widest,feat", [(xu.models.dense_net, 4, 512, 128),
                                                        (xu.models.wide_nn, 6, 256, 64),
                                                        (xu.models.deep_nn, 8, 128, 32)])
def test_architectures(make, n_linear, widest, feat):
    m = make(5)
    layers = xu.models.linear_layers(m)
    assert len(layers) == n_linear
    assert max(layer.out_features for layer in layers[:-1]) == widest
    assert m.feature_dim == feat and layers[-1] is m.head
    x = torch.rand(3, 1, 28, 28)
    assert m(x).shape == (3, 5) and m.embed(x).shape == (3, feat)
    assert torch.allclose(m.head(m.embed(x)), m(x))
    assert xu.models.embed(m, x.flatten(1)).shape == (3, feat)


def test_dense_net_matches_seed_002_size():
    # 784*512+512 + 512*256+256 + 256*128+128 + 128*10+10
    assert xu.models.count_parameters(xu.models.dense_net()) == 567434


def test_count_trainable_only():
    m = xu.models.dense_net()
    m.features.requires_grad_(False)
    assert xu.models.count_parameters(m, trainable_only=True) == 1290


def test_bad_sizes():
    with pytest.raises(ParameterError, match="n_classes"):
        xu.models.MLP([784, 10], 0)
    with pytest.raises(ParameterError, match="width"):
        xu.models.MLP([784, -3], 2)
