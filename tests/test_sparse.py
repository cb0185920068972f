import pytest
import torch

from xferutils.core import models, sparse
from xferutils.core.config import ParameterError


def logits(n=64, d=40, scale=4.0, seed=0):
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("K", [2, 3, 10])
def test_sparse_softmax_shape_and_at_most_k_minus_1_survivors(K):
    x = logits()
    out = sparse.sparse_softmax(x, K)
    assert out.shape == x.shape
    assert int((out > 0).sum(-1).max()) <= K - 1
    p = torch.softmax(x, -1)
    assert torch.equal(out > 0, p > 1 / K)  # survivors are exactly the entries above 1/K
    assert torch.allclose(out[out > 0], p[out > 0])


def test_sparse_path_equals_dense_masked_product():
    x = logits(scale=6.0)
    layer = torch.nn.Linear(40, 7)
    for K in (2, 5, 30):
        code = sparse.sparse_code(x, K)
        assert torch.allclose(sparse.apply_linear(code, layer), layer(sparse.sparse_softmax(x, K)), atol=1e-6)


def test_sparse_net_gathered_forward_equals_masked_forward():
    torch.manual_seed(0)
    net = sparse.sparse_net(K=3)
    with torch.no_grad():  # larger pre-activations so that some units survive
        for m in net.linears():
            m.weight.mul_(30)
    x = torch.rand(32, 784)
    out, counts = net.sparse_forward(x)
    assert torch.allclose(out, net(x), atol=1e-4)
    assert all(int(c.max()) <= 2 for c in counts)
    assert sparse.active_fraction(net, x)[0] > 0


def test_gradients_flow_only_through_survivors():
    x = logits(n=16, d=20, scale=5.0).requires_grad_(True)
    layer = torch.nn.Linear(20, 3)
    out = sparse.sparse_softmax(x, 4)
    layer(out).sum().backward()
    dead = (out == 0).all(0)  # units that no sample kept
    assert dead.any() and (~dead).any()
    assert torch.all(layer.weight.grad[:, dead] == 0)
    assert torch.any(layer.weight.grad[:, ~dead] != 0)
    # a row with no survivor passes no gradient back at all
    flat = torch.zeros(1, 20, requires_grad=True)
    layer(sparse.sparse_softmax(flat, 4)).sum().backward()
    assert torch.all(flat.grad == 0)


def test_kwta_keeps_the_k_largest():
    x = torch.tensor([[3.0, -1.0, 5.0, 0.5], [0.0, 2.0, 1.0, -3.0]])
    assert torch.equal(sparse.kwta(x, 2), torch.tensor([[3.0, 0.0, 5.0, 0.0], [0.0, 2.0, 1.0, 0.0]]))
    assert torch.equal(sparse.kwta(x, 10), x)  # k beyond the width keeps everything
    net = sparse.sparse_net(K=5, kind="kwta")
    assert sparse.active_fraction(net, torch.rand(8, 784)) == pytest.approx([4 / 512, 4 / 256, 4 / 128])


def test_dense_weights_load_into_the_sparse_net():
    dense = models.dense_net()
    net = sparse.sparse_net(10)
    net.load_state_dict(dense.state_dict())
    assert torch.equal(net.head.weight, dense.head.weight)


def test_multiply_adds_and_times():
    net = sparse.sparse_net(K=10)
    x = torch.rand(16, 784)
    macs = sparse.multiply_adds(net, x)
    assert macs["dense"] == 784 * 512 + 512 * 256 + 256 * 128 + 128 * 10
    assert macs["first_layer"] <= macs["sparse"] <= macs["first_layer"] + 9 * (256 + 128 + 10)
    times = sparse.path_times(net, x, repeats=1)
    assert set(times) == {"dense", "sparse"} and all(t > 0 for t in times.values())


@pytest.mark.parametrize("K", [1, 0, -3])
def test_k_below_two_is_refused(K):
    with pytest.raises(ParameterError, match="K="):
        sparse.sparse_net(K)
    with pytest.raises(ParameterError, match="K="):
        sparse.sparse_softmax(torch.zeros(2, 3), K)


def test_unknown_kind_is_refused():
    with pytest.raises(ParameterError, match="kind"):
        sparse.sparse_net(10, kind="relu")


def test_kwta_gathered_path_equals_masked_forward():
    torch.manual_seed(1)
    net = sparse.sparse_net(K=6, kind="kwta")
    x = torch.rand(10, 784)
    out, counts = net.sparse_forward(x)
    assert torch.allclose(out, net(x), atol=1e-5)
    assert all(int(c.max()) == 5 for c in counts)


def test_kwta_equals_the_scatter_definition_in_value_and_gradient():
    """k-WTA as a threshold equals the textbook form (scatter the top-k values into zeros), and
    its gradient reaches exactly the k winners of each row."""
    torch.manual_seed(0)
    x = torch.randn(3, 7, 64, requires_grad=True)
    top = x.topk(5, dim=-1)
    textbook = torch.zeros_like(x).scatter(-1, top.indices, top.values)
    fast = sparse.kwta(x, 5)
    assert torch.equal(fast, textbook)
    w = torch.randn_like(x)
    g_fast, = torch.autograd.grad((fast * w).sum(), x)
    g_book, = torch.autograd.grad((textbook * w).sum(), x)
    assert torch.equal(g_fast, g_book)
    assert int((g_fast != 0).sum(-1).max()) == 5


def test_sparse_mlp_is_a_stack_of_linear_and_sparse_activation_layers():
    """sparse_net builds a SparseMLP whose activations are SparseActivation(K); K ≥ 2 is checked
    before anything is built; sparse_code returns at most K − 1 survivors as a SparseCode."""
    net = sparse.sparse_net(K=6, kind="kwta")
    assert isinstance(net, sparse.SparseMLP)
    acts = [m for m in net.features if isinstance(m, sparse.SparseActivation)]
    assert len(acts) == 3 and len(net.linears()) == 4
    assert sparse.check_k(6) == 6
    with pytest.raises(ParameterError, match="K"):
        sparse.check_k(1)
    code = sparse.sparse_code(torch.randn(4, 32), 6, "kwta")
    assert isinstance(code, sparse.SparseCode) and code.idx.shape == code.val.shape == (4, 5)
