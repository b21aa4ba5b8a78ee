"""Applications by kind: an application directory (``app.yaml`` + ``index/``, written by
``luoxia apps KIND build``) → a ready `ChatApp`. Adding an application is one module under
``apps/`` plus one line in `APPS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from luoxia.apps.ask import load_ask
from luoxia.apps.interface import App
from luoxia.apps.monitor import load_monitor_app
from luoxia.apps.recommend import load_recommend_app
from luoxia.apps.support import load_support_app
from luoxia.config import read_yaml
from luoxia.errors import ConfigError
from luoxia.generate.interface import TextGenerator
from luoxia.runs import APP_FILE
from luoxia.safety.guard import Guard


@dataclass
class AppContext:
    """What the caller lends an application: the guard (None: off), a writer model overriding the
    one ``app.yaml`` names (None: its own, or none), the device for its encoders and classifiers."""

    guard: Guard | None = None
    writer: TextGenerator | None = None
    device: str = "auto"


# kind → loader(application directory, context) → App (a ChatApp where it answers conversations)
APPS: dict[str, Callable[[Path, AppContext], App]] = {
    "ask": load_ask,
    "monitor": load_monitor_app,
    "recommend": load_recommend_app,
    "support": load_support_app,
}


def app_kind(path: str | Path) -> str:
    """The ``kind`` an application directory's ``app.yaml`` names; one-line errors otherwise."""
    file = Path(path) / APP_FILE
    if not file.is_file():
        raise ConfigError(f"{path}: not an application directory (no {APP_FILE}); build one with "
                          f"`luoxia apps KIND build …` (KIND: {', '.join(APPS)})")
    kind = read_yaml(file).get("kind")
    if kind not in APPS:
        raise ConfigError(f"{file}: unknown application kind '{kind}'; valid: {', '.join(APPS)}")
    return str(kind)


def app_name(path: str | Path) -> str:
    """The name an application is served under: its ``app.yaml``'s ``name``, else its kind."""
    kind = app_kind(path)
    return str(read_yaml(Path(path) / APP_FILE).get("name") or kind)


def load_app(path: str | Path, context: AppContext | None = None) -> App:
    """The application in directory ``path``, ready to use (a `ChatApp`: ready to `reply`)."""
    return APPS[app_kind(path)](Path(path), context or AppContext())
