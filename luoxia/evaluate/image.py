"""``luoxia eval-image``: how good, how faithful to the class and how varied a generator's samples are.

The judge is the digit classifier of ``configs/image/classifier.yaml`` (trained once): its
penultimate layer stands in for Inception v3 in torchmetrics' FID and KID (Inception's weights cannot
be downloaded here, and it was never meant for 8×8 digits), and its predictions give

- conditional accuracy: the share of samples drawn for class c that the classifier calls c;
- per-class coverage: the share of *all* samples the classifier assigns to each class. A balanced
  request gives each about 1/K; mode collapse shows as classes far below, whatever was asked for.

FID and KID are only comparable between runs measured with the same classifier, data and sample
count: they are distances in this classifier's feature space, not the published Inception numbers.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from luoxia.data.images import ImageDataset
from luoxia.errors import ConfigError
from luoxia.generate.image import eval_split
from luoxia.models.classifier import DigitClassifier, DigitClassifierConfig
from luoxia.registry import FAMILIES, run_family
from luoxia.runs import load_run_module, read_class_names, run_recipe
from luoxia.runtime import resolve_device

CLASSIFIER_TASK = "classifier"
REPORT_JSON, REPORT_PNG = "report.json", "report.png"
# torchmetrics' defaults; with fewer images a subset takes half of the smaller set, so subsets differ
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000


class ClassifierFeatures(nn.Module):
    """The classifier's penultimate layer as the feature extractor of torchmetrics' FID and KID.

    torchmetrics hands a custom module the images exactly as they are given to ``update`` (its
    ``normalize`` only picks the dtype of the probe image it would use to find ``num_features``,
    which is set here): so images go in as the classifier takes them, float in [-1, 1] (N, C, H, W),
    and come out as float64 (N, feature_dim), so KID's kernels are computed in float64 too (FID
    keeps its sums in float64 anyway). Always in eval mode: batch norm uses its running statistics.
    """

    def __init__(self, classifier: DigitClassifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.config.feature_dim
        self.eval()

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = self.classifier.head.weight.device
        return self.classifier.features(images.to(device=device, dtype=torch.float32)).double()


def _feed(metric, images: torch.Tensor, real: bool, batch_size: int) -> None:
    for start in range(0, len(images), batch_size):
        metric.update(images[start : start + batch_size], real=real)


def _fid(features: ClassifierFeatures):
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(feature=features, normalize=True).to(features.classifier.head.weight.device)


def _kid(features: ClassifierFeatures, subsets: int, subset_size: int):
    from torchmetrics.image.kid import KernelInceptionDistance

    with warnings.catch_warnings():  # that it keeps every feature: a few thousand rows of feature_dim here
        warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
        kid = KernelInceptionDistance(feature=features, subsets=subsets, subset_size=subset_size, normalize=True)
    return kid.to(features.classifier.head.weight.device)


def fid_between(images_a: torch.Tensor, images_b: torch.Tensor, classifier: DigitClassifier,
                batch_size: int = 512) -> float:
    """FID between two sets of (N, C, H, W) images in [-1, 1], in the classifier's feature space."""
    metric = _fid(ClassifierFeatures(classifier))
    _feed(metric, images_a, True, batch_size)
    _feed(metric, images_b, False, batch_size)
    return float(metric.compute())


