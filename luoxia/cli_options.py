"""Command-line options built from a pydantic model's fields, so that a setting's type, default and
description are written once, in its config class, and every command that exposes it follows.

`config_options(Model)` decorates a command: each field becomes a ``--field-name`` option whose
help says the model's default. An option the user does not give stays unset, so the model's default
applies (and, for `pydantic_settings` models, its environment variables); the command receives
the options that were given as one dict.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

Command = TypeVar("Command", bound=Callable[..., Any])
SCALARS = (bool, int, float, str, Path)


def cli_type(annotation: Any) -> Any:
    """The type a command-line option parses for a field's annotation: a scalar or a list of one
    (a ``Literal`` becomes ``str``, which the model then checks), always optional (unset = default).
    A union with ``str`` (a path or a spec, else a YAML block) is a string on the command line."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        return cli_type(args[0])
    if get_origin(annotation) in (Union, types.UnionType) and str in args:
        return Optional[str]  # noqa: UP045
    if get_origin(annotation) is Literal:
        return Optional[str]  # noqa: UP045 (typer reads typing.Optional)
    if get_origin(annotation) is list and len(args) == 1 and args[0] in SCALARS:
        return Optional[list[args[0]]]  # type: ignore[valid-type]  # noqa: UP045
    if annotation in SCALARS:
        return Optional[annotation]  # noqa: UP045
    raise TypeError(f"no command-line option for a field of type {annotation}")


def option_help(info: FieldInfo) -> str:
    """The field's description, its choices and its default."""
    parts = [info.description or ""]
    literal = next((a for a in (info.annotation, *get_args(info.annotation)) if get_origin(a) is Literal), None)
    if literal is not None:
        parts.append("(" + ", ".join(str(c) for c in get_args(literal)) + ")")
    if get_origin(info.annotation) is list:
        parts.append("(repeatable)")
    if info.default is not PydanticUndefined and info.default not in (None, [], ()):
        parts.append(f"(default: {str(info.default).lower() if isinstance(info.default, bool) else info.default})")
    return " ".join(p for p in parts if p)


def config_options(model: type[BaseModel], *, into: str, exclude: Collection[str] = (),
                   flags: Mapping[str, tuple[str, ...]] | None = None) -> Callable[[Command], Command]:
    """Add an option per field of ``model`` (but ``exclude``) to a typer command; the command's
    parameter named ``into`` receives ``{field: value}`` for the options given. ``flags`` renames
    options (``{"models": ("--model", "-m")}``)."""
    fields = {name: info for name, info in model.model_fields.items() if name not in exclude}
    flags = flags or {}

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != into]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=Annotated[cli_type(info.annotation),
                                                        typer.Option(*flags.get(name, ()), help=option_help(info))])
                 for name, info in fields.items()]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in fields}
            return command(*args, **kwargs, **{into: {k: v for k, v in given.items() if v not in (None, [], ())}})

        run.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return decorate
