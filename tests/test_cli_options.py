"""Command-line options derived from config classes: one type, default and description per setting."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
import typer
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from luoxia.cli_options import config_options
from luoxia.generate.interface import GenerationConfig
from luoxia.serve.settings import ServeSettings


class Example(BaseModel):
    size: int = Field(3, ge=1, description="how many")
    ratio: float | None = Field(None, description="a share")
    kind: Literal["a", "b"] = Field("a", description="which kind")
    tags: list[str] = Field(default_factory=list, description="labels")
    loud: bool = Field(False, description="shout")


def example_app(seen: list[dict]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @config_options(Example, into="options", flags={"tags": ("--tag", "-t")})
    def run(name: str, options: dict) -> None:
        seen.append({"name": name, **options})

    return app


def test_options_carry_only_what_was_given():
    seen: list[dict] = []
    result = CliRunner().invoke(example_app(seen), ["x", "--size", "5", "-t", "p", "--tag", "q", "--loud"])
    assert result.exit_code == 0, result.output
    assert seen == [{"name": "x", "size": 5, "tags": ["p", "q"], "loud": True}]
    CliRunner().invoke(example_app(seen), ["y"])
    assert seen[-1] == {"name": "y"}  # nothing given: the model's defaults apply


def test_help_shows_the_models_descriptions_choices_and_defaults():
    result = CliRunner().invoke(example_app([]), ["--help"], env={"COLUMNS": "200"})
    assert "how many (default: 3)" in result.output and "which kind (a, b) (default: a)" in result.output
    assert "--no-loud" in result.output and "labels (repeatable)" in result.output


def test_generate_options_are_generation_config_fields():
    from luoxia.cli import app

    result = CliRunner().invoke(app, ["generate", "--help"], env={"COLUMNS": "200"})
    for name in GenerationConfig.model_fields:
        assert "--" + name.replace("_", "-") in result.output
    assert f"(default: {GenerationConfig.model_fields['temperature'].default})" in result.output


def test_serve_options_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import uvicorn

    import luoxia.cli_serve
    from luoxia.cli import app

    captured: dict[str, ServeSettings] = {}
    monkeypatch.setattr(luoxia.cli_serve, "load_models", lambda settings: None)
    monkeypatch.setattr(luoxia.cli_serve, "create_app",
                        lambda settings, models=None: captured.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setenv("LUOXIA_SERVE_PORT", "9123")
    run = tmp_path / "x"
    run.mkdir()
    result = CliRunner().invoke(app, ["serve", "--max-batch", "3", "--no-batching", "-m", str(run)])
    assert result.exit_code == 0, result.output
    settings = captured["settings"]
    assert (settings.port, settings.max_batch, settings.batching, settings.models) == (9123, 3, False, [str(run)])
    assert settings.max_queue == ServeSettings.model_fields["max_queue"].default
