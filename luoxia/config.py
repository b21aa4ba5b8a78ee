"""Typed configs: YAML recipe → ``key=value`` overrides → validated pydantic model.

Every config class derives from `Config`, which forbids unknown fields. Overrides use dotted paths
(``train.lr=3e-4``); a bare leaf name (``max_steps=10``) is accepted when exactly one field in the
whole tree has that name. Unknown keys fail with the list of valid ones.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from luoxia.errors import ConfigError

C = TypeVar("C", bound="Config")
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


class Config(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _section_type(annotation: Any) -> type[Config] | None:
    """The Config subclass behind a field annotation (``X`` or ``X | None``), if any; a mapping or a
    list of configs (``dict[str, X]``) is a value, not a section."""
    if get_origin(annotation) in (dict, list):
        return None
    candidates = [annotation, *get_args(annotation)] if get_origin(annotation) else [annotation]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, Config):
            return candidate
    return None


def config_keys(cls: type[Config], prefix: str = "") -> list[str]:
    """All dotted leaf keys of a config class, in declaration order."""
    keys: list[str] = []
    for name, field in cls.model_fields.items():
        section = _section_type(field.annotation)
        if section is None:
            keys.append(prefix + name)
        else:
            keys.extend(config_keys(section, prefix + name + "."))
    return keys


def _unknown_key_error(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}; valid keys: {', '.join(valid)}")


def resolve_key(cls: type[Config], key: str) -> str:
    """Turn an override key into its full dotted path, or fail listing the valid keys."""
    valid = config_keys(cls)
    if key in valid:
        return key
    if "." not in key:
        matches = [k for k in valid if k.rsplit(".", 1)[-1] == key]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(f"config key '{key}' is ambiguous; use one of: {', '.join(matches)}")
    raise _unknown_key_error(key, valid)


def _check_keys(cls: type[Config], raw: dict[str, Any], prefix: str = "") -> None:
    for key, value in raw.items():
        field = cls.model_fields.get(key)
        if field is None:
            siblings = [prefix + name for name in cls.model_fields]
            raise _unknown_key_error(prefix + key, siblings)
        section = _section_type(field.annotation)
        if section is not None and isinstance(value, dict):
            _check_keys(section, value, prefix + key + ".")


def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b=1e-3"`` → ``("a.b", "1e-3")``; values are read as YAML scalars or lists."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def apply_overrides(cls: type[Config], raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``key=value`` override set at its dotted path."""
    result = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        key, value = parse_override(item)
        path = resolve_key(cls, key).split(".")
        node = result
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return result


def _format_validation_error(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "config"
        problems.append(f"{where}: {item['msg']}")
    return f"invalid config {source}: " + "; ".join(problems)


def build_config(cls: type[C], raw: dict[str, Any], source: str = "") -> C:
    """Validate a raw mapping into ``cls`` with readable errors."""
    _check_keys(cls, raw)
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping; an empty file (or only comments, or ``{}``) is an error, so that a
    truncated or wrong file never runs silently with every default."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
                          f"{error.start})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, not {type(raw).__name__}")
    if not raw:
        raise ConfigError(f"{path} is empty: it sets no config keys (start from a recipe under configs/)")
    return raw


def load_config(cls: type[C], path: str | Path, overrides: list[str] | None = None) -> C:
    """Read a YAML recipe, apply ``key=value`` overrides and validate it into ``cls``."""
    raw = read_yaml(path)
    raw = apply_overrides(cls, raw, overrides or [])
    return build_config(cls, raw, source=str(path))


def dump_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")


def resolve_recipe(path: str) -> Path:
    """A recipe path as given, or a path inside Luoxia's ``configs/`` (a run directory's recipe:
    `luoxia.registry.load_recipe`)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    for bundled in (CONFIGS_DIR / path, CONFIGS_DIR / "lm" / path, CONFIGS_DIR / "lm" / f"{path}.yaml"):
        if bundled.is_file():
            return bundled
    raise ConfigError(f"config file not found: {path}")
