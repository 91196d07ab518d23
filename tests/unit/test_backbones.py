import logging

import pytest
import torch
from torch import nn

from digitcls.errors import CheckpointError
from digitcls.model.backbones import MOBILENET_NAMES, LoadReport, build_backbone, load_pretrained

HEAD = ["classifier.3.weight", "classifier.3.bias"]


@pytest.fixture(scope="module")
def small10() -> nn.Module:
    torch.manual_seed(0)
    return build_backbone("mobilenetv3_small", 10)


@pytest.fixture(scope="module")
def weights(small10: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in small10.state_dict().items()}


def fresh(class_number: int = 10) -> nn.Module:
    torch.manual_seed(1)
    return build_backbone("mobilenetv3_small", class_number)


@pytest.mark.parametrize(("name", "last_in"), [("mobilenetv3", 1280), ("mobilenetv3_small", 1024)])
def test_build_structure(name: str, last_in: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args, **kwargs):
        raise AssertionError("build_backbone must not download anything")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    model = build_backbone(name, 7, dropout=0.3, bn_momentum=0.2).eval()
    assert isinstance(model.features, nn.Module)
    head = model.classifier
    assert [type(m) for m in head] == [nn.Linear, nn.Hardswish, nn.Dropout, nn.Linear]
    assert head[2].p == 0.3
    assert (head[3].in_features, head[3].out_features) == (last_in, 7)
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batchnorms and all(bn.momentum == 0.2 for bn in batchnorms)
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_mobilenet_names() -> None:
    assert MOBILENET_NAMES == ("mobilenetv3", "mobilenetv3_small")





def assert_loaded(model: nn.Module, weights: dict[str, torch.Tensor], keys: list[str]) -> None:
    state = model.state_dict()
    for key in keys:
        assert torch.equal(state[key], weights[key]), key


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": {f"backbone.{k}": v for k, v in sd.items()}, "epoch": 3},
        lambda sd: {"state_dict": {f"model.backbone.{k}": v for k, v in sd.items()}},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"pretrain_model.{k}": v for k, v in sd.items()},
    ],
    ids=["plain", "lightning", "model.backbone.", "model/module.", "pretrain_"],
)
def test_load_formats(wrap, weights: dict[str, torch.Tensor], tmp_path) -> None:
    path = tmp_path / "w.pt"
    torch.save(wrap(weights), path)
    model = fresh()
    report = load_pretrained(model, path)
    assert isinstance(report, LoadReport)
    assert sorted(report.loaded) == sorted(weights)
    assert report.missing == report.unexpected == report.skipped_shape == []
    assert_loaded(model, weights, list(weights))


def test_head_shape_mismatch_is_skipped_and_reported(weights, tmp_path, caplog) -> None:
    path = tmp_path / "w.pt"
    torch.save(weights, path)
    model = fresh(class_number=3)
    head_before = {k: model.state_dict()[k].clone() for k in HEAD}
    with caplog.at_level(logging.WARNING, logger="digitcls"):
        report = load_pretrained(model, path)
    assert report.skipped_shape == HEAD
    assert report.missing == [] and report.unexpected == []
    assert_loaded(model, weights, [k for k in weights if k not in HEAD])
    for key in HEAD:
        assert torch.equal(model.state_dict()[key], head_before[key])
        assert key in caplog.text


def test_missing_and_unexpected_keys_are_reported_and_logged(weights, tmp_path, caplog) -> None:
    partial = {k: v for k, v in weights.items() if not k.startswith("features.1.")}
    partial["criterion.class_weight"] = torch.ones(10)
    path = tmp_path / "w.pt"
    torch.save(partial, path)
    model = fresh()
    with caplog.at_level(logging.WARNING, logger="digitcls"):
        report = load_pretrained(model, path)
    expected_missing = [k for k in weights if k.startswith("features.1.")]
    assert report.missing == expected_missing
    assert report.unexpected == ["criterion.class_weight"]
    for key in [*expected_missing, "criterion.class_weight"]:
        assert key in caplog.text


