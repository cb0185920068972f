"""Tests of xferutils.core.peft (chapter 3): LoRA and adapters."""
import torch

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


def test_adapter_is_the_identity_until_its_up_projection_trains():
    """h + W_up σ(W_down h): zero up-projection at the start, 2·d·b + d + b parameters, and a
    step on the up-projection moves the output away from h."""
    import pytest
    from xferutils.core.config import ParameterError
    torch.manual_seed(0)
    ad, h = xu.peft.Adapter(12, bottleneck=3), torch.randn(4, 12)
    assert torch.equal(ad(h), h)
    assert sum(p.numel() for p in ad.parameters()) == 2 * 12 * 3 + 12 + 3
    torch.nn.init.normal_(ad.up.weight)
    assert not torch.allclose(ad(h), h)
    with pytest.raises(ParameterError, match="bottleneck"):
        xu.peft.Adapter(12, bottleneck=0)
