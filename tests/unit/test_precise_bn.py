"""Precise BatchNorm: the statistics a checkpoint holds are the batch statistics of the training data for
the weights it holds, computed here a second way (forward hooks, plain mean and variance)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import cv2
import pytest
import torch
from torch import Tensor, nn

from digitcls.callbacks.precise_bn import PreciseBatchNorm, recompute_batchnorm_statistics
from digitcls.model.module import DigitClassifier
from digitcls.schema import validated
from digitcls.train import build_callbacks, build_datamodule, build_model, build_trainer, train
from tests.helpers import TINY_TRAIN, balanced_labels, compose_train, draw_digits

BATCHES = 2
# 64 images in batches of 16: 4 training steps; the in-memory path, whose loader seeds its workers from
# the global generator (what the callback must not disturb)
SETTINGS = [*TINY_TRAIN, "try_to_train_items=64", "data_cache=true", "early_stop_patient=0"]


def config(folders: Path, out: Path, *overrides: str):
    paths = [f"{split}_path={folders / split}" for split in ("train", "val", "test")]
    return validated(compose_train([*SETTINGS, *paths, f"output_dir={out}", *overrides]), "train")


def batchnorm_inputs_statistics(model: nn.Module, batches: list[Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """Per BatchNorm layer: the mean over ``batches`` of each batch's per-channel mean and unbiased variance
    of the layer's input, with the model normalising by batch statistics (training mode)."""
    seen: dict[str, list[Tensor]] = {}
    hooks = [
        module.register_forward_pre_hook(lambda _, args, name=name: seen.setdefault(name, []).append(args[0]))
        for name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d)
    ]
    model.train()
    with torch.no_grad():
        for images in batches:
            model(images)
    for hook in hooks:
        hook.remove()
    return {
        name: (torch.stack([x.mean((0, 2, 3)) for x in xs]).mean(0),
               torch.stack([x.var((0, 2, 3), unbiased=True) for x in xs]).mean(0))
        for name, xs in seen.items()
    }  # fmt: skip


def first_training_batches(cfg, count: int) -> list[Tensor]:
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    return [images for images, _ in islice(datamodule.train_dataloader(), count)]


def checkpoint_model(state_dict: dict[str, Tensor], hparams: dict) -> DigitClassifier:
    model = DigitClassifier(**hparams)
    model.load_state_dict(state_dict)
    return model


