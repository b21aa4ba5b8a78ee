"""Image generation behind one small interface, whatever the model family.

``luoxia.load("runs/vae").generate("7", n=16, seed=0)`` returns PIL images; serving uses the same
call without knowing whether a VAE, a GAN or a diffusion model is behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn as nn

from luoxia.config import Config
from luoxia.data.images import ImageDataset, load_and_split, parse_class_prompt, save_grid, to_pil
from luoxia.errors import ConfigError
from luoxia.models.vae import VAE
from luoxia.runs import load_run_module, read_class_names, run_recipe
from luoxia.runtime import resolve_device

if TYPE_CHECKING:  # PIL's types only; luoxia.data.images imports PIL itself when it draws
    from PIL import Image

SAMPLING_OPTIONS = ("steps", "guidance")


class ClassConditionalGenerator:
    """`luoxia.generate.interface.ImageGenerator` over a class-conditional model: the prompt names the
    class ("7", "seven")."""

    def __init__(self, model: nn.Module, class_names: list[str], name: str,
                 defaults: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.class_names = class_names
        self.name = name
        self.defaults = dict(defaults or {})  # sampling options (steps, guidance) the run's recipe chose

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def sample(self, prompt: str, n: int = 16, seed: int | None = None, **options: Any) -> torch.Tensor:
        """(n, C, H, W) images in [-1, 1] of the class the prompt names; ``options`` such as
        ``steps`` and ``guidance`` (default: the recipe's) go to the model (a family ignores those it
        has no use for)."""
        label = parse_class_prompt(prompt, self.class_names)
        generator = torch.Generator(self.device).manual_seed(seed) if seed is not None else None
        labels = torch.full((n,), label, dtype=torch.long, device=self.device)
        # Every image family has sample(labels, generator, **options); Module attributes are typed Tensor | Module.
        sample = cast(Callable[..., torch.Tensor], self.model.sample)
        return sample(labels, generator=generator, **{**self.defaults, **options}).cpu()

    def generate(self, prompt: str, n: int = 16, seed: int | None = None, **options: Any) -> list[Image.Image]:
        return [to_pil(image) for image in self.sample(prompt, n, seed, **options)]


def load_image_model(run_dir: str | Path, recipe: dict[str, Any], device: str = "auto", compile: bool = False, *,
                     module: type[nn.Module], config_class: type[Config]) -> ClassConditionalGenerator:
    """The trained ``module`` of an image run (best weights, eval mode) as an `ImageGenerator`; every
    family samples with ``sample(labels, generator, **options)``. ``compile`` is unused (no decode step)."""
    model = load_run_module(run_dir, module, config_class).to(resolve_device(device)).eval()
    defaults = {k: v for k, v in recipe.get("sample", {}).items() if k in SAMPLING_OPTIONS}
    return ClassConditionalGenerator(model, read_class_names(Path(run_dir)), Path(run_dir).name, defaults)


def eval_split(run_dir: str | Path) -> ImageDataset:
    """The held-out part of an image run's data, split exactly as training split it."""
    recipe = run_recipe(run_dir)
    data = recipe["data"]
    return load_and_split(data["source"], data["image_size"], data["channels"], data["eval_fraction"],
                          recipe["seed"])[1]


def write_samples(generator: ClassConditionalGenerator, prompt: str, n: int, seed: int | None, out_dir: str | Path,
                  **options: Any) -> Path:
    """``luoxia generate-image``: ``grid.png`` and ``0000.png`` … in ``out_dir``; returns the grid's path."""
    if not isinstance(generator, ClassConditionalGenerator):
        raise ConfigError(f"{generator.name}: not an image model (train one with configs/image/*.yaml)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = generator.sample(prompt, n, seed, **options)
    for i, image in enumerate(images):
        to_pil(image).save(out_dir / f"{i:04d}.png")
    return save_grid(images, out_dir / "grid.png")


@torch.no_grad()
def write_vae_figures(model: VAE, real: ImageDataset, label: int, out_dir: str | Path, count: int = 8,
                      steps: int = 10) -> list[Path]:
    """What a VAE's latent space holds: ``reconstructions.png`` (held-out images of class ``label``
    above their reconstructions from the latent mean) and ``interpolation.png`` (decodings along the
    line between the first two of them)."""
    device = next(model.parameters()).device
    originals = real.images[real.labels == label][:count].to(device)
    if len(originals) < 2:
        raise ConfigError(f"fewer than two held-out images of class {label} to reconstruct")
    labels = torch.full((len(originals),), label, device=device)
    means, _ = model.encode(originals, labels)
    out_dir = Path(out_dir)
    walk = model.interpolate(originals[0], originals[1], labels[0], steps)
    return [save_grid(torch.cat([originals, model.decode(means, labels)]).cpu(), out_dir / "reconstructions.png",
                      nrow=len(originals)),
            save_grid(walk.cpu(), out_dir / "interpolation.png", nrow=steps)]


def generate_image_files(generator: ClassConditionalGenerator, run_dir: str | Path, prompt: str, n: int,
                         seed: int | None, out_dir: str | Path, **options: Any) -> list[Path]:
    """Everything ``luoxia generate-image`` writes for ``generator`` (loaded from ``run_dir``): the
    samples and their grid, and for a VAE its reconstructions and a latent interpolation of the
    prompt's class."""
    written = [write_samples(generator, prompt, n, seed, out_dir, **options)]
    if isinstance(generator.model, VAE):
        label = parse_class_prompt(prompt, generator.class_names)
        written += write_vae_figures(generator.model, eval_split(run_dir), label, out_dir)
    return written
