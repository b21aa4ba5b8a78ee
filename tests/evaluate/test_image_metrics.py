"""Measuring image generators with a digit classifier: FID and KID in its feature space, conditional
accuracy and per-class coverage, the report files and ``luoxia eval-image`` end to end — all on
scikit-learn's digits at 8×8 with tiny models."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import luoxia
from luoxia.data.images import load_and_split
from luoxia.errors import ConfigError
from luoxia.evaluate.image import (
    ClassifierFeatures,
    evaluate_image_run,
    feature_distances,
    fid_between,
    image_quality,
    load_classifier,
    write_report,
)
from luoxia.models.classifier import DigitClassifier, DigitClassifierConfig
from luoxia.registry import load_recipe
from luoxia.runs import read_metrics
from luoxia.train.image import train_image
from tests.helpers import luoxia as run_cli

QUIET = ["train.warmup_steps=0", "train.eval_batches=2", "train.batch_size=32", "train.progress=false",
         "train.device=cpu", "train.num_threads=1", "data.source=digits", "data.image_size=8"]


@pytest.fixture(scope="module")
def splits():
    return load_and_split("digits", 8, 1, 0.2, 1337)


@pytest.fixture(scope="module")
def classifier(splits) -> DigitClassifier:
    """A tiny classifier trained for 60 steps: right on most digits, wrong on some."""
    train, _ = splits
    torch.manual_seed(0)
    model = DigitClassifier(DigitClassifierConfig(image_size=8, width=8, feature_dim=16, dropout=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    for step in range(60):
        index = order[(step * 64) % len(train):][:64]
        optimizer.zero_grad()
        model(train.images[index], train.labels[index]).backward()
        optimizer.step()
    return model.eval()


class FakeGenerator:
    """Draws real images: of the class asked for, or (``only``) always of one class."""

    def __init__(self, dataset, only: int | None = None):
        self.dataset, self.only, self.class_names = dataset, only, dataset.class_names
        self.calls: list[tuple[str, int, int]] = []

    def sample(self, prompt: str, n: int, seed: int | None = None, **options) -> torch.Tensor:
        self.calls.append((prompt, n, seed))
        label = int(prompt) if self.only is None else self.only
        return self.dataset.images[self.dataset.labels == label][:n]


def test_features_are_the_penultimate_layer_in_float64_and_stay_in_eval_mode(classifier, splits):
    features = ClassifierFeatures(classifier)
    features.train()
    images = splits[1].images[:5]
    out = features(images)
    assert out.dtype == torch.float64 and out.shape == (5, 16) and not features.training
    assert torch.allclose(out, classifier.features(images).double())


def test_fid_and_kid_are_zero_for_a_set_against_itself_and_large_against_noise(classifier, splits):
    train, held_out = splits
    noise = torch.rand_like(held_out.images) * 2 - 1
    real = feature_distances(held_out.images, train.images[: len(held_out)], classifier, kid_subsets=20)
    same = feature_distances(held_out.images, held_out.images, classifier, kid_subsets=20)
    far = feature_distances(held_out.images, noise, classifier, kid_subsets=20)
    assert abs(same["fid"]) < 1e-6 * far["fid"]
    assert abs(fid_between(held_out.images, held_out.images, classifier)) < 1e-6
    assert far["fid"] > 10 * real["fid"] > 0
    # KID, an unbiased estimate, is near 0 (either side) for two samples of one distribution; for a set
    # against itself a little below, the cross term counting each image with itself
    assert far["kid_mean"] > 10 * abs(real["kid_mean"]) and -0.1 * far["kid_mean"] < same["kid_mean"] <= 0
    assert fid_between(held_out.images, noise, classifier) == pytest.approx(far["fid"])
    again = feature_distances(held_out.images, noise, classifier, kid_subsets=20)
    assert again["kid_mean"] == far["kid_mean"] and again["kid_std"] == far["kid_std"]  # seeded subsets


def test_accuracy_and_coverage_of_a_faithful_generator_are_the_classifiers_own(classifier, splits):
    train, held_out = splits
    generator = FakeGenerator(train)
    result = image_quality(generator, classifier, held_out, n_per_class=20, seed=5)
    assert [call[2] for call in generator.calls] == list(range(5, 15))  # class c drawn with seed + c
    drawn = torch.cat([train.images[train.labels == c][:20] for c in range(10)])
    predicted = classifier.predict(drawn)
    asked = torch.arange(10).repeat_interleave(20)
    expected = (predicted == asked).float().view(10, 20).mean(1)
    assert result["per_class_accuracy"] == pytest.approx(dict(zip(train.class_names, expected.tolist(), strict=True)))
    assert result["accuracy"] == pytest.approx(float((predicted == asked).float().mean()))
    coverage = torch.bincount(predicted, minlength=10) / 200
    assert list(result["coverage"].values()) == pytest.approx(coverage.tolist())
    assert result["min_coverage"] == pytest.approx(float(coverage.min())) and sum(result["coverage"].values()) == \
        pytest.approx(1.0)
    assert result["n"] == 200 and result["n_real"] == len(held_out) and result["samples_per_s"] > 0
    assert 0.5 < result["accuracy"] <= 1 and 0.5 < result["real_accuracy"] <= 1


def test_a_collapsed_generator_shows_as_missing_coverage(classifier, splits):
    train, held_out = splits
    threes = train.images[(train.labels == 3) & (classifier.predict(train.images) == 3)]
    collapsed = FakeGenerator(train)
    collapsed.sample = lambda prompt, n, seed=None, **options: threes[:n]
    result = image_quality(collapsed, classifier, held_out, n_per_class=10)
    assert result["coverage"]["3"] == 1.0 and result["min_coverage"] == 0.0
    assert all(share == 0.0 for name, share in result["coverage"].items() if name != "3")
    assert result["per_class_accuracy"]["3"] == 1.0 and result["accuracy"] == pytest.approx(0.1)
    faithful = image_quality(FakeGenerator(train), classifier, held_out, n_per_class=10)
    assert result["fid"] > faithful["fid"]


def test_report_writes_json_and_a_png_plot(classifier, splits, tmp_path: Path):
    train, held_out = splits
    result = image_quality(FakeGenerator(train), classifier, held_out, n_per_class=5)
    table = write_report(result, tmp_path / "report")
    assert json.loads((tmp_path / "report" / "report.json").read_text()) == result
    with Image.open(tmp_path / "report" / "report.png") as plot:
        assert plot.format == "PNG" and plot.width > 300
    assert table.row_count == 7 + 10


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny VAE and a tiny classifier, both on digits at 8×8."""
    root = tmp_path_factory.mktemp("image-runs")
    train_image(load_recipe("configs/image/vae.yaml", [
        f"out_dir={root / 'vae'}", *QUIET, "model.latent_dim=4", "model.width=8", "model.hidden=32",
        "train.max_steps=10", "train.eval_interval=10", "train.sample_interval=null"]))
    train_image(load_recipe("configs/image/classifier.yaml", [
        f"out_dir={root / 'classifier'}", *QUIET, "model.width=8", "model.feature_dim=16", "model.shift=0",
        "model.dropout=0", "train.lr=1e-2", "train.max_steps=40", "train.eval_interval=20"]))
    return root / "vae", root / "classifier"


