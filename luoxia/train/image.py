"""Training image generators — one `Task` for every family on the shared loop.

``luoxia train configs/image/vae.yaml key=value …``. Each family's module has the same two-method
surface: ``forward(images, labels)`` returns the training loss (so DDP can wrap it) and
``sample(labels, generator, **options)`` returns new images in [-1, 1]. The data set is read once,
split into train and evaluation parts (the evaluation part serves FID later), and kept in memory:
digit sets are a few megabytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn as nn
from pydantic import Field

from luoxia.config import Config, dump_config
from luoxia.errors import ConfigError
from luoxia.models.classifier import DigitClassifier, DigitClassifierConfig
from luoxia.models.dcgan import DCGAN, DCGANConfig
from luoxia.models.ddpm import DDPMConfig, Diffusion
from luoxia.models.vae import VAE, VAEConfig
from luoxia.runs import CONFIG_FILE, write_class_names
from luoxia.runtime import (DistributedContext, autocast, init_distributed, resolve_device, seed_everything,
                            set_threads)
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
    """What every image recipe shares; a family adds its ``task``, its ``model`` section and the
    module that section configures."""

    module: ClassVar[type[nn.Module]]

    out_dir: str = Field("runs/image", description="run directory")
    seed: int = Field(1337, description="seed for the split, initialisation, batches and noise")
    data: ImageData = Field(default_factory=ImageData)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: ImageSampleConfig = Field(default_factory=ImageSampleConfig)


class VAERecipe(ImageRecipe):
    module: ClassVar[type[nn.Module]] = VAE
    task: Literal["vae"] = Field("vae", description="recipe kind")
    model: VAEConfig = Field(default_factory=VAEConfig)


class DDPMRecipe(ImageRecipe):
    module: ClassVar[type[nn.Module]] = Diffusion
    task: Literal["ddpm"] = Field("ddpm", description="recipe kind")
    model: DDPMConfig = Field(default_factory=DDPMConfig)


class GANRecipe(ImageRecipe):
    module: ClassVar[type[nn.Module]] = DCGAN
    task: Literal["gan"] = Field("gan", description="recipe kind")
    model: DCGANConfig = Field(default_factory=DCGANConfig)


class ClassifierRecipe(ImageRecipe):
    """The digit classifier whose features `luoxia eval-image` measures generators with (FID, KID)."""

    module: ClassVar[type[nn.Module]] = DigitClassifier
    task: Literal["classifier"] = Field("classifier", description="recipe kind")
    model: DigitClassifierConfig = Field(default_factory=DigitClassifierConfig)


def build_model(recipe: ImageRecipe) -> nn.Module:
    return type(recipe).module(recipe.model)


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
        self.model = build_model(recipe).to(device)
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
        batches = [(self.eval_set.images[i : i + size].to(self.device),
                    self.eval_set.labels[i : i + size].to(self.device)) for i in range(0, count, size)]
        losses = [self.model(images, labels, generator=generator) for images, labels in batches]
        metrics = {"val_loss": self.mean_across_ranks(torch.stack(losses).mean())}
        if hasattr(self.model, "logits"):  # a classifier: its accuracy too
            hits = torch.cat([self.model.logits(images).argmax(-1) == labels for images, labels in batches])
            metrics["val_accuracy"] = self.mean_across_ranks(hits.float().mean())
        self.model.train()
        return metrics

    @torch.no_grad()
    def log_samples(self, logger: RunLogger, step: int) -> None:
        from luoxia.data.images import grid_array

        if not hasattr(self.model, "sample"):  # a classifier draws nothing
            return
        classes = len(self.train_set.class_names)
        labels = torch.arange(classes, device=self.device).repeat_interleave(self.recipe.sample.per_class)
        generator = torch.Generator(self.device).manual_seed(step)
        self.model.eval()
        images = self.model.sample(labels, generator=generator, steps=self.recipe.sample.steps,
                                   guidance=self.recipe.sample.guidance)
        self.model.train()
        logger.image("samples", grid_array(images.cpu(), nrow=self.recipe.sample.per_class), step)


class GANTask(ImageTask):
    """Adversarial training: each step one discriminator update, then one generator update, on the
    step's batch, each network with its own Adam at DCGAN's betas (0.5, 0.999) and ``train.lr``
    (``train.beta1``/``beta2``/``weight_decay`` are not used). Reports the generator's loss as ``loss``
    and the discriminator's as ``d_loss``; ``val_loss`` is the discriminator's (`DCGAN.forward`).

    Two networks, two losses and two optimizers a step do not fit DDP's one forward, one backward:
    the networks are used unwrapped (``self.model``) and, under ``torchrun``, each update averages
    its gradients across ranks by hand before stepping. ``train.compile`` is refused for the same
    reason."""

    def __init__(self, recipe: ImageRecipe, train_set, eval_set, ctx: DistributedContext, device: torch.device):
        if recipe.train.grad_accum != 1:
            raise ConfigError(f"train.grad_accum must be 1 for a GAN, got {recipe.train.grad_accum}")
        if recipe.train.compile:
            raise ConfigError("train.compile is not supported for a GAN; set train.compile=false")
        super().__init__(recipe, train_set, eval_set, ctx, device)
        lr, betas = recipe.train.lr, (0.5, 0.999)
        self.optimizers = {"discriminator": torch.optim.Adam(self.model.discriminator.parameters(), lr, betas),
                           "generator": torch.optim.Adam(self.model.generator.parameters(), lr, betas)}

    def setup_training(self, compile_model: bool = False) -> None:
        self.forward_model = self.model  # no DDP wrapper: see the class docstring

    def train_step(self, step: int) -> dict[str, float]:
        real, labels = self.to_device(self.micro_batch(step, 0))
        d_loss = self._update("discriminator", lambda: self.model.discriminator_loss(real, labels))
        g_loss = self._update("generator", lambda: self.model.generator_loss(labels.size(0), labels))
        if self.scaler:
            self.scaler.update()  # once for both optimizers, as torch.amp asks
        return {"loss": self.mean_across_ranks(g_loss), "d_loss": self.mean_across_ranks(d_loss),
                **self.step_counts()}

    def _update(self, name: str, loss_fn) -> torch.Tensor:
        """Backward ``loss_fn()`` and step the optimizer ``name`` alone; every gradient of the model
        is cleared after, since the generator's loss also reaches the discriminator's weights."""
        optimizer = self.optimizers[name]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        with autocast(self.device, self.dtype):
            loss = loss_fn()
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.ctx.enabled:
            import torch.distributed as dist

            for p in params:
                dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
        if self.scaler:
            self.scaler.unscale_(optimizer)
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.scaler.step(optimizer) if self.scaler else optimizer.step()
        self.model.zero_grad(set_to_none=True)
        return loss.detach()


TASKS: dict[str, type[ImageTask]] = {"gan": GANTask}  # recipe task → its Task, when not ImageTask


def load_splits(recipe: ImageRecipe):
    from luoxia.data.images import load_and_split

    data = recipe.data
    return load_and_split(data.source, data.image_size, data.channels, data.eval_fraction, recipe.seed)


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
        write_class_names(run_dir, train_set.class_names)
    task = TASKS.get(recipe.task, ImageTask)(recipe, train_set, eval_set, ctx, device)
    return fit(task, recipe.train, run_dir, ctx, resume=resume)