def mismatches(state_dict: dict[str, Tensor], expected: dict[str, tuple[Tensor, Tensor]]) -> list[str]:
    """Names of the layers whose saved running statistics differ from ``expected``."""
    wrong = []
    for name, (mean, var) in expected.items():
        saved_mean, saved_var = state_dict[f"{name}.running_mean"], state_dict[f"{name}.running_var"]
        if not (torch.allclose(saved_mean, mean, rtol=1e-4, atol=1e-5)
                and torch.allclose(saved_var, var, rtol=1e-4, atol=1e-5)):  # fmt: skip
            wrong.append(name)
    return wrong


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The same one-epoch run with the callback off and on: its summary and best checkpoint."""
    folders = tmp_path_factory.mktemp("precise_bn_data")
    for split, per_class, seed in (("train", 8, 21), ("val", 3, 22), ("test", 3, 23)):
        labels = balanced_labels(per_class, seed=seed)
        for n, (image, label) in enumerate(zip(draw_digits(labels, seed=seed + 100), labels, strict=True)):
            (folders / split / str(label)).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folders / split / str(label) / f"{n}.png"), image)
    result = {}
    for name, batches in (("off", 0), ("on", BATCHES)):
        cfg = config(folders, tmp_path_factory.mktemp(name), f"precise_bn_batches={batches}")
        summary = train(cfg)
        ckpt = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=False)
        result[name] = {"cfg": cfg, "summary": summary, "ckpt": ckpt}
    result["folders"] = folders  # type: ignore[assignment]
    return result


def test_checkpoint_holds_the_training_batch_statistics_of_its_weights(runs: dict) -> None:
    ckpt, cfg = runs["on"]["ckpt"], runs["on"]["cfg"]
    model = checkpoint_model(ckpt["state_dict"], ckpt["hyper_parameters"])
    expected = batchnorm_inputs_statistics(model, first_training_batches(cfg, BATCHES))
    assert len(expected) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 10
    assert mismatches(ckpt["state_dict"], expected) == []
    tracked = {v.item() for k, v in ckpt["state_dict"].items() if k.endswith("num_batches_tracked")}
    assert tracked == {BATCHES}


def test_without_the_callback_the_statistics_lag_the_weights(runs: dict) -> None:
    """The check above can fail: momentum-averaged statistics after 4 steps are not those of the weights."""
    ckpt, cfg = runs["off"]["ckpt"], runs["off"]["cfg"]
    model = checkpoint_model(ckpt["state_dict"], ckpt["hyper_parameters"])
    expected = batchnorm_inputs_statistics(model, first_training_batches(cfg, BATCHES))
    assert len(mismatches(ckpt["state_dict"], expected)) == len(expected)


def test_training_is_the_same_with_or_without_the_callback(runs: dict) -> None:
    """Only the statistics differ: the callback leaves the global random state (augmentation, loader
    seeds) as it found it, so the weights trained are bit for bit the same."""
    off, on = runs["off"]["ckpt"]["state_dict"], runs["on"]["ckpt"]["state_dict"]
    assert off.keys() == on.keys()
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    for key in off:
        if not key.endswith(statistics):
            assert torch.equal(off[key], on[key]), key


def test_with_ema_the_statistics_are_those_of_the_averaged_weights(runs: dict, tmp_path: Path) -> None:
    """EMA swaps its weights in at validation start; the callback listed *before* it must still compute
    the statistics of the averaged weights, and the checkpoint (which saves those) must hold them."""
    cfg = config(runs["folders"], tmp_path, "ema_decay=0.5", f"precise_bn_batches={BATCHES}")
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    model = build_model(cfg, datamodule.class_names)
    checkpoint, callbacks = build_callbacks(cfg, tmp_path / "checkpoints")
    callbacks.sort(key=lambda callback: not isinstance(callback, PreciseBatchNorm))  # precise BN first
    build_trainer(cfg, tmp_path, callbacks).fit(model, datamodule=datamodule)

    ckpt = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    assert not torch.equal(averaged["backbone.classifier.3.weight"], current["backbone.classifier.3.weight"])
    evaluated = checkpoint_model(averaged, ckpt["hyper_parameters"])
    expected = batchnorm_inputs_statistics(evaluated, first_training_batches(cfg, BATCHES))
    assert mismatches(averaged, expected) == []


def test_a_short_run_learns_with_precise_bn_and_collapses_without(tiny_folders: Path, tmp_path: Path) -> None:
    """The trimmed regression guard (the full one, 2,000 real MNIST digits: tests/integration/
    test_short_runs_mnist.py, slow): 3 epochs of 13 steps on the 200 tiny digits. With the statistics
    recomputed, val and test accuracy are well above chance (10 %); with momentum-averaged ones that lag
    the weights, the same run answers one digit for everything."""
    paths = [f"{split}_path={tiny_folders / split}" for split in ("train", "val", "test")]

    def short_run(*overrides: str) -> dict:
        return train(compose_train([*TINY_TRAIN, *paths, "epochs=3", *overrides, f"output_dir={tmp_path / str(len(overrides))}"]))

    with_precise_bn = short_run()
    assert with_precise_bn["best_val_acc"] >= 0.25 and with_precise_bn["test_acc"] >= 0.25, with_precise_bn
    without = short_run("precise_bn_batches=0")
    assert without["best_val_acc"] < with_precise_bn["best_val_acc"] - 0.1, without


def test_recompute_changes_only_the_given_layers_and_keeps_every_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.Dropout())
    model.eval()
    model[3].running_mean.fill_(7.0)
    images = [torch.randn(8, 3, 6, 6) + 2 for _ in range(3)]

    used = recompute_batchnorm_statistics(model, [model[1]], images)

    assert used == 3
    assert [m.training for m in model.modules()] == [False] * 6
    assert model[1].momentum == 0.1 and model[1].num_batches_tracked.item() == 3
    assert torch.equal(model[3].running_mean, torch.full((4,), 7.0))  # not listed: untouched
    expected_mean = torch.stack([model[0](x).mean((0, 2, 3)) for x in images]).mean(0)
    assert torch.allclose(model[1].running_mean, expected_mean.detach(), atol=1e-6)


def test_zero_turns_it_off_and_the_default_turns_it_on(tmp_path: Path) -> None:
    _, off = build_callbacks(compose_train([*SETTINGS, "precise_bn_batches=0"]), tmp_path)
    _, default = build_callbacks(compose_train(SETTINGS), tmp_path)
    assert not any(isinstance(callback, PreciseBatchNorm) for callback in off)
    (precise,) = [callback for callback in default if isinstance(callback, PreciseBatchNorm)]
    assert precise.batches == compose_train(SETTINGS).precise_bn_batches > 0
