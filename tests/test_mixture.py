import math

import pytest
import torch

from xferutils.core.config import ParameterError
from xferutils.core.mixture import Mixture, expected_log_probs, route, sampled_logits


class Const(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((len(x), 10), float(self.value)) + torch.arange(10.0) * self.value


def test_route_has_bernoulli_frequencies():
    g = torch.Generator().manual_seed(0)
    for q in (0.1, 0.5, 0.9):
        share = route(200_000, q, g).float().mean().item()
        assert abs(share - q) < 4 * math.sqrt(q * (1 - q) / 200_000)


def test_mixture_module_routes_and_has_ten_outputs():
    mix = Mixture(Const(1.0), Const(-1.0), q=0.3)
    out = mix(torch.zeros(10_000, 784), generator=torch.Generator().manual_seed(1))
    assert out.shape == (10_000, 10)
    second = (out[:, 0] == -1.0).float().mean().item()
    assert abs(second - 0.3) < 0.03
    assert Mixture(Const(1.0), Const(-1.0), 0.0)(torch.zeros(50, 784))[:, 0].eq(1.0).all()
    assert Mixture(Const(1.0), Const(-1.0), 1.0)(torch.zeros(50, 784))[:, 0].eq(-1.0).all()


def test_expected_form_and_endpoints():
    a, b = torch.randn(5, 10), torch.randn(5, 10)
    pa, pb = a.softmax(-1), b.softmax(-1)
    for q in (0.0, 0.25, 1.0):
        got = expected_log_probs(a, b, q).exp()
        assert torch.allclose(got, (1 - q) * pa + q * pb, atol=1e-6)
    assert torch.allclose(expected_log_probs(a, b, 0.0), a.log_softmax(-1), atol=1e-6)
    assert torch.allclose(expected_log_probs(a, b, 1.0), b.log_softmax(-1), atol=1e-6)


def test_expected_form_vectorized_over_q():
    a, b = torch.randn(3, 5, 10), torch.randn(3, 5, 10)
    q = torch.tensor([0.0, 0.5, 1.0])
    got = expected_log_probs(a, b, q)
    for i in range(3):
        assert torch.allclose(got[i], expected_log_probs(a[i], b[i], float(q[i])), atol=1e-6)
    chosen = route(5, q, torch.Generator().manual_seed(0))
    assert chosen.shape == (3, 5) and not chosen[0].any() and chosen[2].all()
    assert torch.equal(sampled_logits(a, b, chosen)[2], b[2])


@pytest.mark.parametrize("q", [-0.1, 1.5, float("nan")])
def test_q_outside_unit_interval_is_refused(q):
    with pytest.raises(ParameterError, match="q"):
        Mixture(Const(1.0), Const(2.0), q)
    with pytest.raises(ParameterError, match="q"):
        expected_log_probs(torch.zeros(1, 10), torch.zeros(1, 10), torch.tensor([q]))


def test_mixed_log_probs_is_expected_log_probs_without_the_check():
    from xferutils.core.mixture import check_q, mixed_log_probs
    torch.manual_seed(0)
    a, b = torch.randn(4, 10), torch.randn(4, 10)
    for q in (0.0, 0.3, 1.0):
        torch.testing.assert_close(mixed_log_probs(a, b, torch.tensor(q)), expected_log_probs(a, b, q))
    p = ((1 - 0.3) * a.softmax(-1) + 0.3 * b.softmax(-1)).log()
    torch.testing.assert_close(mixed_log_probs(a, b, torch.tensor(0.3)), p)
    assert check_q(0.5).item() == 0.5 and check_q(torch.tensor([0.0, 1.0])).dtype == torch.float32
    with pytest.raises(ParameterError, match="q"):
        check_q(torch.tensor([0.2, 1.5]))
    with pytest.raises(ParameterError, match="q"):
        check_q(-0.1)
