"""The training loss is torch's nn.CrossEntropyLoss(weight=, label_smoothing=): proven here equal to the tutorial's
label-smoothing formula, written out by hand."""

import pytest
import torch
from torch import Tensor, nn

C = 10
N = 16


def make(seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, C, generator=g) * 3
    target = torch.randint(0, C, (N,), generator=g)
    weight = torch.rand(C, generator=g) * 2 + 0.1
    return logits, target, weight


def tutorial_formula(logits: Tensor, target: Tensor, eps: float, weight: Tensor | None) -> Tensor:
    """The tutorial's loss, with its bugs fixed: (1 - eps) * NLL of the label + eps * mean over classes of -log p,
    each class term scaled by its weight, averaged over the batch weighted by the label's class weight."""
    weight = torch.ones(logits.shape[1]) if weight is None else weight
    log_probs = torch.log_softmax(logits, dim=1)
    total, normaliser = torch.tensor(0.0), torch.tensor(0.0)
    for row, label in zip(log_probs, target.tolist(), strict=True):
        nll = -row[label] * weight[label]
        smooth = -(row * weight).sum() / len(row)
        total += (1 - eps) * nll + eps * smooth
        normaliser += weight[label]
    return total / normaliser


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_builtin_equals_the_tutorial_formula(eps: float, weighted: bool) -> None:
    logits, target, weight = make()
    w = weight if weighted else None
    builtin = nn.CrossEntropyLoss(weight=w, label_smoothing=eps)(logits, target)
    torch.testing.assert_close(builtin, tutorial_formula(logits, target, eps, w), rtol=0, atol=1e-5)


def test_the_model_trains_with_the_configured_smoothing_and_weights() -> None:
    from digitcls.model.module import DigitClassifier

    logits, target, weight = make(1)
    model = DigitClassifier(model_name="mobilenetv3_small", label_smooth=0.2, class_weight=weight.tolist())
    torch.testing.assert_close(
        model.criterion(logits, target), tutorial_formula(logits, target, 0.2, weight), rtol=0, atol=1e-5
    )
    assert "criterion.weight" in model.state_dict()  # the weights follow the model to the GPU and into checkpoints


def test_large_logits_stay_finite() -> None:
    logits = torch.tensor([[1000.0, -1000.0], [-1000.0, 1000.0]])
    assert torch.isfinite(nn.CrossEntropyLoss(label_smoothing=0.1)(logits, torch.tensor([1, 1])))


def test_a_checkpoint_from_before_the_builtin_loss_still_loads(tmp_path) -> None:
    """Checkpoints written while the loss was our own module stored the class weight as criterion.class_weight."""
    from digitcls.model.module import DigitClassifier, load_classifier
    from tests.helpers import save_checkpoint

    weight = [float(d + 1) for d in range(C)]
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=[str(d) for d in range(C)],
                            img_size=(32, 32), class_weight=weight)
    path = save_checkpoint(model, tmp_path / "old.ckpt")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["state_dict"]["criterion.class_weight"] = checkpoint["state_dict"].pop("criterion.weight")
    torch.save(checkpoint, path)

    loaded = load_classifier(path)
    assert loaded.criterion.weight.tolist() == weight
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded(images), model.eval()(images))
