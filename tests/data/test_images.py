import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from luoxia.data.images import (
    DIGIT_NAMES,
    ImageDataset,
    grid_array,
    load_images,
    parse_class_prompt,
    save_grid,
    split_dataset,
    to_pil,
)
from luoxia.errors import ConfigError, DataError

DIGITS = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_images("digits", 16)


def test_digits_shapes_range_and_labels(digits: ImageDataset):
    assert digits.images.shape == (1797, 1, 16, 16) and len(digits) == 1797
    assert digits.images.dtype == torch.float32 and digits.labels.dtype == torch.int64
    assert digits.images.min() == -1 and digits.images.max() == 1
    assert digits.labels.unique().tolist() == list(range(10))
    assert digits.class_names == DIGITS and digits.skipped == 0


@pytest.mark.shared_data("mnist")
def test_mnist_test_set():
    mnist = load_images("mnist", 28)
    assert mnist.images.shape == (10000, 1, 28, 28)
    assert mnist.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert mnist.labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.images.min() == -1 and mnist.images.max() == 1
    assert mnist.class_names == DIGITS


def test_mnist_missing_names_the_environment_variable(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LUOXIA_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="LUOXIA_DATA_DIR"):
        load_images("mnist", 28)


def test_mnist_corrupt_header_is_a_data_error(tmp_path: Path, monkeypatch):
    import gzip

    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00" * 16 + b"\x01" * 10))
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00" * 8))
    monkeypatch.setenv("LUOXIA_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="t10k-images.*magic number 2051"):
        load_images("mnist", 28)


def write_png(path: Path, colour: tuple[int, int, int], size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size + 4), colour).save(path)


