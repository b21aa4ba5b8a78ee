"""Image generators on the shared loop: a tiny VAE trains on scikit-learn's digits, loads through
``luoxia.load``, draws the class it is asked for, and refuses classes it does not know."""

from pathlib import Path

import pytest
import torch
from PIL import Image

import luoxia
from luoxia.errors import ConfigError
from luoxia.generate.interface import ImageGenerator
from luoxia.registry import load_recipe
from luoxia.runs import read_metrics
from luoxia.train.image import train_image
from tests.helpers import TINY_IMAGE as TINY
from tests.helpers import luoxia as run_cli


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("vae") / "run"
    train_image(load_recipe("configs/image/vae.yaml", [f"out_dir={run}", *TINY]))
    return run


def test_training_lowers_the_loss_and_writes_a_run(vae_run: Path):
    evals = [row["val_loss"] for row in read_metrics(vae_run) if row["kind"] == "eval"]
    assert len(evals) == 2 and evals[1] < evals[0]
    assert (vae_run / "model.safetensors").is_file() and (vae_run / "classes.txt").read_text().split() == \
        [str(d) for d in range(10)]
    assert any((vae_run / "tensorboard").iterdir())


def test_load_gives_an_image_generator_that_is_seeded(vae_run: Path):
    generator = luoxia.load(vae_run, device="cpu")
    assert isinstance(generator, ImageGenerator) and generator.class_names[7] == "7"
    images = generator.generate("seven", n=3, seed=0)
    assert len(images) == 3 and all(isinstance(i, Image.Image) and i.size == (8, 8) for i in images)
    again = generator.generate("digit 7", n=3, seed=0)
    assert [i.tobytes() for i in images] == [i.tobytes() for i in again]
    assert generator.generate("7", n=3, seed=1)[0].tobytes() != images[0].tobytes()


def test_unknown_class_lists_the_valid_ones(vae_run: Path):
    with pytest.raises(ConfigError, match="unknown class 'cat'.*0, 1, 2"):
        luoxia.load(vae_run, device="cpu").generate("cat", n=1)


@pytest.mark.slow
def test_cli_generate_image_writes_a_grid_and_the_images(vae_run: Path, tmp_path: Path):
    run_cli("generate-image", "--model", str(vae_run), "--prompt", "3", "--n", "4", "--seed", "0",
            "--out", str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "0000.png", "0001.png", "0002.png", "0003.png", "grid.png", "interpolation.png", "reconstructions.png"]
    assert Image.open(tmp_path / "out" / "reconstructions.png").size == (8 * 10 + 2, 2 * 10 + 2)  # 2 rows of 8
    bad = run_cli("generate-image", "--model", str(vae_run), "--prompt", "eleven", check=False)
    assert bad.returncode == 2 and "unknown class 'eleven'" in bad.stderr


def test_resume_continues_the_same_run(tmp_path: Path):
    """Same losses whether or not the run stopped at its step-15 checkpoint."""
    import json
    import shutil

    steps = [f for f in TINY if not f.startswith("train.sample_interval")]
    curves = []
    for name in ("reference", "killed"):
        run = tmp_path / name
        train_image(load_recipe("configs/image/vae.yaml", [f"out_dir={run}", *steps]))
        curves.append([row["loss"] for row in read_metrics(run) if row["kind"] == "train"])
    checkpoints = tmp_path / "killed" / "checkpoints"
    shutil.rmtree(sorted(checkpoints.glob("step-*"))[-1])
    (checkpoints / "latest.json").write_text(json.dumps({"dir": "step-0000015", "step": 15}))
    train_image(load_recipe("configs/image/vae.yaml", [f"out_dir={tmp_path / 'killed'}", *steps]), resume=True)
    resumed = [row["loss"] for row in read_metrics(tmp_path / "killed") if row["kind"] == "train"]
    assert resumed == curves[0] == curves[1]


TINY_DDPM = ["data.image_size=8", "model.base_channels=8", "model.channel_mults=[1,2]", "model.num_train_steps=50",
             "model.ema_decay=0.9", "train.max_steps=20", "train.batch_size=32", "train.warmup_steps=0",
             "train.eval_interval=10", "train.eval_batches=2", "train.sample_interval=20", "train.progress=false",
             "train.device=cpu", "train.num_threads=1", "sample.steps=5", "sample.per_class=1"]


def test_diffusion_trains_with_ema_and_samples_through_the_same_interface(tmp_path: Path):
    run = tmp_path / "ddpm"
    train_image(load_recipe("configs/image/ddpm.yaml", [f"out_dir={run}", *TINY_DDPM]))
    evals = [row["val_loss"] for row in read_metrics(run) if row["kind"] == "eval"]
    assert len(evals) == 2 and evals[1] < evals[0]
    generator = luoxia.load(run, device="cpu")
    model = generator.model
    assert any(not torch.equal(a, b) for a, b in zip(model.ema.parameters(), model.unet.parameters(), strict=True))
    first = generator.generate("4", n=2, seed=3, steps=5, guidance=2.0)
    again = generator.generate("four", n=2, seed=3, steps=5, guidance=2.0)
    assert [i.tobytes() for i in first] == [i.tobytes() for i in again] and first[0].size == (8, 8)


TINY_GAN = ["data.image_size=8", "model.latent_dim=8", "model.width=8", "model.label_dim=4", "train.max_steps=20",
            "train.batch_size=32", "train.log_interval=5", "train.checkpoint_interval=10", "train.eval_batches=2",
            "train.sample_interval=20", "train.progress=false", "train.device=cpu", "train.num_threads=1",
            "sample.per_class=1"]


def test_gan_trains_both_players_and_samples_through_the_same_interface(tmp_path: Path):
    run = tmp_path / "gan"
    train_image(load_recipe("configs/image/gan.yaml", [f"out_dir={run}", *TINY_GAN]))
    rows = read_metrics(run)
    train = [row for row in rows if row["kind"] == "train"]
    assert [row["step"] for row in train] == [5, 10, 15, 20]
    assert all(row["loss"] > 0 and row["d_loss"] > 0 for row in train)
    assert [row["step"] for row in rows if row["kind"] == "eval"] == [20]  # the recipe evaluates at the end only
    generator = luoxia.load(run, device="cpu")
    first = generator.generate("3", n=2, seed=4)
    again = generator.generate("three", n=2, seed=4)
    assert [i.tobytes() for i in first] == [i.tobytes() for i in again] and first[0].size == (8, 8)
    with pytest.raises(ConfigError, match="grad_accum must be 1"):
        train_image(load_recipe("configs/image/gan.yaml", [f"out_dir={tmp_path / 'accum'}", *TINY_GAN,
                                                           "train.grad_accum=2"]))
