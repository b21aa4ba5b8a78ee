"""Prompt templates: a Jinja file that wraps each prompt, for few-shot prompting of a base model.

The prompt is ``{{ input }}``; other variables come from ``--var name=value`` (``{{ name | default("…") }}``
makes one optional). Few-shot examples are written in the template itself. Templates render in
Jinja's sandbox with strict undefined variables, so a missing variable is an error, not an empty string.
See ``configs/templates/`` for examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from luoxia.data.instruct import DEFAULT_CHAT_TEMPLATE
from luoxia.data.readers import read_text_file
from luoxia.errors import ConfigError
from luoxia.generate.interface import GenerationConfig

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


CHATML_END = "<|im_end|>"


class RendersChat(Protocol):
    """A text generator: its own way of turning a conversation into a prompt (`render_chat` for a
    local model; the messages themselves for a remote one)."""

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]: ...


def chat_prompt(tokenizer: object, text: str) -> tuple[str, list[str]]:
    """One user turn as a prompt: see `render_chat`."""
    return render_chat(tokenizer, [{"role": "user", "content": text}])


def render_chat(tokenizer: object, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
    """A conversation rendered through the model's chat template — ChatML where it has none, as in
    fine-tuning — ending where the assistant's reply starts; and the stop strings that end the reply
    (ChatML's end marker, which a small tokenizer may spell as plain text rather than one token)."""
    hf_tokenizer = getattr(tokenizer, "hf", None)
    template = getattr(hf_tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE
    if hf_tokenizer is not None:
        prompt = hf_tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                  add_generation_prompt=True)
    else:
        prompt = _ENVIRONMENT.from_string(template).render(messages=messages, add_generation_prompt=True)
    return prompt, [CHATML_END] if CHATML_END in template else []


def prepare_prompts(prompts: list[str], generator: RendersChat, config: GenerationConfig,
                    template: str | Path | None = None,
                    variables: list[str] | None = None, chat: bool = False) -> tuple[list[str], GenerationConfig]:
    """What ``luoxia generate`` feeds the model: each prompt through the Jinja ``template`` (with
    ``name=value`` ``variables``), then, with ``chat``, through the model's chat template — and the
    generation config with the chat's stop strings added."""
    if variables and template is None:
        raise ConfigError("--var sets template variables: it needs --template")
    if template is not None:
        values = parse_variables(variables or [])
        prompts = [render_template(template, p, values) for p in prompts]
    if not chat:
        return prompts, config
    rendered = [generator.render_chat([{"role": "user", "content": p}]) for p in prompts]
    stops = sorted({stop for _, chat_stops in rendered for stop in chat_stops} - set(config.stop))
    return [p for p, _ in rendered], config.model_copy(update={"stop": [*config.stop, *stops]})
