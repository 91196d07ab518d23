"""The training augmentation, batched on the device (``DigitDataModule.on_after_batch_transfer``) so that
data-loader workers only decode; normalisation belongs to the model's forward (exports need none)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from digitcls.choices import AffineAugment, parse_augment


def batch_augment(
    x: torch.Tensor,
    augment: Mapping | AffineAugment | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random affine per sample of an N x C x H x W batch, on whatever device ``x`` lives.

    ``x`` is uint8 or float in [0, 1]; the result is float in [0, 1] with black (0) where the
    transformed image leaves the frame. ``generator`` (optional) must live on ``x``'s device.
    """
    images = x.float().div_(255.0) if x.dtype == torch.uint8 else x
    params = parse_augment(augment)
    if params.is_identity or images.shape[0] == 0:
        return images
    # affine_grid's theta (output -> input coordinates) for random forward transforms, per sample; built in
    # pixel units and converted to normalised coordinates (the shift is normalised already), so rotations
    # stay rotations when h != w
    n, _, height, width = images.shape
    u = torch.rand(n, 5, generator=generator, device=images.device) * 2 - 1  # uniform in [-1, 1]
    angle = torch.deg2rad(u[:, 0] * params.degrees)
    shear = torch.tan(torch.deg2rad(u[:, 1] * params.shear))
    low, high = params.scale
    scale = low + (high - low) * (u[:, 2] + 1) / 2
    shift = torch.stack([u[:, 3] * params.translate[0], u[:, 4] * params.translate[1]], dim=1) * 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # inverse of (rotate @ shear_x @ scale) = scale^-1 @ shear_x^-1 @ rotate^-1, 2 x 2 per sample
    inv = torch.stack([cos + shear * sin, sin - shear * cos, -sin, cos], dim=1).view(n, 2, 2)
    inv = inv / scale.view(n, 1, 1)
    # pixel -> normalised units: (D^-1 A^-1 D)_ij = inv_ij * d_j / d_i with d = (width / 2, height / 2)
    half = torch.tensor([width / 2, height / 2], device=images.device)
    linear = inv * half.view(1, 1, 2) / half.view(1, 2, 1)
    theta = torch.cat([linear, -(linear @ shift.unsqueeze(2))], dim=2)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
