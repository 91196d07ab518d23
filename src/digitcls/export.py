"""`python -m digitcls.export model_path=... format=onnx|torchscript|all` (docs/inference.md).

The exported graph takes float images in [0, 1], N x 3 x H x W (any N), and returns logits: the
normalisation is inside the model, so a consumer only resizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from digitcls.atomic import atomic_path, writer
from digitcls.cli import friendly_errors
from digitcls.model.module import DigitClassifier, load_classifier
from digitcls.runs import newest_best_checkpoint, writable_folder
from digitcls.schema import validated


class Inference(nn.Module):
    """The classifier as a plain module (normalise + backbone): a LightningModule drags its Trainer along."""

    def __init__(self, model: DigitClassifier) -> None:
        super().__init__()
        self.backbone = model.backbone.to(memory_format=torch.contiguous_format).eval()
        self.register_buffer("mean", model.mean.clone())
        self.register_buffer("std", model.std.clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone((images - self.mean) / self.std)


@writer
def export_onnx(
    model: DigitClassifier, path: Path, opset: int = 18, extra_metadata: dict[str, str] | None = None
) -> Path:
    """``extra_metadata``: more strings to store in the file (e.g. digitcls.inference's cache key)."""
    import onnx  # optional dependency: the `export` extra

    metadata = {"class_names": json.dumps(list(model.class_names)),
                "img_size": json.dumps(list(model.img_size)),
                "model_name": model.hparams.model_name, "input": "float RGB in [0, 1], N x 3 x H x W"}
    with atomic_path(path) as tmp:
        torch.onnx.export(
            Inference(model), (torch.rand(2, 3, *model.img_size),), str(tmp), input_names=["images"],
            output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset, dynamo=False,
        )
        graph = onnx.load(str(tmp))
        for key, value in {**metadata, **(extra_metadata or {})}.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(tmp))
    return path


@writer
def export_torchscript(model: DigitClassifier, path: Path) -> Path:
    traced = torch.jit.trace(Inference(model), torch.rand(2, 3, *model.img_size))
    with atomic_path(path) as tmp:
        traced.save(str(tmp))
    return path


def export(cfg: DictConfig) -> list[Path]:
    cfg = validated(cfg, "export")
    model_path = Path(cfg.model_path) if cfg.model_path else newest_best_checkpoint()
    model = load_classifier(model_path)
    # string concatenation, not with_suffix: checkpoint names hold a dot (..._e3_0.99120.ckpt)
    stem = str(cfg.output) if cfg.output else str(model_path.with_suffix(""))
    writable_folder(Path(stem).parent, "output")  # by default beside the checkpoint
    written = []
    if cfg.format in ("onnx", "all"):
        written.append(export_onnx(model, Path(stem + ".onnx"), cfg.opset))
    if cfg.format in ("torchscript", "all"):
        written.append(export_torchscript(model, Path(stem + ".pt")))
    for path in written:
        print(f"exported {model_path} -> {path}")
    return written


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    friendly_errors(export)(cfg)


if __name__ == "__main__":
    main()
