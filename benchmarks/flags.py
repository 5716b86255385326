"""Command-line flags derived from config dataclasses: one place to add a field, and `--help` that documents it.

Each field becomes `--field-name` (its `metadata["flag"]` where a flag reads better, e.g. `--train` for
`BenchConfig.views`) with the field's `metadata["help"]` and its default. A nested config's fields are prefixed by
the field name (`--grpo-steps`), or by `metadata["prefix"]`. Booleans get `--x/--no-x`; tuples take comma-separated
values; a dict takes repeated `KEY=VALUE` (JSON values). Flags left out keep the dataclass defaults, so the defaults
live in one place: the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any


def add_config_flags(parser: argparse.ArgumentParser, config: type | object, prefix: str = "") -> None:
    """Add a flag for every field of a dataclass (recursively for nested ones); `config` is the class or the
    instance whose values the help shows as defaults."""
    defaults = config() if isinstance(config, type) else config
    hints = typing.get_type_hints(type(defaults))
    for field in dataclasses.fields(defaults):
        kind, default = hints[field.name], getattr(defaults, field.name)
        if dataclasses.is_dataclass(kind):
            add_config_flags(parser, default, field.metadata.get("prefix", f"{prefix}{field.name}-"))
            continue
        flag = field.metadata.get("flag") or f"--{prefix}{field.name}".replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = field.metadata.get("help", "") + (f" (default: {shown})" if shown not in (None, "", {}) else "")
        options: dict[str, Any] = {"dest": _dest(prefix, field.name), "default": argparse.SUPPRESS,
                                   "help": help_text.lstrip()}
        base = _unoptional(kind)
        if base is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is tuple:
            item = typing.get_args(base)[0]
            options.update(type=lambda text, item=item: tuple(item(p.strip()) for p in text.split(",") if p.strip()),
                           metavar="A,B,...")
        elif typing.get_origin(base) is dict or base is dict:
            options.update(action="append", type=_key_value, metavar="KEY=VALUE")
        else:
            options.update(type=base, metavar=field.name.upper())
        parser.add_argument(flag, **options)


def config_from_flags(config: type | object, args: argparse.Namespace, prefix: str = ""):
    """The dataclass from parsed flags: the given flags replace the defaults of `config` (a class or an instance)."""
    defaults = config() if isinstance(config, type) else config
    hints = typing.get_type_hints(type(defaults))
    values = {}
    for field in dataclasses.fields(defaults):
        if dataclasses.is_dataclass(hints[field.name]):
            values[field.name] = config_from_flags(getattr(defaults, field.name), args,
                                                   field.metadata.get("prefix", f"{prefix}{field.name}-"))
        elif hasattr(args, _dest(prefix, field.name)):
            value = getattr(args, _dest(prefix, field.name))
            values[field.name] = dict(value) if isinstance(value, list) else value
    return dataclasses.replace(defaults, **values)


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}{name}".replace("-", "_")


def _unoptional(kind):
    """`X | None` → X."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
