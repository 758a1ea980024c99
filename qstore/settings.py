"""Settings declared once: each field of a config dataclass carries its name, help, check and default.

The training settings live on three dataclasses: :class:`qstore.ml.QuantumLayerConfig`,
:class:`qstore.ml.TrainConfig` and :class:`qstore.data.DataConfig`. Each field is declared with
:func:`setting`, which gives it

* a **name**, the key in a ``qstore sweep`` config and the ``qstore train`` option ``--name``
  (underscores as dashes; ``flag`` overrides the option where the command line has always
  spelled it otherwise, as ``--grad`` for ``gradient``),
* a **help** text, a **check** (a function returning what is wrong with a value, or None), and the
  **default**, the dataclass field's own.

Everything else is derived from those declarations: the dataclasses validate themselves with
:func:`validate`, ``qstore train`` builds its options with :func:`add_options`, and the sweep config
takes its keys, defaults and checks from :func:`declared`. So a new setting is one field.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

#: what is wrong with a value (completing "<name> ..."), or None when it is fine
Check = Callable[[Any], str | None]


@dataclasses.dataclass(frozen=True)
class Setting:
    """How a config field is named, explained and checked (see the module docstring).

    Attributes:
        name: the key in sweep configs; the command-line option is ``--name`` with dashes.
        help: one line for ``--help`` and the docs.
        check: returns the problem with a value (e.g. ``"must be an integer >= 1"``) or None.
        kind: the value's type on the command line: ``int``, ``float``, ``str``, ``bool`` (a switch)
            or ``tuple`` (one or more words).
        choices: the allowed values of a ``str`` or ``tuple`` setting, for the command line's help.
        flag: the command-line option when it is not ``--name``.
    """

    name: str
    help: str
    check: Check
    kind: type
    choices: tuple[str, ...] | None = None
    flag: str | None = None

    @property
    def option(self) -> str:
        """The command-line option, e.g. ``--batch-size``."""
        return self.flag or "--" + self.name.replace("_", "-")


def setting(default: Any, name: str, help: str, check: Check, kind: type, *, choices: Sequence[str] | None = None,
            flag: str | None = None) -> Any:
    """A dataclass field declared as a setting (use it as the field's default)."""
    spec = Setting(name, help, check, kind, tuple(choices) if choices else None, flag)
    return dataclasses.field(default=default, metadata={"setting": spec})


def declared(config_class: type) -> Iterator[tuple[Setting, Any]]:
    """Every setting of ``config_class`` and of the config dataclasses nested in it, with its default."""
    for field in dataclasses.fields(config_class):
        if "setting" in field.metadata:
            yield field.metadata["setting"], field.default
        elif field.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(field.default_factory):
            yield from declared(field.default_factory)


def validate(config: Any) -> None:
    """Check every declared setting of ``config`` (a dataclass instance).

    Raises:
        ValueError: naming the field and the value, e.g. ``epochs must be an integer >= 1, got 0``.
    """
    for field in dataclasses.fields(config):
        spec = field.metadata.get("setting")
        value = getattr(config, field.name)
        problem = spec.check(value) if spec else None
        if problem:
            raise ValueError(f"{field.name} {problem}, got {value!r}")


def build(config_class: type, values: Mapping[str, Any]) -> Any:
    """An instance of ``config_class`` from settings by name; missing ones (nested configs too) keep their defaults.

    Values of ``tuple`` settings may be lists (as JSON and TOML hold them).
    """
    arguments = {}
    for field in dataclasses.fields(config_class):
        spec = field.metadata.get("setting")
        if spec is not None and spec.name in values:
            value = values[spec.name]
            arguments[field.name] = tuple(value) if spec.kind is tuple and isinstance(value, list) else value
        elif spec is None and dataclasses.is_dataclass(field.default_factory):
            arguments[field.name] = build(field.default_factory, values)
    return config_class(**arguments)


def add_options(parser: argparse.ArgumentParser, settings: Sequence[tuple[Setting, Any]]) -> None:
    """One command-line option per setting (``dest`` is the setting's name), with its default in the help."""
    for spec, default in settings:
        shown = " ".join(default) if isinstance(default, tuple) else default
        # a None default is explained by the help itself; argparse formats help with %
        help_text = (spec.help if default is None else f"{spec.help} (default: {shown})").replace("%", "%%")
        if spec.kind is bool:
            parser.add_argument(spec.option, dest=spec.name, action="store_true", default=default, help=help_text)
        elif spec.kind is tuple:
            parser.add_argument(spec.option, dest=spec.name, nargs="+", choices=spec.choices, default=default,
                                help=help_text)
        else:
            parser.add_argument(spec.option, dest=spec.name, type=spec.kind, choices=spec.choices, default=default,
                                help=help_text)


def values(config: Any) -> dict[str, Any]:
    """Every declared setting's value in ``config`` (a config dataclass instance, nested configs too), by name."""
    found: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if "setting" in field.metadata:
            found[field.metadata["setting"].name] = value
        elif dataclasses.is_dataclass(value):
            found |= values(value)
    return found


def plain(value: Any) -> Any:
    """A setting's value as JSON and TOML hold it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------- checks


def integer(low: int, high: int | None = None, *, optional: bool = False) -> Check:
    """An integer in ``low..high`` (``high`` None: no upper bound); ``optional``: None is allowed too."""
    span = f">= {low}" if high is None else f"in {low}..{high}"

    def check(value: Any) -> str | None:
        if optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low or high is not None and value > high:
            return f"must be an integer {span}" + (" or none" if optional else "")
        return None

    return check


def number(low: float, high: float = math.inf, *, closed_high: bool = False) -> Check:
    """A real number in ``(low, high)``, or ``(low, high]`` with ``closed_high``."""

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                low < value < high or closed_high and value == high):
            return f"must be a number in ({low}, {high}{']' if closed_high else ')'}"
        return None

    return check


def choice(options: Sequence[str]) -> Check:
    """One of ``options``."""

    def check(value: Any) -> str | None:
        return None if isinstance(value, str) and value in options else f"must be one of {', '.join(options)}"

    return check


def subset(options: Sequence[str]) -> Check:
    """A non-empty list or tuple of distinct members of ``options``."""

    def check(value: Any) -> str | None:
        if not isinstance(value, list | tuple) or not value or any(v not in options for v in value) \
                or len(set(value)) < len(value):
            return f"must be a non-empty list of distinct values from {', '.join(options)}"
        return None

    return check


def switch(value: Any) -> str | None:
    """True or False."""
    return None if isinstance(value, bool) else "must be true or false"


def text(value: Any) -> str | None:
    """A non-empty string."""
    return None if isinstance(value, str) and value else "must be a non-empty string"
