"""Decoding every image mode to H x W x 3 uint8 RGB, resizing without swapping axes, augmentation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from digitcls.choices import AffineAugment, parse_augment
from digitcls.data.images import BadImageWarning, load_input, read_image, resize, to_chw_tensor
from digitcls.data.transforms import batch_augment
from digitcls.errors import BadImageError, ConfigError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)


def write(path: Path, array: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), array)
    return path


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = RGB[:, :, 0].copy()
    image = read_image(write(tmp_path / "g.png", gray))
    assert image.shape == (6, 9, 3) and image.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)


def test_colour_is_rgb_not_bgr(tmp_path: Path) -> None:
    image = read_image(write(tmp_path / "c.png", RGB[:, :, ::-1]))  # cv2 writes BGR
    np.testing.assert_array_equal(image, RGB)


def test_alpha_is_dropped(tmp_path: Path) -> None:
    bgra = np.dstack([RGB[:, :, ::-1], np.full((6, 9), 255, np.uint8)])
    np.testing.assert_array_equal(read_image(write(tmp_path / "a.png", bgra)), RGB)


def test_16_bit_is_scaled_to_8_bit(tmp_path: Path) -> None:
    deep = RGB[:, :, 0].astype(np.uint16) * 257 + 3  # 8-bit v -> 16-bit v * 257 + 3, >> 8 gives v back
    image = read_image(write(tmp_path / "d.png", deep))
    np.testing.assert_array_equal(image[:, :, 0], RGB[:, :, 0])
    assert image.dtype == np.uint8


@pytest.mark.parametrize("name", ["upper.JPG", "x.jpeg", "y.bmp", "z.BMP"])
def test_other_formats(tmp_path: Path, name: str) -> None:
    image = read_image(write(tmp_path / name, RGB[:, :, ::-1]))
    assert image.shape == (6, 9, 3) and image.dtype == np.uint8
    if name.lower().endswith(".bmp"):  # lossless
        np.testing.assert_array_equal(image, RGB)


@pytest.mark.parametrize(
    ("content", "words"), [(b"", "empty (0 bytes)"), (b"\x89PNG\r\n\x1a\nbroken", "corrupt")]
)
def test_bad_files_name_the_file(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(BadImageError) as caught:
        read_image(path)
    assert str(path) in str(caught.value) and words in str(caught.value)
    with pytest.raises(BadImageError, match="cannot read image file"):
        read_image(tmp_path / "missing.png")


def test_resize_height_width_not_swapped() -> None:
    image = RGB.copy()
    assert resize(image, (20, 36)).shape == (20, 36, 3)
    assert resize(image, (36, 20)).shape == (36, 20, 3)
    assert resize(image, (16, 16)).shape == (16, 16, 3)


def test_resize_interpolation_and_noop() -> None:
    big = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert resize(big, (40, 60)) is big
    np.testing.assert_array_equal(
        resize(big, (20, 30)), cv2.resize(big, (30, 20), interpolation=cv2.INTER_AREA)
    )
    np.testing.assert_array_equal(
        resize(big, (80, 90)), cv2.resize(big, (90, 80), interpolation=cv2.INTER_LINEAR)
    )


def test_training_predict_and_serve_make_one_input_and_skip_the_same_files(tmp_path: Path) -> None:
    """The dataset, predict's batches and the serve gate all go through load_inputs/load_input: the same
    pixels as OpenCV's own decode + BGR->RGB + resize, and the same unreadable file skipped with a warning."""
    from digitcls.data.datamodule import ImageFolderDataset
    from digitcls.predict import decode_batch
    from digitcls.serve.gate import Upload, model_input

    good = write(tmp_path / "good.png", RNG.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    expected = cv2.resize(cv2.cvtColor(cv2.imread(str(good)), cv2.COLOR_BGR2RGB), (12, 20), interpolation=cv2.INTER_AREA)
    with pytest.warns(BadImageWarning, match="bad.png"):
        images, ids, errors = decode_batch([tmp_path / "bad.png", good], tmp_path, (20, 12), None, 10**6)
    assert ids == ["good.png"] and [path for path, _ in errors] == ["bad.png"]
    assert np.array_equal(images[0].transpose(1, 2, 0), expected)
    dataset = ImageFolderDataset([(tmp_path / "bad.png", 0), (good, 1)], (20, 12))
    with pytest.warns(BadImageWarning, match="bad.png"):
        assert dataset[0] is None
    assert np.array_equal(dataset[1][0].numpy().transpose(1, 2, 0), expected)
    served = model_input(Upload(good.read_bytes(), "good.png", "none"), (20, 12), 10**6)
    assert np.array_equal(served.numpy().transpose(1, 2, 0), expected)


def test_tensor_is_chw_uint8(tmp_path: Path) -> None:
    tensor = to_chw_tensor(load_input(write(tmp_path / "g.png", RGB[:, :, 0].copy()), (20, 36)))
    assert tensor.shape == (3, 20, 36) and tensor.dtype == torch.uint8
    assert torch.equal(to_chw_tensor(RGB)[:, 2, 5], torch.from_numpy(RGB[2, 5]))


# ----------------------------------------------------------------------------- augmentation


def batch(n: int = 4, h: int = 20, w: int = 36) -> torch.Tensor:
    return torch.from_numpy(RNG.integers(0, 256, (n, 3, h, w), dtype=np.uint8))


@pytest.mark.parametrize(
    "augment", [None, {}, {"degrees": 0, "translate": 0, "scale": 0, "shear": 0}, {"scale": [1.0, 1.0]}]
)
def test_augment_off_is_identity_as_float(augment) -> None:
    x = batch()
    out = batch_augment(x, augment)
    assert out.dtype == torch.float32
    assert torch.equal(out, x.float() / 255)


def test_augment_changes_each_sample_differently_and_stays_in_range() -> None:
    x = batch(1).repeat(6, 1, 1, 1)
    out = batch_augment(
        x,
        {"degrees": 15, "translate": 0.1, "scale": [0.9, 1.1], "shear": 5},
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.allclose(out[0], x[0].float() / 255)
    assert len({tuple(o.flatten()[:200].tolist()) for o in out}) == 6  # per-sample parameters


def test_augment_is_reproducible_with_a_generator() -> None:
    x, augment = batch(), {"degrees": 30, "translate": 0.2}
    first = batch_augment(x, augment, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, batch_augment(x, augment, generator=torch.Generator().manual_seed(1)))


def test_zoom_is_isotropic_on_non_square_images() -> None:
    """A fixed x2 zoom turns a centred 4 x 4 square into 8 x 8 pixels, also when h != w; black fill."""
    x = torch.zeros(1, 1, 20, 36)
    x[..., 8:12, 16:20] = 1.0
    out = batch_augment(x, {"scale": [2.0, 2.0]})[0, 0]
    rows, cols = torch.nonzero(out > 0.5, as_tuple=True)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (8, 8)
    assert out[0, 0] == 0


def test_parse_augment() -> None:
    assert parse_augment({"degrees": 10, "translate": 0.1, "scale": [0.9, 1.1], "shear": 0}) == AffineAugment(
        degrees=10.0, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=0.0
    )
    assert parse_augment({"scale": 0.2}).scale == pytest.approx((0.8, 1.2))
    with pytest.raises(ConfigError, match="unknown key.*'degree'"):
        parse_augment({"degree": 10})
    with pytest.raises(ConfigError, match="augment.scale"):
        parse_augment({"scale": [1.2, 0.8]})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_on_gpu() -> None:
    x = batch().cuda()
    out = batch_augment(x, {"degrees": 10, "translate": 0.1})
    assert out.is_cuda and out.shape == x.shape
