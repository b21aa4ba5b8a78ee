import math

import pytest
import torch

from luoxia.errors import ConfigError
from luoxia.models.dcgan import DCGANConfig
from luoxia.models.ddpm import DDPMConfig
from luoxia.models.vae import VAEConfig
from luoxia.registry import FAMILIES, load_recipe
from luoxia.runtime import DistributedContext
from luoxia.train.finetune import FinetuneRecipe
from luoxia.train.image import GANRecipe, GANTask, ImageTrainConfig, build_model
from luoxia.train.lm import LMTrainConfig
from luoxia.train.optim import Muon, build_optimizers, orthogonalize, split_parameters
from luoxia.train.schedule import lr_multiplier
from tests.helpers import tiny_gpt


def test_warmup_then_cosine_to_floor():
    values = [lr_multiplier(s, 100, 10, 0.1) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))  # monotone decay
    assert lr_multiplier(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_multiplier(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)


def test_linear_decay_with_stable_phase():
    assert lr_multiplier(30, 100, 10, 0.0, "linear", decay_start=0.5) == 1.0
    assert lr_multiplier(75, 100, 10, 0.0, "linear", decay_start=0.5) == pytest.approx(0.5)
    assert lr_multiplier(50, 100, 0, 0.0, "constant") == 1.0


def test_orthogonalize_flattens_singular_values():
    torch.manual_seed(0)
    for shape in [(32, 16), (16, 48)]:
        rows, cols = shape
        # singular values spread over two orders of magnitude
        u, _ = torch.linalg.qr(torch.randn(rows, rows))
        v, _ = torch.linalg.qr(torch.randn(cols, cols))
        k = min(shape)
        matrix = u[:, :k] @ torch.diag(torch.logspace(-1, 1, k)) @ v[:, :k].T
        singular = torch.linalg.svdvals(orthogonalize(matrix, steps=5))
        assert singular.min() > 0.3 and singular.max() < 1.5  # Newton–Schulz: S' roughly in (0.5, 1.5)
        assert orthogonalize(matrix).shape == shape


def test_muon_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_parameter_split_keeps_embeddings_and_vectors_out_of_muon():
    model = tiny_gpt()
    hidden, others, vectors = split_parameters(model)
    assert all(p.ndim == 2 for p in hidden) and all(p.ndim < 2 for p in vectors)
    assert any(p is model.transformer.wte.weight for p in others)
    total = sum(p.numel() for p in model.parameters())  # counts the tied weight once
    assert sum(p.numel() for p in hidden + others + vectors) == total


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_optimizers_reduce_loss(name: str):
    model = tiny_gpt(seed=3).train()
    cfg = LMTrainConfig(optimizer=name, lr=3e-3, weight_decay=0.0, muon_lr=0.02, muon_momentum=0.95)
    optimizers = build_optimizers(model, cfg, torch.device("cpu"))
    x = torch.randint(0, 32, (8, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(30):
        _, loss = model(x[:, :-1], x[:, 1:])
        losses.append(loss.item())
        loss.backward()
        for optimizer in optimizers.values():
            optimizer.step()
            optimizer.zero_grad()
    assert losses[-1] < losses[0] - 0.5 and not math.isnan(losses[-1])


def decay_of(optimizers) -> dict[int, float]:
    """id(parameter) → the weight decay its param group applies."""
    return {id(p): group["weight_decay"] for opt in optimizers.values() for group in opt.param_groups
            for p in group["params"]}


@pytest.mark.parametrize("task, config", [("vae", VAEConfig(num_classes=3)), ("gan", DCGANConfig(num_classes=3)),
                                          ("ddpm", DDPMConfig(num_classes=3, base_channels=8, channel_mults=[1, 2]))])
def test_weight_decay_only_on_matrices_for_image_models(task: str, config):
    model = build_model(FAMILIES[task].recipe(model=config))
    cfg = ImageTrainConfig(weight_decay=0.05)
    networks = [model.discriminator, model.generator] if task == "gan" else [model]
    for network in networks:
        decay = decay_of(build_optimizers(network, cfg, torch.device("cpu")))
        params = [p for p in network.parameters() if p.requires_grad]
        assert set(decay) == {id(p) for p in params}  # every trainable parameter, once
        assert {p.ndim for p in params} >= {1, 2, 4}  # biases/norms, linear and conv weights are all there
        for p in params:
            assert decay[id(p)] == (0.05 if p.ndim >= 2 else 0.0), tuple(p.shape)


def test_gan_builds_one_optimizer_set_per_network_and_no_other(tmp_path):
    class Split:  # what a GANTask reads from a split
        images, labels, class_names = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), ["a", "b"]

        def __len__(self) -> int:
            return 4

    model = DCGANConfig(image_size=8, num_classes=2, width=8, latent_dim=8, label_dim=4)
    recipe = GANRecipe(model=model, out_dir=str(tmp_path))
    task = GANTask(recipe, Split(), Split(), DistributedContext(), torch.device("cpu"))
    assert sorted(task.optimizers) == ["discriminator.adamw", "generator.adamw"]
    owned = [decay_of({k: v}) for k, v in task.optimizers.items()]
    assert set(owned[0]) == {id(p) for p in task.model.discriminator.parameters()}
    assert set(owned[1]) == {id(p) for p in task.model.generator.parameters()}
    assert task.optimizers["generator.adamw"].defaults["betas"] == (0.5, 0.999)  # DCGAN's, as before


@pytest.mark.parametrize("recipe", ["configs/image/vae.yaml", "configs/image/ddpm.yaml", "configs/image/gan.yaml",
                                    "configs/image/classifier.yaml", "configs/finetune/lora_chat.yaml",
                                    "configs/finetune/classify_fin_sentiment.yaml"])
def test_muon_is_refused_in_one_line_where_it_does_not_fit(recipe: str):
    with pytest.raises(ConfigError) as error:
        load_recipe(recipe, ["train.optimizer=muon"])
    message = str(error.value)
    assert message.startswith("train.optimizer=muon is not available here: ") and "\n" not in message
    assert ("convolutional" in message) if "image" in recipe else ("peft adapters" in message)
    with pytest.raises(ConfigError, match="unknown config key 'train.muon_lr'.*valid keys"):
        load_recipe(recipe, ["train.muon_lr=0.01"])  # Muon's own settings are no field of these tasks


def test_muon_works_for_language_model_pre_training():
    recipe = load_recipe("configs/lm/tiny.yaml", ["train.optimizer=muon"])
    optimizers = build_optimizers(tiny_gpt(), recipe.train, torch.device("cpu"))
    assert sorted(optimizers) == ["adamw", "muon"]
    assert all(p.ndim == 2 for group in optimizers["muon"].param_groups for p in group["params"])


def test_finetune_recipe_refuses_muon_whatever_the_method(tmp_path):
    for method in ("full", "lora"):
        with pytest.raises(ConfigError, match="optimizer=muon is not available"):
            FinetuneRecipe.model_validate({"base_model": "x", "data": {"train": "x"}, "method": {"name": method},
                                           "train": {"optimizer": "muon"}})
