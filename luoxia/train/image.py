"""Training image generators — one `Task` for every family on the shared loop.

``luoxia train configs/image/vae.yaml key=value …``. Each family's module has the same two-method
surface: ``forward(images, labels)`` returns the training loss (so DDP can wrap it) and
``sample(labels, generator, **options)`` returns new images in [-1, 1]. The data set is read once,
split into train and evaluation parts (the evaluation part serves FID later), and kept in memory:
digit sets are a few megabytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
from pydantic import Field

from luoxia.config import Config, dump_config
from luoxia.data.images import grid_array, load_and_split
from luoxia.errors import ConfigError
from luoxia.models.classifier import DigitClassifier, DigitClassifierConfig
from luoxia.models.dcgan import DCGAN, DCGANConfig
from luoxia.models.ddpm import DDPMConfig, Diffusion
from luoxia.models.vae import VAE, VAEConfig
from luoxia.runs import CONFIG_FILE, write_class_names
from luoxia.runtime import DistributedContext, init_distributed, resolve_device, seed_everything, set_threads
from luoxia.train.logging import RunLogger
from luoxia.train.loop import Callback, LoopConfig, SampleLogConfig, TrainState, fit
from luoxia.train.optim import OptimizerConfig, build_optimizers
from luoxia.train.task import (
    Amp,
    Batch,
    CompileConfig,
    ExampleSampler,
    Learner,
    LossFn,
    gradient_step,
    mean_across_ranks,
    wrap_model,
)

# Why image tasks refuse Muon: this Muon orthogonalises 2-D matrices, and these networks are mostly
# convolution filters (4-D), whose updates it would leave to AdamW anyway.
CONV_MUON = "the image models are convolutional and Muon here only handles 2-D matrices"


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


class ImageTrainConfig(LoopConfig, OptimizerConfig, CompileConfig, SampleLogConfig):
    """The VAE's and diffusion's training: loop, AdamW, compile and sample grids."""

    muon_refusal: ClassVar[str | None] = CONV_MUON


class ClassifierTrainConfig(LoopConfig, OptimizerConfig, CompileConfig):
    """The classifier's training: as a generator's, without sample grids (it draws nothing)."""

    muon_refusal: ClassVar[str | None] = CONV_MUON


class GANTrainConfig(LoopConfig, OptimizerConfig, SampleLogConfig):
    """A GAN's training: one Adam per network at DCGAN's betas (0.5, 0.999) and no weight decay by
    default. No ``compile`` (the networks run unwrapped, see `GANTask`); ``grad_accum`` must be 1."""

    muon_refusal: ClassVar[str | None] = CONV_MUON

    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 of both networks (DCGAN: 0.5)")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2 of both networks")
    weight_decay: float = Field(0.0, ge=0, description="decoupled weight decay on matrices")


class ImageRecipe(Config):
    """What every image recipe shares; a family adds its ``task``, ``model`` and ``train`` sections
    (and ``sample`` when it draws), and the module its ``model`` section configures."""

    module: ClassVar[type[nn.Module]]

    out_dir: str = Field("runs/image", description="run directory")
    seed: int = Field(1337, description="seed for the split, initialisation, batches and noise")
    data: ImageData = Field(default_factory=ImageData)
    train: LoopConfig


class VAERecipe(ImageRecipe):
    task: Literal["vae"] = Field("vae", description="recipe kind")
    module: ClassVar[type[nn.Module]] = VAE
    model: VAEConfig = Field(default_factory=VAEConfig)
    train: ImageTrainConfig = Field(default_factory=ImageTrainConfig)
    sample: ImageSampleConfig = Field(default_factory=ImageSampleConfig)


class DDPMRecipe(ImageRecipe):
    task: Literal["ddpm"] = Field("ddpm", description="recipe kind")
    module: ClassVar[type[nn.Module]] = Diffusion
    model: DDPMConfig = Field(default_factory=DDPMConfig)
    train: ImageTrainConfig = Field(default_factory=ImageTrainConfig)
    sample: ImageSampleConfig = Field(default_factory=ImageSampleConfig)


class GANRecipe(ImageRecipe):
    task: Literal["gan"] = Field("gan", description="recipe kind")
    module: ClassVar[type[nn.Module]] = DCGAN
    model: DCGANConfig = Field(default_factory=DCGANConfig)
    train: GANTrainConfig = Field(default_factory=GANTrainConfig)
    sample: ImageSampleConfig = Field(default_factory=ImageSampleConfig)


class ClassifierRecipe(ImageRecipe):
    """The digit classifier whose features `luoxia eval-image` measures generators with (FID, KID)."""

    task: Literal["classifier"] = Field("classifier", description="recipe kind")
    module: ClassVar[type[nn.Module]] = DigitClassifier
    model: DigitClassifierConfig = Field(default_factory=DigitClassifierConfig)
    train: ClassifierTrainConfig = Field(default_factory=ClassifierTrainConfig)


def build_model(recipe: ImageRecipe) -> nn.Module:
    return type(recipe).module(recipe.model)


def with_data_shape(recipe: ImageRecipe, num_classes: int) -> ImageRecipe:
    """The recipe with the model's image size, channels and classes taken from the data."""
    model = recipe.model.model_copy(update={"image_size": recipe.data.image_size, "channels": recipe.data.channels,
                                            "num_classes": num_classes})
    return recipe.model_copy(update={"model": model})