def test_folder_with_classes_skips_corrupt_files(tmp_path: Path):
    for i in range(3):
        write_png(tmp_path / "cat" / f"c{i}.png", (255, 0, 0))
        write_png(tmp_path / "dog" / "puppies" / f"d{i}.PNG", (0, 0, 255))  # nested, upper-case suffix
    (tmp_path / "cat" / "broken.png").write_bytes(np.random.default_rng(0).bytes(300))
    jpeg = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(jpeg, "JPEG")
    (tmp_path / "dog" / "cut.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (tmp_path / "dog" / "notes.txt").write_text("not an image")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_images(str(tmp_path), 8, channels=3)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "skipped 2" in messages[0] and "broken.png" in messages[0]
    assert data.skipped == 2 and len(data) == 6
    assert data.class_names == ["cat", "dog"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.images.shape == (6, 3, 8, 8)
    red = data.images[0, :, 4, 4].tolist()
    assert red == [1.0, -1.0, -1.0]


def test_folder_without_sub_folders_is_one_class_and_grayscale(tmp_path: Path):
    folder = tmp_path / "shapes"
    write_png(folder / "a.png", (255, 255, 255))
    Image.new("LA", (5, 5), (0, 0)).save(folder / "transparent.png")  # flattened onto white
    data = load_images(str(folder), 4)
    assert data.class_names == ["shapes"] and data.labels.tolist() == [0, 0]
    assert data.images.shape == (2, 1, 4, 4) and bool((data.images == 1).all())


def test_folder_errors(tmp_path: Path):
    with pytest.raises(DataError, match="not a folder"):
        load_images(str(tmp_path / "missing"), 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no readable image"):
        load_images(str(tmp_path / "empty"), 8)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="no readable image.*x.png"):
        load_images(str(tmp_path / "bad"), 8)
    write_png(tmp_path / "mixed" / "loose.png", (0, 0, 0))
    write_png(tmp_path / "mixed" / "cls" / "a.png", (0, 0, 0))
    with pytest.raises(DataError, match="loose images"):
        load_images(str(tmp_path / "mixed"), 8)
    with pytest.raises(ConfigError, match="channels"):
        load_images("digits", 8, channels=2)


def test_split_is_seeded_stratified_and_disjoint(digits: ImageDataset):
    def eval_images(seed: int) -> torch.Tensor:
        return split_dataset(digits, 0.2, seed)[1].images

    train, held_out = split_dataset(digits, 0.2, seed=0)
    assert len(train) + len(held_out) == len(digits)
    assert abs(len(held_out) - 0.2 * len(digits)) <= 10
    assert torch.equal(eval_images(0), held_out.images) and not torch.equal(eval_images(1), held_out.images)
    train_rows = {tuple(row) for row in train.images.flatten(1).tolist()}
    eval_rows = {tuple(row) for row in held_out.images.flatten(1).tolist()}
    all_rows = {tuple(row) for row in digits.images.flatten(1).tolist()}
    assert len(train_rows) + len(eval_rows) == len(all_rows)  # disjoint: no image in both
    for part in (train, held_out):
        shares = part.labels.bincount(minlength=10).float() / len(part)
        overall = digits.labels.bincount().float() / len(digits)
        assert (part.labels.bincount(minlength=10) > 0).all() and torch.allclose(shares, overall, atol=0.01)
        assert part.class_names == digits.class_names


def test_split_keeps_small_classes_in_both_parts():
    data = ImageDataset(torch.zeros(12, 1, 2, 2), torch.tensor([0] * 10 + [1] * 2), ["a", "b"], "test")
    train, held_out = split_dataset(data, 0.1, seed=3)
    assert set(train.labels.tolist()) == set(held_out.labels.tolist()) == {0, 1}
    with pytest.raises(ConfigError, match="eval_fraction"):
        split_dataset(data, 1.0, seed=3)


@pytest.mark.parametrize("prompt", ["7", "seven", "Seven", "digit 7", "a 7", "draw a 7", "Draw a SEVEN.",
                                    " number 7 "])
def test_parse_class_prompt_accepts(prompt: str):
    assert parse_class_prompt(prompt, DIGITS) == 7


@pytest.mark.parametrize("prompt", ["cat", "10", "", "seventy"])
def test_parse_class_prompt_rejects_listing_classes(prompt: str):
    with pytest.raises(ConfigError, match=r"unknown class .*valid: 0, 1, 2.*9 \(or zero … nine\)"):
        parse_class_prompt(prompt, DIGITS)


def test_parse_class_prompt_named_classes():
    assert parse_class_prompt("Dog", ["cat", "dog"]) == 1
    assert parse_class_prompt("draw a cat", ["cat", "dog"]) == 0
    assert parse_class_prompt("1", ["cat", "dog"]) == 1  # a bare number is an index
    assert DIGIT_NAMES["nine"] == 9 and len(DIGIT_NAMES) == 10
    with pytest.raises(ConfigError, match="valid: cat, dog$"):
        parse_class_prompt("seven", ["cat", "dog"])


# 10 images of 8×8 in cells of 10 (2 pixels of padding) plus the 2-pixel far border
@pytest.mark.parametrize("channels, nrow, size", [(1, None, (4 * 10 + 2, 3 * 10 + 2)),
                                                 (3, 5, (5 * 10 + 2, 2 * 10 + 2))])
def test_save_grid_geometry(tmp_path: Path, channels: int, nrow: int | None, size: tuple[int, int]):
    images = torch.linspace(-1, 1, 10 * channels * 8 * 8).reshape(10, channels, 8, 8)
    path = save_grid(images, tmp_path / "out" / "grid.png", nrow=nrow)
    with Image.open(path) as grid:
        assert grid.size == size and grid.mode == ("L" if channels == 1 else "RGB")
        pixels = np.asarray(grid)
    assert pixels[0, 0].max() == 0  # padding is black
    assert np.array_equal(pixels[2:10, 2:10], np.asarray(to_pil(images[0])))
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left
    array = grid_array(images, nrow=nrow)
    assert array.shape == (size[1], size[0], 3) and array.dtype == np.uint8
    assert np.array_equal(array[..., 0], pixels if channels == 1 else pixels[..., 0])


def test_to_pil_round_trips_range():
    image = torch.tensor([[[-1.0, 0.0], [1.0, 2.0]]])
    assert np.asarray(to_pil(image)).tolist() == [[0, 128], [255, 255]]
