"""The tutorial's other backbones and timm/<name>: names, head, dropout, BatchNorm momentum, normalisation,
pretrained key remap, freezing, checkpoints, and one tiny training epoch each (MobileNetV3: test_backbones.py)."""

from __future__ import annotations

import builtins
import logging
from pathlib import Path

import cv2
import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from digitcls.callbacks.freeze import FreezeBackbone
from digitcls.choices import MODEL_NAMES, check_model_name
from digitcls.errors import CheckpointError, ConfigError
from digitcls.model.backbones import (
    body_of,
    build_backbone,
    head_name,
    load_pretrained,
    normalization_for,
)
from digitcls.model.module import DigitClassifier, load_classifier
from digitcls.schema import validated
from digitcls.train import train
from tests.helpers import TINY_TRAIN, balanced_labels, compose_train, draw_digits, save_checkpoint

TIMM_CONVNEXT = "timm/test_convnext"  # timm's own tiny test networks; this one has a nested head (head.fc)
TIMM_SMALL = ["timm/test_efficientnet", "timm/test_resnet", TIMM_CONVNEXT]  # train in seconds
TIMM_ALIASES = ["adv-efficientnet-b2", "se_resnext50_32x4d", "xception"]  # 8-25 M parameters
TIMM_NAMES = [*TIMM_ALIASES, *TIMM_SMALL]
OTHER_NAMES = ["shufflenetv2", *TIMM_NAMES]
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
# model name -> (side used here, normalisation the architecture was designed with, head module, has BatchNorm)
EXPECTED = {
    "shufflenetv2": (16, IMAGENET, "fc", True),
    "adv-efficientnet-b2": (16, HALF, "classifier", True),  # AdvProp EfficientNets see [-1, 1] inputs
    "se_resnext50_32x4d": (16, IMAGENET, "fc", True),
    "xception": (16, HALF, "fc", True),
    "timm/test_efficientnet": (16, IMAGENET, "classifier", True),
    "timm/test_resnet": (16, HALF, "fc", True),
    TIMM_CONVNEXT: (32, HALF, "head.fc", False),  # LayerNorm; stem /4 then three /2 stages: 16 px leaves nothing
}


def needs_timm(name: str) -> list[pytest.MarkDecorator]:
    if name not in TIMM_NAMES:
        return []
    try:
        import timm  # noqa: F401
    except ImportError:
        return [pytest.mark.skip(reason="needs the timm extra (pip install -e '.[timm]')")]
    return []


def each(names: list[str]) -> list:
    return [pytest.param(name, marks=needs_timm(name), id=name) for name in names]


@pytest.fixture(autouse=True)
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("building a backbone must not download anything")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    try:
        import timm.models._builder
    except ImportError:
        return
    monkeypatch.setattr(timm.models._builder, "load_pretrained", refuse)


def test_model_names_are_the_tutorials() -> None:
    assert MODEL_NAMES == (
        "mobilenetv3", "mobilenetv3_small", "shufflenetv2", "adv-efficientnet-b2", "se_resnext50_32x4d", "xception",
    )  # fmt: skip


@pytest.mark.parametrize("name", each(OTHER_NAMES))
def test_head_dropout_batchnorm_and_output(name: str) -> None:
    side, _, head, has_batchnorm = EXPECTED[name]
    torch.manual_seed(0)
    model = build_backbone(name, 7, dropout=0.5, bn_momentum=0.2)
    assert head_name(name) == head
    layer = model.get_submodule(head)
    assert isinstance(layer, nn.Linear) and layer.out_features == 7
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bool(batchnorms) == has_batchnorm and all(bn.momentum == 0.2 for bn in batchnorms)
    images = torch.rand(2, 3, side, side)
    # dropout, seen from outside: with BatchNorm in eval mode, two training-mode passes differ only by it
    model.train()
    for bn in batchnorms:
        bn.eval()
    with torch.no_grad():
        first, second = model(images), model(images)
        assert first.shape == (2, 7)
        assert not torch.equal(first, second)
        model.eval()
        assert torch.equal(model(images), model(images))


@pytest.mark.parametrize("name", each(["shufflenetv2", TIMM_CONVNEXT]))
def test_dropout_zero_is_deterministic_in_training_mode(name: str) -> None:
    side = EXPECTED[name][0]
    model = build_backbone(name, 3, dropout=0.0).train()
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.eval()
    images = torch.rand(2, 3, side, side)
    with torch.no_grad():
        assert torch.equal(model(images), model(images))


@pytest.mark.parametrize("name", each(OTHER_NAMES))
def test_normalisation_is_the_architectures(name: str) -> None:
    mean, std = EXPECTED[name][1]
    assert normalization_for(name) == (mean, std)
    model = DigitClassifier(model_name=name, class_names=["a", "b"], img_size=(EXPECTED[name][0],) * 2)
    assert torch.allclose(model.mean.flatten(), torch.tensor(mean))
    assert torch.allclose(model.std.flatten(), torch.tensor(std))