def test_matches_almost_nothing(tmp_path) -> None:
    path = tmp_path / "large.pt"
    torch.save(build_backbone("mobilenetv3", 10).state_dict(), path)
    with pytest.raises(CheckpointError, match="matches almost nothing") as error:
        load_pretrained(fresh(), path)
    assert str(path) in str(error.value)

    torch.save({f"encoder.{k}": v for k, v in fresh().state_dict().items()}, path)
    with pytest.raises(CheckpointError, match="matches almost nothing") as error:
        load_pretrained(fresh(), path)
    assert "encoder.features.0.0.weight" in str(error.value)


def test_unreadable_files(weights, tmp_path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="does not exist") as error:
        load_pretrained(fresh(), missing)
    assert str(missing) in str(error.value) and "pretrained=null" in str(error.value)

    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint\n")
    truncated = tmp_path / "truncated.pt"
    torch.save(weights, truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    for path in (text, truncated):
        with pytest.raises(CheckpointError, match="could not be read") as error:
            load_pretrained(fresh(), path)
        assert str(path) in str(error.value)

    not_tensors = tmp_path / "list.pt"
    torch.save({"epoch": 3, "lr": 0.1}, not_tensors)
    with pytest.raises(CheckpointError, match="not a mapping of parameter names to tensors"):
        load_pretrained(fresh(), not_tensors)

    pickled_model = tmp_path / "model.pt"
    torch.save(fresh(), pickled_model)
    with pytest.raises(CheckpointError, match="Python objects besides tensors") as error:
        load_pretrained(fresh(), pickled_model)
    assert "MobileNetV3" in str(error.value) and "weights_only=False" in str(error.value)


@pytest.mark.parametrize("name", MOBILENET_NAMES)
@pytest.mark.parametrize(("output_stride", "side"), [(32, 1), (16, 2), (8, 4)])
def test_output_stride_sets_the_feature_map_size(name: str, output_stride: int, side: int) -> None:
    model = build_backbone(name, 10, output_stride=output_stride).eval()
    with torch.no_grad():
        features = model.features(torch.rand(2, 3, 32, 32))
        assert features.shape[-2:] == (side, side)
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", MOBILENET_NAMES)
def test_output_stride_32_is_torchvisions_network(name: str) -> None:
    from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

    builder = {"mobilenetv3": mobilenet_v3_large, "mobilenetv3_small": mobilenet_v3_small}[name]
    torch.manual_seed(3)
    reference = builder(weights=None, num_classes=10).eval()
    ours = build_backbone(name, 10, output_stride=32).eval()
    ours.load_state_dict(reference.state_dict())  # strict: same keys and shapes
    strides = [m.stride for m in ours.modules() if isinstance(m, nn.Conv2d)]
    assert strides == [m.stride for m in reference.modules() if isinstance(m, nn.Conv2d)]
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(images), reference(images))


def test_weights_trained_at_one_output_stride_load_at_another(tmp_path) -> None:
    torch.manual_seed(4)
    trained = build_backbone("mobilenetv3", 10, output_stride=32)
    torch.save(trained.state_dict(), tmp_path / "weights.pt")
    small_inputs = build_backbone("mobilenetv3", 10, output_stride=8)
    report = load_pretrained(small_inputs, tmp_path / "weights.pt")
    assert (report.missing, report.unexpected, report.skipped_shape) == ([], [], [])
    assert_loaded(small_inputs, trained.state_dict(), list(trained.state_dict()))


def test_checkpoints_from_before_output_stride_load_as_32(tmp_path) -> None:
    from digitcls.model.module import DigitClassifier, load_classifier
    from tests.helpers import save_checkpoint

    model = DigitClassifier(model_name="mobilenetv3_small", output_stride=32)
    hparams = {k: v for k, v in model.hparams.items() if k != "output_stride"}
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, path)
    assert load_classifier(path).hparams.output_stride == 32
    save_checkpoint(DigitClassifier(model_name="mobilenetv3_small", output_stride=8), tmp_path / "os8.ckpt")
    assert load_classifier(tmp_path / "os8.ckpt").hparams.output_stride == 8
