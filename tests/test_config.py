from pathlib import Path

import pytest

from luoxia.config import Config, apply_overrides, build_config, config_keys, load_config, parse_override, resolve_key
from luoxia.errors import ConfigError
from luoxia.registry import load_recipe
from luoxia.safety.guard import GuardPolicy
from luoxia.train.lm import LMRecipe
from tests.helpers import REPO

POLICIES = {REPO / "configs/safety/guard.yaml"}  # configs, not recipes: tested with the guard
RECIPES = sorted(set((REPO / "configs").rglob("*.yaml")) - POLICIES)
TRAINED_BY_STEPS = [p for p in RECIPES if p.parent.name != "safety"]  # the moderation head has no steps
TASKS_BY_FOLDER = {"lm": ("lm",), "finetune": ("finetune", "classify", "token_classify"),
                   "image": ("vae", "gan", "ddpm", "classifier"), "safety": ("moderation",), "mlm": ("mlm",),
                   "apps": ("classify", "lm", "finetune")}  # an application's models: intents, summarisers


def test_there_are_recipes():
    names = {p.name for p in RECIPES}
    assert {"tiny.yaml", "shakespeare_char.yaml", "tang_poems.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_recipe_loads_and_validates(path: Path):
    recipe = load_recipe(path)
    assert recipe.task in TASKS_BY_FOLDER[path.parent.name]
    if recipe.task == "lm" and recipe.model.family == "gpt":  # an RNN has no heads
        assert recipe.model.n_embd % recipe.model.n_head == 0


@pytest.mark.parametrize("path", TRAINED_BY_STEPS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_recipe_accepts_out_dir_and_max_steps(path: Path, tmp_path: Path):
    recipe = load_recipe(path, [f"out_dir={tmp_path}", "max_steps=7"])
    assert recipe.out_dir == str(tmp_path)
    assert recipe.train.max_steps == 7


def test_a_command_refuses_other_tasks():
    with pytest.raises(ConfigError, match="task 'classify' is not one this command runs; valid: lm"):
        load_recipe(REPO / "configs/finetune/classify_fin_sentiment.yaml", allowed=("lm",))


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as error:
        load_config(LMRecipe, REPO / "configs/lm/tiny.yaml", ["train.lrr=0.1"])
    message = str(error.value)
    assert "unknown config key 'train.lrr'" in message
    assert "did you mean 'train.lr'" in message
    assert "train.max_steps" in message and "model.n_layer" in message


def test_unknown_key_inside_yaml_is_an_error(tmp_path: Path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model:\n  n_layers: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model.n_layers'.*model.n_layer"):
        load_config(LMRecipe, recipe)


def test_leaf_shorthand_and_yaml_values():
    assert resolve_key(LMRecipe, "max_steps") == "train.max_steps"
    assert parse_override("train.lr=1e-3") == ("train.lr", "1e-3")
    raw = apply_overrides(LMRecipe, {}, ["lr=1e-3", "n_layer=3", "data.corpus=[a.txt, b.txt]", "bias=false"])
    recipe = build_config(LMRecipe, raw)
    assert recipe.train.lr == pytest.approx(1e-3)
    assert recipe.model.n_layer == 3 and recipe.model.bias is False
    assert recipe.data.corpus == ["a.txt", "b.txt"]


def test_ambiguous_shorthand_names_the_candidates():
    with pytest.raises(ConfigError, match="ambiguous.*data.vocab_size, model.vocab_size"):
        resolve_key(LMRecipe, "vocab_size")
    assert resolve_key(LMRecipe, "seed") == "seed"  # an exact top-level key wins over leaves


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match="model.n_layer"):
        build_config(LMRecipe, {"model": {"n_layer": "many"}})
    with pytest.raises(ConfigError, match="divisible"):
        build_config(LMRecipe, {"model": {"n_embd": 30, "n_head": 4}})


def test_malformed_override_and_missing_file():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(LMRecipe, {}, ["max_steps"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(LMRecipe, "does/not/exist.yaml")


def test_keys_cover_every_section():
    keys = config_keys(LMRecipe)
    assert "out_dir" in keys and "data.tokenizer" in keys and "sample.prompt" in keys


@pytest.mark.parametrize("recipe, key", [("configs/image/vae.yaml", "train.muon_momentum"),
                                         ("configs/image/gan.yaml", "train.compile"),
                                         ("configs/image/classifier.yaml", "train.sample_interval"),
                                         ("configs/image/classifier.yaml", "sample.steps")])
def test_an_image_recipe_rejects_fields_its_task_does_not_use(recipe: str, key: str):
    with pytest.raises(ConfigError, match=rf"unknown config key '{key}'.*valid keys: .*train.max_steps"):
        load_recipe(REPO / recipe, [f"{key}=1"])


def test_an_unused_field_inside_a_yaml_names_the_section_keys(tmp_path: Path):
    recipe = tmp_path / "gan.yaml"
    recipe.write_text("task: gan\ntrain:\n  max_steps: 3\n  muon_lr: 0.01\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train.muon_lr'.*train.weight_decay") as error:
        load_recipe(recipe)
    assert "train.compile" not in str(error.value)  # the GAN's section lists only its own fields


def test_a_classifier_fine_tune_draws_no_samples():
    with pytest.raises(ConfigError, match="draws no samples"):
        load_recipe(REPO / "configs/finetune/classify_fin_sentiment.yaml", ["train.sample_interval=10"])


@pytest.mark.parametrize("text", ["", "\n\n", "# a recipe, all commented out\n# task: lm\n", "{}\n"])
def test_an_empty_recipe_or_policy_is_an_error_not_every_default(text: str, tmp_path: Path):
    recipe = tmp_path / "empty.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match="empty.yaml is empty: it sets no config keys"):
        load_recipe(recipe)
    with pytest.raises(ConfigError, match="is empty"):
        load_config(GuardPolicy, recipe)


@pytest.mark.parametrize("text, kind", [("- task: lm\n", "list"), ("just a string\n", "str"), ("3\n", "int")])
def test_a_recipe_that_is_not_a_mapping_is_an_error(text: str, kind: str, tmp_path: Path):
    recipe = tmp_path / "odd.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=f"must hold a mapping of config keys, not {kind}"):
        load_recipe(recipe)


def test_a_recipe_that_is_not_utf8_is_a_config_error(tmp_path: Path):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("task: lm\nout_dir: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml is not UTF-8 text \(byte 0xe9 at offset 21\)"):
        load_recipe(recipe)


def test_a_mapping_of_configs_is_a_value_not_a_section():
    """``dict[str, Section]`` (an app's slots by name): any key, each value validated as a Section."""
    class Section(Config):
        pattern: str

    class Holder(Config):
        slots: dict[str, Section] = {}

    assert build_config(Holder, {"slots": {"order_id": {"pattern": "x"}}}).slots["order_id"].pattern == "x"
    with pytest.raises(ConfigError, match="slots.order_id.patern"):
        build_config(Holder, {"slots": {"order_id": {"patern": "x"}}})