def test_mobilenet_normalisation_is_imagenets() -> None:
    assert normalization_for("mobilenetv3") == normalization_for("mobilenetv3_small") == IMAGENET
    with pytest.raises(ConfigError, match="model_name: got 'resnet'"):
        normalization_for("resnet")


@pytest.mark.parametrize("name", each(["shufflenetv2", "adv-efficientnet-b2", TIMM_CONVNEXT]))
def test_pretrained_keys_are_remapped_and_the_head_skipped(name: str, tmp_path: Path, caplog) -> None:
    torch.manual_seed(0)
    trained = build_backbone(name, 10)
    weights = {k: v.clone() for k, v in trained.state_dict().items()}
    torch.save({"state_dict": {f"model.backbone.{k}": v for k, v in weights.items()}}, tmp_path / "w.ckpt")
    head = head_name(name)
    fresh = build_backbone(name, 3)
    with caplog.at_level(logging.WARNING, logger="digitcls"):
        report = load_pretrained(fresh, tmp_path / "w.ckpt")
    assert report.skipped_shape == [f"{head}.weight", f"{head}.bias"]
    assert report.missing == report.unexpected == []
    for key, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, weights[key]) != key.startswith(f"{head}."), key
    assert f"{head}.weight" in caplog.text


@pytest.mark.parametrize("name", each(OTHER_NAMES))
def test_freezing_covers_everything_but_the_head(name: str) -> None:
    model = build_backbone(name, 4)
    body = {id(p) for p in body_of(model).parameters()}
    head = {id(p) for p in model.get_submodule(head_name(name)).parameters()}
    assert head and not body & head
    assert body | head == {id(p) for p in model.parameters()}


def test_mobilenet_freezes_its_features() -> None:
    model = build_backbone("mobilenetv3_small", 4)
    assert body_of(model) is model.features


@pytest.mark.parametrize("name", each([TIMM_CONVNEXT]))
def test_frozen_epoch_trains_only_the_head(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DigitClassifier(model_name=name, class_names=["a", "b"], img_size=(32, 32), learning_rate=0.01,
                            scheduler="none")  # no validation here: the default plateau schedule needs val_acc
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    data = TensorDataset(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 2)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[FreezeBackbone(unfreeze_at_epoch=1)])  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=4))
    head = f"{head_name(name)}."
    for key, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, before[key]) != key.startswith(head), key


# ----------------------------------------------------------------------------- names the schema refuses


def test_unknown_timm_name_is_refused_with_similar_names() -> None:
    pytest.importorskip("timm", reason="needs the timm extra")
    with pytest.raises(ConfigError, match="model_name: timm has no model 'resnet18x'") as error:
        check_model_name("timm/resnet18x")
    assert "resnet18" in str(error.value)
    with pytest.raises(ConfigError, match=r"model_name: timm/resnet18\.bogus: Invalid pretrained tag"):
        check_model_name("timm/resnet18.bogus")
    with pytest.raises(ConfigError, match="timm has no model ''"):
        check_model_name("timm/")