def feature_distances(real: torch.Tensor, fake: torch.Tensor, classifier: DigitClassifier, seed: int = 0,
                      batch_size: int = 512, kid_subsets: int = KID_SUBSETS) -> dict[str, float]:
    """FID and KID (mean and standard deviation over random subsets, seeded) of ``fake`` against ``real``.
    KID is the unbiased MMD estimate: about 0 (it can go below) for samples of the same distribution."""
    features = ClassifierFeatures(classifier)
    subset_size = min(KID_SUBSET_SIZE, max(2, min(len(real), len(fake)) // 2))
    fid, kid = _fid(features), _kid(features, kid_subsets, subset_size)
    for metric in (fid, kid):
        _feed(metric, real, True, batch_size)
        _feed(metric, fake, False, batch_size)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from the global generator
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid_mean": float(kid_mean), "kid_std": float(kid_std)}


def image_quality(generator, classifier: DigitClassifier, real: ImageDataset, n_per_class: int = 100,
                  seed: int = 0, steps: int | None = None, guidance: float | None = None,
                  batch_size: int = 512) -> dict:
    """Sample ``n_per_class`` images of every class with ``generator`` (anything with ``class_names``
    and ``sample(prompt, n, seed, **options)``, e.g. a `ClassConditionalGenerator`; class c is drawn
    with seed ``seed + c``; ``steps`` and ``guidance`` default to the generator's own) and measure them
    against ``real`` (the held-out images) with ``classifier``: FID, KID, conditional accuracy overall
    and per class, per-class coverage and generation speed."""
    if n_per_class < 1:
        raise ConfigError(f"n_per_class must be at least 1, got {n_per_class}")
    names = [str(name) for name in generator.class_names]
    classifier.eval()
    options = {k: v for k, v in {"steps": steps, "guidance": guidance}.items() if v is not None}
    samples, seconds = [], 0.0
    for label, name in enumerate(names):
        started = time.perf_counter()
        samples.append(generator.sample(name, n_per_class, seed=seed + label, **options))
        seconds += time.perf_counter() - started
    fake = torch.cat(samples).cpu()
    asked = torch.arange(len(names)).repeat_interleave(torch.tensor([len(images) for images in samples]))
    predicted = classifier.predict(fake, batch_size)
    hits = (predicted == asked).float()
    per_class_accuracy = [float(hits[asked == label].mean()) for label in range(len(names))]
    coverage = torch.bincount(predicted, minlength=len(names))[: len(names)].double() / len(fake)
    real_accuracy = (classifier.predict(real.images, batch_size) == real.labels).float().mean()
    return {
        **feature_distances(real.images, fake, classifier, seed, batch_size),
        "accuracy": float(hits.mean()),
        "min_coverage": float(coverage.min()),
        "real_accuracy": float(real_accuracy),  # the classifier on real images: what ``accuracy`` can hope for
        "samples_per_s": len(fake) / max(seconds, 1e-9),
        "n": len(fake), "n_per_class": n_per_class, "n_real": len(real), "seed": seed,
        **{"steps": None, "guidance": None, **getattr(generator, "defaults", {}), **options},
        "per_class_accuracy": dict(zip(names, per_class_accuracy, strict=True)),
        "coverage": dict(zip(names, coverage.tolist(), strict=True)),
    }


def load_classifier(run_dir: str | Path, device: str = "auto") -> tuple[DigitClassifier, list[str]]:
    """A trained classifier run (``configs/image/classifier.yaml``) in eval mode, and its class names."""
    run_dir = Path(run_dir)
    recipe = run_recipe(run_dir)
    if recipe.get("task") != CLASSIFIER_TASK:
        raise ConfigError(f"{run_dir}: a '{recipe.get('task', 'lm')}' run, not a classifier; "
                          "train one with configs/image/classifier.yaml")
    model = load_run_module(run_dir, DigitClassifier, DigitClassifierConfig).to(resolve_device(device)).eval()
    return model, read_class_names(run_dir)


def evaluate_image_run(run_dir: str | Path, classifier_dir: str | Path, n_per_class: int = 100, seed: int = 0,
                       steps: int | None = None, guidance: float | None = None, device: str = "auto") -> dict:
    """`image_quality` of an image run's model, against the evaluation split of the run's own data."""
    run_dir, classifier_dir = Path(run_dir), Path(classifier_dir)
    recipe, found = run_recipe(run_dir), run_family(run_dir)
    if found.output != "image" or found.load is None:
        drawing = [task for task, family in FAMILIES.items() if family.output == "image"]
        raise ConfigError(f"{run_dir}: a '{found.task}' run, not an image generator ({', '.join(drawing)})")
    data, model, judge = recipe["data"], recipe["model"], run_recipe(classifier_dir).get("model", {})
    shape, judged = (model["image_size"], model["channels"]), (judge.get("image_size"), judge.get("channels"))
    if shape != judged:
        raise ConfigError(f"{run_dir} makes {shape[0]}×{shape[0]} images with {shape[1]} channel(s) but the "
                          f"classifier {classifier_dir} reads {judged[0]}×{judged[0]} with {judged[1]}; train the "
                          f"classifier on the same data (data.source={data['source']} data.image_size={shape[0]})")
    classifier, classifier_names = load_classifier(classifier_dir, device)
    generator = found.load(run_dir, recipe, device, False)
    if generator.class_names != classifier_names:
        raise ConfigError(f"{run_dir} draws the classes {generator.class_names} but the classifier {classifier_dir} "
                          f"knows {classifier_names}; train it on the same data")
    real = eval_split(run_dir)
    result = image_quality(generator, classifier, real, n_per_class, seed, steps, guidance)
    return {"run": str(run_dir), "classifier": str(classifier_dir), "data": data["source"], **result}


def report_table(result: dict):
    """The headline numbers, then one row a class, as a rich Table."""
    from rich.table import Table

    table = Table(title=f"image evaluation of {result.get('run', 'a generator')} ({result['n']} samples, "
                        f"{result['n_real']} real)", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("fid", "kid_mean", "kid_std", "accuracy", "real_accuracy", "min_coverage", "samples_per_s"):
        table.add_row(key, f"{result[key]:.4f}" if key != "samples_per_s" else f"{result[key]:,.1f}")
    for name, accuracy in result["per_class_accuracy"].items():
        table.add_row(f"class {name}: accuracy / coverage", f"{accuracy:.3f} / {result['coverage'][name]:.3f}")
    return table


def plot_report(result: dict, path: Path) -> Path:
    """Bar charts of per-class conditional accuracy and coverage (the balanced share dashed)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg

    names = list(result["per_class_accuracy"])
    figure = Figure(figsize=(max(6.0, 0.6 * len(names) + 2), 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.bar(names, list(result["per_class_accuracy"].values()), color="tab:blue")
    top.axhline(result["real_accuracy"], color="black", linestyle=":", label="classifier on real images")
    top.set(ylim=(0, 1.05), ylabel="conditional accuracy",
            title=f"FID {result['fid']:.3f}   KID {result['kid_mean']:.4f} ± {result['kid_std']:.4f}   "
                  f"accuracy {result['accuracy']:.3f}")
    top.legend(loc="lower right")
    bottom.bar(names, list(result["coverage"].values()), color="tab:orange")
    bottom.axhline(1 / len(names), color="black", linestyle="--", label="balanced share")
    bottom.set(ylabel="share of all samples", xlabel="class", title=f"coverage (min {result['min_coverage']:.3f})")
    bottom.legend(loc="lower right")
    figure.savefig(path, dpi=100)
    return path


def write_report(result: dict, out_dir: str | Path):
    """``report.json`` and ``report.png`` (bar charts) in ``out_dir``; returns the table to print."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_JSON).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    plot_report(result, out_dir / REPORT_PNG)
    return report_table(result)
