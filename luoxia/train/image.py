"""Training image generators — one `Task` for every family on the shared loop.

``luoxia train configs/image/vae.yaml key=value …``. Each family's module has the same two-method
surface: ``forward(images, labels)`` returns the training loss (so DDP can wrap it) and
``sample(labels, generator, **options)`` returns new images in [-1, 1]. The data set is read once,
split into train and evaluation parts (the evaluation part serves FID later), and kept in memory:
digit sets are a few megabytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field

from luoxia.config import Config, dump_config
from luoxia.generate.image import CLASSES_FILE, IMAGE_FAMILIES
from luoxia.models.ddpm import DDPMConfig
from luoxia.models.vae import VAEConfig
from luoxia.runtime import DistributedContext, init_distributed, resolve_device, seed_everything, set_threads
from luoxia.train.lm import CONFIG_FILE
from luoxia.train.logging import RunLogger
from luoxia.train.loop import TrainConfig, TrainState, fit
from luoxia.train.task import Batch, ExampleSampler, GradientTask


class ImageData(Config):
    """Where the images come from and how they are shaped."""

    source: str = Field("digits", description="mnist (../shared/data), digits (scikit-learn, everywhere) or a folder")
    image_size: int = Field(16, gt=0, description="images are resized to image_size × image_size")
    channels: int = Field(1, description="1 (grayscale) or 3 (RGB)")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="share held out for evaluation (loss, FID)")


class ImageSampleConfig(Config):
    """Sample grids written to TensorBoard during training."""

    per_class: int = Field(4, gt=0, description="samples of each class in the grid")
    steps: int = Field(25, gt=0, description="diffusion: DDIM steps")
    guidance: float = Field(3.0, ge=0, description="diffusion: classifier-free guidance weight")


class ImageRecipe(Config):
    """What every image recipe shares; a family adds its ``task`` and ``model`` section."""

    out_dir: str = Field("runs/image", description="run directory")
    seed: int = Field(1337, description="seed for the split, initialisation, batches and noise")
    data: ImageData = Field(default_factory=ImageData)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: ImageSampleConfig = Field(default_factory=ImageSampleConfig)


class VAERecipe(ImageRecipe):
    task: Literal["vae"] = Field("vae", description="recipe kind")
    model: VAEConfig = Field(default_factory=VAEConfig)


class DDPMRecipe(ImageRecipe):
    task: Literal["ddpm"] = Field("ddpm", description="recipe kind")
    model: DDPMConfig = Field(default_factory=DDPMConfig)


IMAGE_RECIPES: dict[str, type[ImageRecipe]] = {"vae": VAERecipe, "ddpm": DDPMRecipe}


def build_model(task: str, config: Config) -> nn.Module:
    module, _ = IMAGE_FAMILIES[task]
    return module(config)


def with_data_shape(recipe: ImageRecipe, num_classes: int) -> ImageRecipe:
    """The recipe with the model's image size, channels and classes taken from the data."""
    model = recipe.model.model_copy(update={"image_size": recipe.data.image_size, "channels": recipe.data.channels,
                                            "num_classes": num_classes})
    return recipe.model_copy(update={"model": model})


class ImageTask(GradientTask):
    """Batches of (images, labels) from the in-memory training split; the family's module gives the loss."""

    def __init__(self, recipe: ImageRecipe, train_set, eval_set, ctx: DistributedContext, device: torch.device):
        cfg = recipe.train
        super().__init__(cfg, ctx, device)
        self.recipe, self.train_set, self.eval_set = recipe, train_set, eval_set
        seed_everything(recipe.seed)  # identical initial weights on every rank
        self.model = build_model(recipe.task, recipe.model).to(device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizers = {"adamw": torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                                      weight_decay=cfg.weight_decay)}
        torch.manual_seed(recipe.seed + ctx.rank)  # noise differs between ranks
        self.setup_training(cfg.compile)
        self.sampler = ExampleSampler(len(train_set), cfg.batch_size, cfg.grad_accum, recipe.seed, ctx.rank,
                                      ctx.world_size)

    def micro_batch(self, step: int, micro: int) -> Batch:
        index = torch.tensor(self.sampler.indices(step, micro))
        return self.train_set.images[index], self.train_set.labels[index]

    def compute_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        images, labels = batch
        return model(images, labels)

    def step_counts(self) -> dict[str, float]:
        return {"samples": self.cfg.grad_accum * self.cfg.batch_size * self.ctx.world_size}

    def before_zero_grad(self, step: int) -> None:
        if hasattr(self.model, "update_ema"):  # diffusion samples from an EMA of its weights
            self.model.update_ema()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss on fixed evaluation batches, with fixed noise: the same number for the same weights."""
        size = self.cfg.eval_batch_size or self.cfg.batch_size
        count = min(len(self.eval_set), size * self.cfg.eval_batches)
        generator = torch.Generator(self.device).manual_seed(self.recipe.seed)
        self.model.eval()
        losses = [self.model(self.eval_set.images[i : i + size].to(self.device),
                             self.eval_set.labels[i : i + size].to(self.device), generator=generator)
                  for i in range(0, count, size)]
        self.model.train()
        return {"val_loss": self.mean_across_ranks(torch.stack(losses).mean())}

    @torch.no_grad()
    def log_samples(self, logger: RunLogger, step: int) -> None:
        from luoxia.data.images import grid_array

        classes = len(self.train_set.class_names)
        labels = torch.arange(classes, device=self.device).repeat_interleave(self.recipe.sample.per_class)
        generator = torch.Generator(self.device).manual_seed(step)
        self.model.eval()
        images = self.model.sample(labels, generator=generator, steps=self.recipe.sample.steps,
                                   guidance=self.recipe.sample.guidance)
        self.model.train()
        logger.image("samples", grid_array(images.cpu(), nrow=self.recipe.sample.per_class), step)


def load_splits(recipe: ImageRecipe):
    from luoxia.data.images import load_images, split_dataset

    data = recipe.data
    return split_dataset(load_images(data.source, data.image_size, data.channels), data.eval_fraction, recipe.seed)


def train_image(recipe: ImageRecipe, resume: bool = False) -> TrainState:
    """Run an image recipe end to end (also as one rank of a ``torchrun`` job)."""
    set_threads(recipe.train.num_threads)
    device = resolve_device(recipe.train.device)
    ctx = init_distributed(device)
    train_set, eval_set = load_splits(recipe)
    recipe = with_data_shape(recipe, len(train_set.class_names))
    run_dir = Path(recipe.out_dir)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(recipe, run_dir / CONFIG_FILE)
        (run_dir / CLASSES_FILE).write_text("\n".join(train_set.class_names) + "\n", encoding="utf-8")
    task = ImageTask(recipe, train_set, eval_set, ctx, device)
    return fit(task, recipe.train, run_dir, ctx, resume=resume)

