"""Chapters 5-6's core functions on a device: run on the CPU here, on CUDA by tests/test_cuda.py."""
import torch

import xferutils as xu


def check_chapter_modules(device: torch.device) -> None:
    """Sparse codes, mixtures, distillation targets and prototypes on ``device``, each checked
    against a property it must have (and, off the CPU, against the CPU result)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 784, generator=g)
    torch.manual_seed(0)
    net = xu.sparse.sparse_net(K=10, kind="kwta")
    out_cpu = net(x)
    out = net.to(device)(x.to(device))
    assert out.shape == (32, 10) and out.device.type == device.type
    torch.testing.assert_close(out.cpu(), out_cpu, atol=1e-4, rtol=1e-4)
    active = xu.sparse.active_fraction(net, x.to(device))
    assert all(0 < a <= 10 / 256 + 1e-6 for a in active[:1]) or all(a <= 1 for a in active)
    l1, l2 = torch.randn(8, 10, generator=g).to(device), torch.randn(8, 10, generator=g).to(device)
    for q in (0.0, 0.3, 1.0):  # a mixture is a distribution; at its ends it is one of the two models
        lp = xu.mixture.expected_log_probs(l1, l2, q)
        torch.testing.assert_close(lp.exp().sum(-1), torch.ones(8, device=device))
    torch.testing.assert_close(xu.mixture.expected_log_probs(l1, l2, 0.0), l1.log_softmax(-1))
    t = xu.chapters.what_works.distillation.soft_targets(l1, 2.0)
    torch.testing.assert_close(t.sum(-1), torch.ones(8, device=device))
    student = l2.clone().requires_grad_()
    loss = xu.chapters.what_works.distillation.distill_loss(student, t, 2.0)
    loss.backward()
    assert torch.isfinite(loss) and student.grad.abs().sum() > 0
    support = torch.randn(5, 3, 16, generator=g).to(device)  # 5 classes, 3 shots each
    query = support.mean(1) + 0.01  # each query sits on its class's prototype
    assert xu.chapters.what_works.fewshot.classify(support, query).tolist() == [0, 1, 2, 3, 4]


def test_chapter_modules_on_the_cpu():
    check_chapter_modules(torch.device("cpu"))