def test_classifier_trains_on_the_shared_loop_and_reports_accuracy(runs):
    _, classifier_run = runs
    evals = [row for row in read_metrics(classifier_run) if row["kind"] == "eval"]
    assert len(evals) == 2 and evals[1]["val_loss"] < evals[0]["val_loss"] and evals[1]["val_accuracy"] > 0.5
    model, names = load_classifier(classifier_run, device="cpu")
    assert isinstance(model, DigitClassifier) and not model.training and names == [str(d) for d in range(10)]
    with pytest.raises(ConfigError, match="not a classifier"):
        load_classifier(runs[0], device="cpu")
    with pytest.raises(ConfigError, match="generates nothing"):
        luoxia.load(classifier_run, device="cpu")


def test_cli_eval_image_end_to_end(runs, tmp_path: Path):
    vae_run, classifier_run = runs
    out = run_cli("eval-image", "--model", str(vae_run), "--classifier", str(classifier_run), "--n-per-class", "6",
                  "--out", str(tmp_path / "eval"), "--device", "cpu")
    assert "fid" in out.stdout and "min_coverage" in out.stdout
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["n"] == 60 and report["run"] == str(vae_run) and set(report["coverage"]) == set(map(str, range(10)))
    assert (tmp_path / "eval" / "report.png").stat().st_size > 0


def test_a_classifier_of_another_image_size_is_refused(runs, tmp_path: Path):
    vae_run, classifier_run = runs
    other = tmp_path / "classifier16"
    shutil.copytree(classifier_run, other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["model"]["image_size"] = 16
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="8×8 images.*reads 16×16.*same data"):
        evaluate_image_run(vae_run, other, n_per_class=2, device="cpu")
