"""Prompt templates: rendering, strict variables, the shipped examples and ``luoxia generate --template``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from luoxia.cli import app
from luoxia.errors import ConfigError
from luoxia.generate.templates import parse_variables, render_template
from tests.helpers import REPO


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_renders_input_and_variables(tmp_path: Path):
    template = write(tmp_path / "t.j2", "{% for q, a in [('1+1', '2')] %}\nQ: {{ q }}\nA: {{ a }}\n{% endfor %}\n"
                                        "{{ task | upper }}\nQ: {{ input }}\nA:\n")
    assert render_template(template, "2+2", {"task": "add"}) == "Q: 1+1\nA: 2\nADD\nQ: 2+2\nA:"


@pytest.mark.parametrize("name, text, message", [
    ("tone.j2", "Write in a {{ tone }} tone: {{ input }}",
     r"tone\.j2: template variable 'tone' is undefined; pass it with --var"),
    ("broken.j2", "fine\n{% if input %}never closed\n", r"broken\.j2:\d+: template syntax error"),
    ("evil.j2", "{{ input.__class__.__mro__[1].__subclasses__() }}", r"evil\.j2: cannot render the template"),
])
def test_template_errors_name_the_template_and_the_problem(tmp_path: Path, name: str, text: str, message: str):
    with pytest.raises(ConfigError, match=message):
        render_template(write(tmp_path / name, text), "x")


@pytest.mark.parametrize("items, problem", [(["tone=dry", "n=3", "eq=a=b"], None), (["novalue"], "novalue"),
                                            (["=x"], "=x")])
def test_parse_variables(items: list[str], problem: str | None):
    if problem is None:
        assert parse_variables(items) == {"tone": "dry", "n": "3", "eq": "a=b"}
    else:
        with pytest.raises(ConfigError, match=f"'{problem}' is not of the form name=value"):
            parse_variables(items)


def test_shipped_templates_render():
    sentiment = render_template(REPO / "configs/templates/few_shot_sentiment.j2", "Oil prices slump")
    assert sentiment.startswith("Shares climb")  # the usage comment leaves no trace
    assert sentiment.count(" =>") == 4 and {"Bullish", "Bearish", "Neutral"} <= set(sentiment.split())
    assert sentiment.endswith("\nOil prices slump =>")
    seven = render_template(REPO / "configs/templates/poem.j2", "秋夜", {"form": "七言绝句"})
    assert seven.startswith("朝辞白帝彩云间") and seven.endswith("轻舟已过万重山。\n秋夜")
    assert render_template(REPO / "configs/templates/poem.j2", "秋夜").startswith("白日依山尽")


@pytest.mark.parametrize(("template", "recipe", "example"), [
    ("few_shot_sentiment.j2", "lm/pydoc.yaml", "Retailer cuts full-year guidance as demand falls"),
    ("poem.j2", "lm/tang_poems.yaml", "秋夜"),
])
def test_shipped_templates_fit_the_context_of_the_models_they_are_for(template: str, recipe: str, example: str):
    """Both recipes are character level, so a rendered prompt's length in characters is its length in
    tokens; with room for a 16-token answer it must fit, or the model would never see the instruction."""
    context = yaml.safe_load((REPO / "configs" / recipe).read_text(encoding="utf-8"))["model"]["block_size"]
    assert len(render_template(REPO / "configs/templates" / template, example)) + 16 <= context


def test_cli_generate_renders_each_prompt_through_the_template(trained_run: Path, tmp_path: Path):
    template = write(tmp_path / "lead.j2", "{{ lead }}, {{ input }}\n")
    result = CliRunner().invoke(app, ["generate", "--model", str(trained_run), "--template", str(template),
                                      "--var", "lead=To be", "-p", "or not", "-p", "that is", "--json",
                                      "--max-new-tokens", "4", "--seed", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["prompt"] for row in rows] == ["To be, or not", "To be, that is"]


@pytest.mark.parametrize("args, message", [(["--template", "{t}", "--var", "lead"], "'lead' is not of the form"),
                                           (["--var", "lead=x"], "--var sets template variables: it needs --template")])
def test_cli_template_options_fail_clearly(trained_run: Path, tmp_path: Path, args: list[str], message: str):
    template = write(tmp_path / "lead.j2", "{{ lead }}, {{ input }}")
    result = CliRunner().invoke(app, ["generate", "--model", str(trained_run), "-p", "x",
                                      *[a.format(t=template) for a in args]])
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)


def test_chat_prompt_uses_chatml_where_the_model_has_no_template(trained_run: Path):
    import luoxia
    from luoxia.generate.interface import GenerationConfig
    from luoxia.generate.templates import CHATML_END, prepare_prompts

    generator = luoxia.load(trained_run, device="cpu")
    prompts, config = prepare_prompts(["To be"], generator, GenerationConfig(stop=["\n\n"]), chat=True)
    assert prompts == ["<|im_start|>user\nTo be<|im_end|>\n<|im_start|>assistant\n"]
    assert config.stop == ["\n\n", CHATML_END]


def test_chat_prompt_uses_the_tokenizers_own_template():
    from transformers import PreTrainedTokenizerFast

    from luoxia.data.tokenizer import train_char_tokenizer
    from luoxia.generate.hf import HFTokenizer
    from luoxia.generate.templates import chat_prompt

    hf = PreTrainedTokenizerFast(tokenizer_object=train_char_tokenizer(["abc"]).backend)
    hf.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
    assert chat_prompt(HFTokenizer(hf), "abc") == ("[user] abc\n[assistant] ", [])
