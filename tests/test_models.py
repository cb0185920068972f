import pytest
import torch

import xferutils as xu
from xferutils.core.config import ParameterError


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


# --- torchvision backbones --------------------------------------------------------------------

@pytest.mark.parametrize("name,top", [("resnet18", "layer4."), ("vit_b_16", "encoder.layers.encoder_layer_11.")])
def test_create_transfer_model_freezes_as_claimed(name, top):
    fe = xu.models.create_transfer_model(name, 7, "feature_extraction")
    assert fe.head.out_features == 7
    trainable = {n for n, p in fe.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    ft = xu.models.create_transfer_model(name, 7, "fine_tuning")
    names = [n for n, p in ft.named_parameters() if p.requires_grad]
    assert any(n.startswith("backbone." + top) for n in names)  # seed 003's ViT filter matched nothing
    assert all(n.startswith(("head.", "backbone." + top, "backbone.encoder.ln.")) for n in names)
    assert 0 < len(names) < len(list(ft.parameters()))


def test_create_transfer_model_forward_resnet18():
    model = xu.models.create_transfer_model("resnet18", 4, "fine_tuning").eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_create_transfer_model_bad_arguments():
    with pytest.raises(ParameterError, match="name"):
        xu.models.create_transfer_model("alexnet", 3)
    with pytest.raises(ParameterError, match="strategy"):
        xu.models.create_transfer_model("resnet18", 3, strategy="lora")


def test_missing_weights_fail_at_once_offline(tmp_path, monkeypatch):
    """No network: the error names the file and the folder, before anything is built."""
    import time

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    start = time.perf_counter()
    with pytest.raises(ParameterError) as err:
        xu.models.create_transfer_model("resnet18", 2, weights="DEFAULT")
    assert time.perf_counter() - start < 5  # no 15 s network timeout
    msg = str(err.value)
    assert "resnet18-" in msg and ".pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    with pytest.raises(ParameterError, match="not a weights name"):
        xu.models.check_weights("resnet18", "NOPE")
    path, url = xu.models.weights_file("resnet18", "IMAGENET1K_V1")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # present: the check passes (loading is torchvision's business)
    assert xu.models.check_weights("resnet18", "IMAGENET1K_V1") == path and url.endswith(path.name)


def test_mlp_dropout_is_off_by_default_and_only_in_training_mode():
    import torch
    from xferutils.core.models import MLP, hinton_mlp

    plain = MLP([784, 32, 16], 10)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())
    drop = MLP([784, 32, 16], 10, dropout=0.5)
    assert sum(isinstance(m, torch.nn.Dropout) for m in drop.modules()) == 2
    assert sum(p.numel() for p in drop.parameters()) == sum(p.numel() for p in plain.parameters())
    x = torch.rand(8, 784)
    drop.train()
    torch.manual_seed(0)
    a = drop(x)
    torch.manual_seed(1)
    assert not torch.equal(a, drop(x))  # training mode: units are dropped at random
    drop.eval()
    assert torch.equal(drop(x), drop(x))  # evaluation mode: deterministic, all units
    net = hinton_mlp(20, dropout=0.2)
    assert [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)] == [20, 20, 10]


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.5", True])
def test_mlp_dropout_refuses_bad_probabilities(bad):
    from xferutils.core.config import ParameterError
    from xferutils.core.models import MLP

    with pytest.raises(ParameterError, match="dropout"):
        MLP([784, 8], 10, dropout=bad)


def test_replicas_with_dropout_train_and_evaluate_in_eval_mode():
    import torch
    from xferutils.core.data import Split
    from xferutils.core.ensemble import fit_replicas
    from xferutils.core.models import MLP

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 784, generator=g)
    data = Split(x, (x[:, 0] > 0.5).long())
    models = [MLP([784, 16], 2, dropout=0.5) for _ in range(2)]
    reps = fit_replicas(models, data, [0, 1], epochs=2, lr=1e-2, batch_size=16, val=data, patience=2)
    assert torch.equal(reps.logits(x), reps.logits(x))  # no dropout at evaluation
    assert reps.base.training  # the template's mode is left as it was


def test_lenet5_shape_and_size():
    m = xu.models.lenet5(5)
    # conv 1->6 (5x5), conv 6->16 (5x5), 256->120, 120->84, head 84->5
    assert xu.models.count_parameters(m) == (6 * 25 + 6) + (16 * 6 * 25 + 16) + (256 * 120 + 120) + \
        (120 * 84 + 84) + (84 * 5 + 5)
    x = torch.rand(3, 784)
    assert m(x).shape == (3, 5) and m.embed(x).shape == (3, 84) and m.feature_dim == 84
    torch.testing.assert_close(m(x), m(x.reshape(3, 1, 28, 28)))
    torch.testing.assert_close(m.head(m.embed(x)), m(x))


def test_lenet5_is_not_a_pixel_permutation_model():
    """An MLP's first layer sees a rotated image as a permutation it can undo; a convolution's shared
    5x5 kernels see a different image: permuting the input of a LeNet cannot be undone by its weights."""
    torch.manual_seed(0)
    mlp, cnn = xu.models.MLP([784, 16], 3), xu.models.lenet5(3)
    x = torch.rand(4, 784)
    perm = torch.randperm(784)
    permuted_mlp = xu.models.MLP([784, 16], 3)
    permuted_mlp.load_state_dict(mlp.state_dict())
    with torch.no_grad():
        permuted_mlp.features[0].weight.copy_(mlp.features[0].weight[:, perm])
    torch.testing.assert_close(permuted_mlp(x[:, perm]), mlp(x))  # an MLP: same function up to a weight permutation
    assert not torch.allclose(cnn(x[:, perm]), cnn(x))


def test_lenet_bad_sizes():
    with pytest.raises(ParameterError, match="c1"):
        xu.models.LeNet(5, c1=0)
    with pytest.raises(ParameterError, match="n_classes"):
        xu.models.LeNet(0)
