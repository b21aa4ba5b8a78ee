"""Image data sets for the image generators: MNIST, scikit-learn's digits, or a folder of images.

Every source ends up the same way: an (N, C, H, W) float32 tensor in [-1, 1] (the range a tanh
output and a diffusion model's noise schedule expect), int64 class labels and the class names, so a
GAN, VAE or diffusion model trains on any of them unchanged. ``digits`` ships with scikit-learn and
works everywhere; ``mnist`` reads the 10k test set from ``../shared/data`` (or ``$LUOXIA_DATA_DIR``).
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from luoxia.data.corpora import shared_path
from luoxia.errors import ConfigError, DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
MNIST_IMAGES = "mnist/t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "mnist/t10k-labels-idx1-ubyte.gz"
DIGIT_CLASSES = [str(digit) for digit in range(10)]
DIGIT_NAMES = {name: digit for digit, name in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])}
# Words people put around a class in a prompt ("draw a 7", "the digit seven"), dropped before matching.
FILLER_WORDS = {"a", "an", "the", "of", "digit", "number", "class", "draw", "image", "picture"}
MODES = {1: "L", 3: "RGB"}
GRID_PADDING = 2
# Bilinear for every resize, up or down: Pillow widens the filter when it shrinks, so downscaling
# is antialiased too, and one filter keeps MNIST, digits and folders looking alike.
RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class ImageDataset:
    """Images (N, C, H, W) float32 in [-1, 1], labels (N,) int64 indexing ``class_names``."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    source: str
    skipped: int = 0  # files that could not be read and were left out

    def __len__(self) -> int:
        return len(self.labels)


def load_images(source: str, image_size: int, channels: int = 1) -> ImageDataset:
    """``"mnist"``, ``"digits"`` or a folder of images, converted to ``channels`` and resized to a square."""
    if channels not in MODES:
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if image_size < 1:
        raise ConfigError(f"image_size must be a positive number of pixels, got {image_size}")
    if source == "mnist":
        pixels, labels = read_mnist()
        return _from_arrays(pixels, labels, source, image_size, channels)
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # 0–16 → 0–255
        return _from_arrays(pixels, digits.target, source, image_size, channels)
    return _load_folder(Path(source), image_size, channels)


def read_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test set from shared/data: (10000, 28, 28) uint8 pixels and (10000,) labels."""
    images = _read_idx(shared_path(MNIST_IMAGES), magic=2051, header=16)
    labels = _read_idx(shared_path(MNIST_LABELS), magic=2049, header=8)
    if len(images) != len(labels):
        raise DataError(f"MNIST has {len(images)} images but {len(labels)} labels")
    return images, labels


def _read_idx(path: Path, magic: int, header: int) -> np.ndarray:
    """An IDX file (gzip): a big-endian header of magic number and dimensions, then uint8 data."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: not a readable gzip file ({error})") from None
    dims = struct.unpack(f">{header // 4}I", data[:header]) if len(data) >= header else (0,)
    if dims[0] != magic:
        raise DataError(f"{path}: not an IDX file with magic number {magic} (found {dims[0]})")
    shape = dims[1:]
    if len(data) != header + math.prod(shape):
        raise DataError(f"{path}: header says {'×'.join(map(str, shape))} bytes of data, "
                        f"found {len(data) - header}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _from_arrays(pixels: np.ndarray, labels: np.ndarray, source: str, image_size: int,
                 channels: int) -> ImageDataset:
    """A data set of the ten digits from (N, H, W) uint8 grayscale arrays."""
    arrays = [_resize(Image.fromarray(array), image_size, channels) for array in pixels]
    return ImageDataset(_to_tensor(arrays), torch.tensor(labels, dtype=torch.int64), list(DIGIT_CLASSES), source)


def _resize(image: Image.Image, image_size: int, channels: int) -> np.ndarray:
    """One image as an (S, S, C) uint8 array: converted to ``channels`` and resized to a square."""
    image = image.convert(MODES[channels])
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), RESAMPLE)
    return np.asarray(image).reshape(image_size, image_size, channels)


def _to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    """Stack (S, S, C) uint8 arrays into (N, C, S, S) float32 in [-1, 1]."""
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return (stacked.float() / 127.5 - 1).contiguous()


