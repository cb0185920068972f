import torch
from torch.func import vmap

import xferutils as xu


def test_lora_with_zero_b_equals_frozen_layer():
    layer = torch.nn.Linear(20, 7)
    lora = xu.peft.LoRALinear(layer, rank=3, alpha=6.0)
    x = torch.randn(5, 20)
    assert torch.equal(lora(x), layer(x))
    assert not layer.weight.requires_grad and lora.lora_A.requires_grad
    torch.nn.init.normal_(lora.lora_B)
    assert torch.allclose(lora(x), x @ lora.merged_weight().T + layer.bias, atol=1e-5)


def test_add_lora_and_adapters_start_as_identity_and_train_only_new_parts():
    x = torch.rand(4, 784)
    for wrap in (lambda m: xu.peft.add_lora(m, rank=2), lambda m: xu.peft.add_adapters(m, bottleneck=8)):
        m = xu.models.MLP([784, 32, 16], 3)
        y0 = m(x)
        wrap(m)
        assert torch.allclose(m(x), y0)
        names = {n for n, p in m.named_parameters() if p.requires_grad}
        assert names and all(("lora" in n) or ("head" in n) or (".down." in n) or (".up." in n)
                             for n in names)


def test_lora_parameter_count():
    m = xu.peft.add_lora(xu.models.MLP([784, 32, 16], 3), rank=2)
    # A: r x in, B: out x r for both feature layers, plus the 16*3+3 head
    assert xu.models.count_parameters(m, trainable_only=True) == 2 * (784 + 32) + 2 * (32 + 16) + 51


def test_grad_reverse_negates_gradient_with_lambda():
    x = torch.randn(6, requires_grad=True)
    y = xu.domain.grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    (y * torch.arange(6.0)).sum().backward()
    assert torch.allclose(x.grad, -0.3 * torch.arange(6.0))


def test_grad_reverse_inside_vmap():
    w = torch.randn(3, 4, requires_grad=True)
    out = vmap(lambda wi: xu.domain.grad_reverse(wi, 2.0).sum())(w)
    out.sum().backward()
    assert torch.allclose(w.grad, torch.full((3, 4), -2.0))


def test_dann_lambda_ramp():
    assert xu.domain.dann_lambda(0.0) == 0.0
    assert 0.99 < xu.domain.dann_lambda(1.0) < 1.0


def test_lora_and_adapters_follow_the_wrapped_layers_device_and_dtype():
    """New factors are made where the pretrained layer lives (a GPU model stays on the GPU)."""
    m = xu.models.MLP([784, 32, 16], 3).to(torch.float64)
    xu.peft.add_lora(m, rank=2)
    assert {p.dtype for p in m.parameters()} == {torch.float64}
    m(torch.rand(2, 784, dtype=torch.float64))  # runs: factors and input agree
    on_meta = xu.peft.add_adapters(xu.models.MLP([784, 32, 16], 3).to("meta"), bottleneck=4)
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}
    lora = xu.peft.LoRALinear(torch.nn.Linear(8, 4, device="meta"), rank=2)
    assert lora.lora_A.is_meta and lora.lora_B.is_meta