def test_timm_names_without_timm_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def without_timm(name, *args, **kwargs):  # timm cannot be uninstalled inside the test process
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_timm)
    for name in ("xception", "timm/resnet18"):
        with pytest.raises(ConfigError, match=rf"model_name: {name} is built by timm, which is not installed") as error:
            check_model_name(name)
        assert "pip install -e '.[timm]'" in str(error.value)
    check_model_name("shufflenetv2")  # torchvision's: no timm needed
    build_backbone("shufflenetv2", 2)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model_name=resnet50", "model_name: got 'resnet50'; allowed: one of mobilenetv3, mobilenetv3_small, "
                                "shufflenetv2, adv-efficientnet-b2, se_resnext50_32x4d, xception"),
        ("output_stride=16", "output_stride: 16 applies to MobileNetV3 only; model_name=shufflenetv2"),
    ],
)
def test_schema_refuses(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validated(compose_train([*TINY_TRAIN, "model_name=shufflenetv2", override]), "train")
    assert message in str(error.value)


def test_schema_accepts_the_names() -> None:
    names = ["shufflenetv2", *(TIMM_NAMES if not needs_timm(TIMM_CONVNEXT) else [])]
    for name in names:
        assert validated(compose_train([*TINY_TRAIN, f"model_name={name}"]), "train").model_name == name


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", each(["shufflenetv2", TIMM_CONVNEXT]))
def test_checkpoint_head_is_found_by_name_not_by_order(name: str, tmp_path: Path) -> None:
    model = DigitClassifier(model_name=name, class_names=["a", "b", "c"], img_size=(32, 32))
    head_key = f"backbone.{head_name(name)}.weight"
    state = model.state_dict()
    reordered = {k: state[k] for k in (head_key, *[k for k in state if k != head_key])}  # head first, not last
    path = tmp_path / "reordered.ckpt"
    torch.save({"state_dict": reordered, "hyper_parameters": dict(model.hparams)}, path)
    assert load_classifier(path).backbone.get_submodule(head_name(name)).out_features == 3

    torch.save({"state_dict": state, "hyper_parameters": {**model.hparams, "class_names": ["a", "b"]}}, path)
    with pytest.raises(CheckpointError, match=rf"names 2 classes but its last layer has 3 outputs \({head_key}\)"):
        load_classifier(path)


def test_checkpoint_with_an_unknown_model_name_is_a_checkpoint_error(tmp_path: Path) -> None:
    model = DigitClassifier(model_name="mobilenetv3_small", class_names=["a", "b"], img_size=(32, 32))
    path = save_checkpoint(model, tmp_path / "m.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["model_name"] = "resnet"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=r"m\.ckpt was trained with model_name=resnet\. model_name: got 'resnet'"):
        load_classifier(path)


# ----------------------------------------------------------------------------- one tiny epoch each


@pytest.fixture(scope="module")
def two_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/val/test folders of two digit classes: 8 / 2 / 2 images per class, 28x28 grayscale."""
    root = tmp_path_factory.mktemp("two_digits")
    for split, per_class, seed in (("train", 8, 21), ("val", 2, 22), ("test", 2, 23)):
        labels = balanced_labels(per_class, seed=seed, classes=2)
        for n, (image, label) in enumerate(zip(draw_digits(labels, seed=seed), labels, strict=True)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{n}.png"), image)
    return root


def test_an_input_size_the_timm_model_cannot_take_is_a_config_error_before_training(
    two_digits: Path, tmp_path: Path
) -> None:
    pytest.importorskip("timm", reason="needs the timm extra")
    # timm's tiny ViT cuts 16 px patches: the model itself refuses 24 px, reported as a config problem
    expected = (r"img_size: timm/test_vit cannot take 24x24 images \(AssertionError: .*divisible by patch size "
                r"\(16\)\)\. It was designed for 160x160: e\.g\. img_size=160")
    with pytest.raises(ConfigError, match=expected):
        DigitClassifier(model_name="timm/test_vit", img_size=(24, 24))
    cfg = compose_train([
        *TINY_TRAIN, "model_name=timm/test_vit", "img_size=24", "class_number=2", f"output_dir={tmp_path}",
        f"train_path={two_digits / 'train'}", f"val_path={two_digits / 'val'}", f"test_path={two_digits / 'test'}",
    ])  # fmt: skip
    with pytest.raises(ConfigError, match=expected):  # before any epoch: nothing is saved
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))
    # a size it takes builds; the check leaves the model in training mode and its BatchNorm untouched
    model = DigitClassifier(model_name="timm/test_resnet", img_size=[16, 24])
    assert model.training
    assert all(int(m.num_batches_tracked) == 0 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


# The named aliases take 3-4 s of CPU each but write 0.2-0.6 GB of checkpoints (weights and optimizer state):
# slow. Their families train in the default suite through timm's tiny test networks.
@pytest.mark.parametrize(
    "name",
    [*each(["shufflenetv2", *TIMM_SMALL]), *(pytest.param(*p.values, marks=[*p.marks, pytest.mark.slow], id=p.id)
                                           for p in each(TIMM_ALIASES))],
)
def test_one_tiny_epoch(name: str, two_digits: Path, tmp_path: Path) -> None:
    side = EXPECTED[name][0]
    cfg = compose_train([
        *TINY_TRAIN, f"model_name={name}", f"img_size={side}", "batch_size=4", "class_number=2",
        "precise_bn_batches=1", "dropout=0.3", f"output_dir={tmp_path}", f"train_path={two_digits / 'train'}",
        f"val_path={two_digits / 'val'}", f"test_path={two_digits / 'test'}",
    ])  # fmt: skip
    summary = train(cfg)
    assert summary["epochs_run"] == 1 and 0.0 <= summary["test_acc"] <= 1.0
    best = Path(summary["best_checkpoint"])
    assert best.parent == tmp_path / "checkpoints"  # timm/<name> makes no sub-folder
    assert best.name.startswith(f"{name.replace('/', '-')}_e0_")
    model = load_classifier(best)
    assert model.hparams.model_name == name and model.hparams.dropout == 0.3
    assert model.backbone.get_submodule(head_name(name)).out_features == 2
    with torch.no_grad():
        assert model(torch.zeros(3, 3, side, side, dtype=torch.uint8)).shape == (3, 2)