def _load_folder(root: Path, image_size: int, channels: int) -> ImageDataset:
    """Every image below ``root``; its first-level sub-folders, if they hold images, are the classes."""
    if not root.is_dir():
        hint = "" if root.exists() else "; named data sets: digits, mnist"
        raise DataError(f"'{root}' is not a folder of images{hint}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    arrays, keys, failures = [], [], []
    for path in paths:
        try:  # resized at once, so a folder of large photos never sits in memory at full size
            arrays.append(_resize(_open_image(path), image_size, channels))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            failures.append(f"{path} ({error})")
            continue
        relative = path.relative_to(root).parts
        keys.append(relative[0] if len(relative) > 1 else None)
    if not arrays:
        raise DataError(f"no readable image (PNG, JPEG, BMP, GIF, WebP) in {root}"
                        + (f"; {len(failures)} unreadable, first: {failures[0]}" if failures else ""))
    if failures:
        warnings.warn(f"skipped {len(failures)} unreadable image file(s) in {root}; first: {failures[0]}",
                      stacklevel=3)
    class_names = _folder_classes(root, keys)
    index = {name: i for i, name in enumerate(class_names)}
    labels = [index[key] if key is not None else 0 for key in keys]
    return ImageDataset(_to_tensor(arrays), torch.tensor(labels, dtype=torch.int64), class_names, str(root),
                        skipped=len(failures))


def _folder_classes(root: Path, keys: list[str | None]) -> list[str]:
    """Sorted class folder names, or the folder's own name when the images are not in sub-folders."""
    if all(key is None for key in keys):
        return [root.resolve().name]
    if any(key is None for key in keys):
        raise DataError(f"{root} holds images both in class sub-folders and directly inside it; "
                        "move the loose images into a class folder")
    return sorted(set(keys))  # type: ignore[arg-type]


def _open_image(path: Path) -> Image.Image:
    """Decode a file fully now (so corrupt files fail here), with transparency flattened onto white."""
    with Image.open(path) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        return image.copy()


def split_dataset(dataset: ImageDataset, eval_fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """Seeded, stratified (train, eval) split: each class gives ``eval_fraction`` of its images to eval,
    at least one when it has two or more, so every class is seen by both parts."""
    if not 0 < eval_fraction < 1:
        raise ConfigError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    rng = np.random.default_rng(seed)
    labels = dataset.labels.numpy()
    eval_parts = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_eval = min(max(round(len(members) * eval_fraction), 1), len(members) - 1)
        eval_parts.append(members[:n_eval])
    eval_index = np.sort(np.concatenate(eval_parts))
    train_index = np.setdiff1d(np.arange(len(labels)), eval_index)
    if len(eval_index) == 0:
        raise DataError(f"{dataset.source}: too few images ({len(labels)}) to split off an eval set")
    return _subset(dataset, train_index), _subset(dataset, eval_index)


def load_and_split(source: str, image_size: int, channels: int, eval_fraction: float,
                   seed: int) -> tuple[ImageDataset, ImageDataset]:
    """A data set read as `load_images` reads it and split as `split_dataset` splits it: a recipe's
    (train, eval) parts, the same for training and for measuring samples against the eval part."""
    return split_dataset(load_images(source, image_size, channels), eval_fraction, seed)


def _subset(dataset: ImageDataset, index: np.ndarray) -> ImageDataset:
    selected = torch.from_numpy(index)
    return replace(dataset, images=dataset.images[selected], labels=dataset.labels[selected])


def parse_class_prompt(prompt: str, class_names: list[str]) -> int:
    """The class index a prompt names: "7", "seven", "Seven", "digit 7", "draw a 7", "cat"; a bare
    number that is no class name is taken as an index. Anything else is a ConfigError."""
    lookup = {name.lower(): i for i, name in enumerate(class_names)}
    text = prompt.strip().lower()
    words = [w for w in re.findall(r"[^\s.,!?;:'\"]+", text) if w not in FILLER_WORDS]
    for candidate in (text, " ".join(words)):
        if candidate in lookup:
            return lookup[candidate]
        if candidate in DIGIT_NAMES and str(DIGIT_NAMES[candidate]) in lookup:
            return lookup[str(DIGIT_NAMES[candidate])]
        if candidate.isdigit() and int(candidate) < len(class_names):
            return int(candidate)
    raise ConfigError(f"unknown class {prompt!r}; valid: {_describe_classes(class_names)}")


def _describe_classes(class_names: list[str], limit: int = 20) -> str:
    shown = ", ".join(class_names[:limit]) + (f", … ({len(class_names)} in all)" if len(class_names) > limit else "")
    return shown + (" (or zero … nine)" if set(DIGIT_CLASSES) <= set(class_names) else "")


def to_pil(image: torch.Tensor) -> Image.Image:
    """One (C, H, W) image in [-1, 1] as a grayscale (C=1) or RGB (C=3) PIL image."""
    return _pil_from_hwc(_to_uint8(image.unsqueeze(0))[0])


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write (N, C, H, W) images in [-1, 1] as one PNG grid (see ``_tile``), grayscale or RGB as the
    images are; atomically, so a viewer never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _pil_from_hwc(_tile(images, nrow)).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def grid_array(images: torch.Tensor, nrow: int | None = None) -> np.ndarray:
    """The grid ``save_grid`` writes as an (H, W, 3) uint8 array, grayscale repeated to RGB: the
    layout TensorBoard's ``add_image(dataformats="HWC")`` takes."""
    grid = _tile(images, nrow)
    return np.repeat(grid, 3, axis=2) if grid.shape[2] == 1 else grid


def _tile(images: torch.Tensor, nrow: int | None) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] → one (H', W', C) uint8 grid, ``nrow`` images a row (default: near
    square) with 2 black pixels around each, as torchvision's ``make_grid`` lays them out."""
    if images.ndim != 4 or images.shape[1] not in MODES or len(images) == 0:
        raise ValueError(f"expected a non-empty (N, 1 or 3, H, W) tensor, got shape {tuple(images.shape)}")
    n, channels, height, width = images.shape
    columns = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    step_y, step_x = height + GRID_PADDING, width + GRID_PADDING
    grid = np.zeros((rows * step_y + GRID_PADDING, columns * step_x + GRID_PADDING, channels), np.uint8)
    for i, pixels in enumerate(_to_uint8(images)):
        top, left = (i // columns) * step_y + GRID_PADDING, (i % columns) * step_x + GRID_PADDING
        grid[top:top + height, left:left + width] = pixels
    return grid


def _pil_from_hwc(pixels: np.ndarray) -> Image.Image:
    """(H, W, 1) uint8 → grayscale, (H, W, 3) → RGB."""
    return Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] → (N, H, W, C) uint8, clamping what a model overshoots."""
    scaled = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
