import pytest
import torch
import torch.nn.functional as F

from digitcls.model.loss import LabelSmoothingCrossEntropy

C = 10
N = 16


def make(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, C, generator=g) * 3
    target = torch.randint(0, C, (N,), generator=g)
    weight = torch.rand(C, generator=g) * 2 + 0.1
    return logits, target, weight


CASES = [(eps, weighted) for eps in (0.0, 0.1, 0.3) for weighted in (False, True)]


@pytest.mark.parametrize(("eps", "weighted"), CASES)
def test_hard_targets_match_torch(eps: float, weighted: bool) -> None:
    logits, target, weight = make()
    w = weight if weighted else None
    ours = LabelSmoothingCrossEntropy(eps, w)(logits, target)
    expected = F.cross_entropy(logits, target, weight=w, label_smoothing=eps)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("eps", "weighted"), CASES)
def test_soft_targets_match_torch(eps: float, weighted: bool) -> None:
    logits, _, weight = make(1)
    soft = torch.softmax(torch.randn(N, C), dim=1)
    w = weight if weighted else None
    ours = LabelSmoothingCrossEntropy(eps, w)(logits, soft)
    expected = F.cross_entropy(logits, soft, weight=w, label_smoothing=eps)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("eps", "weighted"), [(0.1, False), (0.3, True)])
def test_gradients_match_torch(eps: float, weighted: bool) -> None:
    logits, target, weight = make(2)
    w = weight if weighted else None
    ours_in = logits.clone().requires_grad_()
    torch_in = logits.clone().requires_grad_()
    LabelSmoothingCrossEntropy(eps, w)(ours_in, target).backward()
    F.cross_entropy(torch_in, target, weight=w, label_smoothing=eps).backward()
    torch.testing.assert_close(ours_in.grad, torch_in.grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_sample_weight(weighted: bool) -> None:
    logits, target, weight = make(3)
    loss = LabelSmoothingCrossEntropy(0.1, weight if weighted else None)
    base = loss(logits, target)
    torch.testing.assert_close(loss(logits, target, torch.ones(N)), base, rtol=0, atol=1e-6)
    # a uniform scale cancels; zero weights drop samples from the mean
    torch.testing.assert_close(loss(logits, target, torch.full((N,), 3.0)), base, rtol=0, atol=1e-6)
    keep = torch.zeros(N)
    keep[:5] = 1
    torch.testing.assert_close(loss(logits, target, keep), loss(logits[:5], target[:5]), rtol=0, atol=1e-6)


def test_large_logits_stay_finite() -> None:
    logits = torch.tensor([[1000.0, -1000.0], [-1000.0, 1000.0]])
    value = LabelSmoothingCrossEntropy(0.1)(logits, torch.tensor([1, 1]))
    expected = F.cross_entropy(logits, torch.tensor([1, 1]), label_smoothing=0.1)
    assert torch.isfinite(value)
    torch.testing.assert_close(value, expected)


def test_class_weight_is_a_buffer() -> None:
    loss = LabelSmoothingCrossEntropy(0.0, [1.0] * C)
    assert "class_weight" in dict(loss.named_buffers())
    assert "class_weight" in loss.state_dict()