def image_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    images, labels = batch  # (B, C, H, W) in [-1, 1], (B,) class indices
    return model(images, labels)


class ImageFeed:
    """What every image task reads and reports: seeded training batches from the in-memory split,
    evaluation losses with fixed noise, and sample grids."""

    def __init__(self, recipe: ImageRecipe, train_set, eval_set, ctx: DistributedContext, device: torch.device):
        self.recipe, self.cfg, self.train_set, self.eval_set = recipe, recipe.train, train_set, eval_set
        self.ctx, self.device = ctx, device
        self.sampler = ExampleSampler(len(train_set), self.cfg.batch_size, self.cfg.grad_accum, recipe.seed, ctx.rank,
                                      ctx.world_size)

    def micro_batch(self, step: int, micro: int) -> Batch:
        index = torch.tensor(self.sampler.indices(step, micro))
        return self.train_set.images[index], self.train_set.labels[index]

    def samples_per_step(self) -> dict[str, float]:
        return {"samples": self.cfg.grad_accum * self.cfg.batch_size * self.ctx.world_size}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Loss on fixed evaluation batches, with fixed noise: the same number for the same weights."""
        size = self.cfg.eval_batch_size or self.cfg.batch_size
        count = min(len(self.eval_set), size * self.cfg.eval_batches)
        generator = torch.Generator(self.device).manual_seed(self.recipe.seed)
        model.eval()
        batches = [(self.eval_set.images[i : i + size].to(self.device),
                    self.eval_set.labels[i : i + size].to(self.device)) for i in range(0, count, size)]
        losses = [model(images, labels, generator=generator) for images, labels in batches]
        metrics = {"val_loss": mean_across_ranks(torch.stack(losses).mean(), self.ctx)}
        if hasattr(model, "logits"):  # a classifier: its accuracy too
            hits = torch.cat([model.logits(images).argmax(-1) == labels for images, labels in batches])
            metrics["val_accuracy"] = mean_across_ranks(hits.float().mean(), self.ctx)
        model.train()
        return metrics

    @torch.no_grad()
    def log_samples(self, model: nn.Module, logger: RunLogger, step: int) -> None:
        if not hasattr(model, "sample"):  # a classifier draws nothing
            return
        sample = self.recipe.sample
        classes = len(self.train_set.class_names)
        labels = torch.arange(classes, device=self.device).repeat_interleave(sample.per_class)
        generator = torch.Generator(self.device).manual_seed(step)
        model.eval()
        images = model.sample(labels, generator=generator, steps=sample.steps, guidance=sample.guidance)
        model.train()
        logger.image("samples", grid_array(images.cpu(), nrow=sample.per_class), step)


def seeded_model(recipe: ImageRecipe, device: torch.device) -> nn.Module:
    seed_everything(recipe.seed)  # identical initial weights on every rank
    return build_model(recipe).to(device)


class ImageTask:
    """One network, one loss: the VAE, diffusion (with its EMA update after each step) and the classifier."""

    def __init__(self, recipe: ImageRecipe, train_set, eval_set, ctx: DistributedContext, device: torch.device):
        cfg = self.cfg = recipe.train
        self.feed = ImageFeed(recipe, train_set, eval_set, ctx, device)
        self.model = seeded_model(recipe, device)
        self.optimizers = build_optimizers(self.model, cfg, device)
        torch.manual_seed(recipe.seed + ctx.rank)  # noise differs between ranks
        forward_model = wrap_model(self.model, ctx, device, getattr(cfg, "compile", False))
        self.learner = Learner(self.model, forward_model, self.optimizers, Amp.resolve(device, cfg.precision), ctx)
        # Diffusion samples from an EMA of its weights, updated after every optimizer step.
        self.after_step = getattr(self.model, "update_ema", None)

    def train_step(self, step: int) -> dict[str, float]:
        loss = gradient_step(self.learner, lambda micro: self.feed.micro_batch(step, micro), image_loss,
                             self.cfg.grad_accum, self.cfg.grad_clip, before_zero_grad=self.after_step)
        return {"loss": mean_across_ranks(loss, self.learner.ctx), **self.feed.samples_per_step()}

    def evaluate(self) -> dict[str, float]:
        return self.feed.evaluate(self.model)

    def log_samples(self, logger: RunLogger, step: int) -> None:
        self.feed.log_samples(self.model, logger, step)

    def extra_state(self) -> dict[str, Any]:
        return self.learner.amp.state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.learner.amp.load_state(state)


class GANTask:
    """Adversarial training: each step one discriminator update, then one generator update, on the
    step's batch, each network with its own optimizers from `build_optimizers` (the same
    param-group rule as every task; Adam at DCGAN's betas by default, see `GANTrainConfig`).
    Reports the generator's loss as ``loss`` and the discriminator's as ``d_loss``; ``val_loss`` is
    the discriminator's (`DCGAN.forward`).

    Two networks, two losses and two optimizers a step do not fit DDP's one forward, one backward:
    the networks are used unwrapped and, under ``torchrun``, each update averages its gradients
    across ranks by hand before stepping."""

    NETWORKS = ("discriminator", "generator")

    def __init__(self, recipe: GANRecipe, train_set, eval_set, ctx: DistributedContext, device: torch.device):
        if recipe.train.grad_accum != 1:
            raise ConfigError(f"train.grad_accum must be 1 for a GAN, got {recipe.train.grad_accum}")
        cfg = self.cfg = recipe.train
        self.feed = ImageFeed(recipe, train_set, eval_set, ctx, device)
        self.model = seeded_model(recipe, device)
        self.optimizers = {key: optimizer for name in self.NETWORKS
                           for key, optimizer in build_optimizers(getattr(self.model, name), cfg, device,
                                                                  prefix=f"{name}.").items()}
        torch.manual_seed(recipe.seed + ctx.rank)  # noise differs between ranks
        # No DDP wrapper: see the class docstring.
        self.learner = Learner(self.model, self.model, self.optimizers, Amp.resolve(device, cfg.precision), ctx)

    def train_step(self, step: int) -> dict[str, float]:
        real, labels = self.feed.micro_batch(step, 0)
        d_loss = self._update("discriminator", (real, labels),
                              lambda model, batch: model.discriminator_loss(*batch))
        g_loss = self._update("generator", (labels,),
                              lambda model, batch: model.generator_loss(batch[0].size(0), batch[0]))
        if self.learner.amp.scaler:
            self.learner.amp.scaler.update()  # once for both optimizers, as torch.amp asks
        ctx = self.learner.ctx
        return {"loss": mean_across_ranks(g_loss, ctx), "d_loss": mean_across_ranks(d_loss, ctx),
                **self.feed.samples_per_step()}

    def _update(self, name: str, batch: Batch, loss_fn: LossFn) -> torch.Tensor:
        """Step network ``name``'s optimizers alone on ``loss_fn``; `gradient_step` clears every
        gradient of the model after, since the generator's loss also reaches the discriminator."""
        optimizers = [opt for key, opt in self.optimizers.items() if key.startswith(f"{name}.")]
        network = getattr(self.model, name)
        return gradient_step(self.learner, lambda micro: batch, loss_fn, 1, self.cfg.grad_clip, optimizers,
                             after_backward=lambda: self._average_gradients(network), update_scaler=False)

    def _average_gradients(self, network: nn.Module) -> None:
        if self.learner.ctx.enabled:
            import torch.distributed as dist

            for p in network.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)

    def evaluate(self) -> dict[str, float]:
        return self.feed.evaluate(self.model)

    def log_samples(self, logger: RunLogger, step: int) -> None:
        self.feed.log_samples(self.model, logger, step)

    def extra_state(self) -> dict[str, Any]:
        return self.learner.amp.state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.learner.amp.load_state(state)


TASKS: dict[str, type[ImageTask] | type[GANTask]] = {"gan": GANTask}  # recipe task → its Task, when not ImageTask


def load_splits(recipe: ImageRecipe):
    data = recipe.data
    return load_and_split(data.source, data.image_size, data.channels, data.eval_fraction, recipe.seed)


def train_image(recipe: ImageRecipe, resume: bool = False, callbacks: Sequence[Callback] = ()) -> TrainState:
    """Run an image recipe end to end (also as one rank of a ``torchrun`` job); ``callbacks`` go to `fit`."""
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
    return fit(task, recipe.train, run_dir, ctx, resume=resume, callbacks=callbacks)

