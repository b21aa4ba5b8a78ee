"""Prompt templates: a Jinja file that wraps each prompt, for few-shot prompting of a base model.

The prompt is ``{{ input }}``; other variables come from ``--var name=value`` (``{{ name | default("…") }}``
makes one optional). Few-shot examples are written in the template itself. Templates render in
Jinja's sandbox with strict undefined variables, so a missing variable is an error, not an empty string.
See ``configs/templates/`` for examples.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from luoxia.data.readers import read_text_file
from luoxia.errors import ConfigError

# trim_blocks/lstrip_blocks: {% … %} lines leave no blank lines behind; the file's final newline is
# dropped, so a prompt ends where the template's text does.
_ENVIRONMENT = SandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                    keep_trailing_newline=False)


def parse_variables(items: list[str]) -> dict[str, str]:
    """``["tone=formal", "n=3"]`` → ``{"tone": "formal", "n": "3"}``; values stay strings."""
    variables = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"template variable '{item}' is not of the form name=value")
        variables[name.strip()] = value
    return variables


def render_template(path: str | Path, input: str, variables: dict[str, str] | None = None) -> str:
    """The template at ``path`` rendered with ``input`` and ``variables``."""
    path = Path(path)
    try:
        template = _ENVIRONMENT.from_string(read_text_file(path))
        return template.render({**(variables or {}), "input": input})
    except TemplateSyntaxError as error:
        raise ConfigError(f"{path}:{error.lineno}: template syntax error: {error.message}") from None
    except UndefinedError as error:
        raise ConfigError(f"{path}: template variable {error.message}; pass it with --var NAME=VALUE") from None
    except TemplateError as error:  # e.g. the sandbox refusing an unsafe attribute
        raise ConfigError(f"{path}: cannot render the template: {error}") from None
