"""Settings dataclasses: their common checks, and building them from plain mappings (config, JSON).

Every setting a step uses arrives as a mapping (a config section the workflow passes through
``params:``). Unknown keys are errors, never ignored: a misspelled key that silently kept a
default is the kind of hidden override that seed 000 warns about.

A field with a fixed set of allowed values declares them with :func:`choice`; the values live
here, once, and the schema test compares them with ``workflow/schemas/config.schema.yaml``.
Messages of :meth:`Settings.check` start with the field they concern; :func:`from_mapping`
puts the config path of the section in front (``inference.mode 'x' is not one of ...``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from ..errors import SettingsError

T = TypeVar("T")
CHOICES = "choices"  # field metadata key: the allowed values


def choice(default: Any, options: tuple, **kwargs: Any) -> Any:
    """A dataclass field whose value (or, for a tuple, every element) must be one of ``options``."""
    return dataclasses.field(default=default, metadata={CHOICES: tuple(options)}, **kwargs)


class Settings:
    """Base of the settings dataclasses: :meth:`check` validates every :func:`choice` field.

    Subclasses with rules of their own extend :meth:`check` and call ``super().check()`` first.
    """

    def check(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            options = f.metadata.get(CHOICES)
            if options is None:
                continue
            value = getattr(self, f.name)
            for item in value if isinstance(value, tuple) else (value,):
                if item not in options:
                    raise SettingsError(f"{f.name} {item!r} is not one of {options}")


# What a setting's annotation accepts, as the message names it. ``bool`` is an ``int`` to
# Python; a setting that wants a number does not take ``true``.
_SCALARS = {bool: ("true or false", (bool,)), int: ("an integer", (int,)), float: ("a number", (int, float)),
            str: ("a string", (str,))}


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """``value`` checked against its annotation: lists become tuples and nested mappings nested
    dataclasses; a value of the wrong type is a :class:`SettingsError` naming ``where``.

    The workflow's schema checks the config the same way; this is the check for the library and
    the CLI used without Snakemake.
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return value if value is None else _convert(value, options[0], where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, Mapping):
            raise SettingsError(f"{where}: expected a mapping of settings, got {value!r}")
        return from_mapping(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        items = typing.get_args(annotation)
        if len(items) == 2 and items[1] is Ellipsis:
            items = (items[0],) * len(value)
        elif len(items) != len(value):
            raise SettingsError(f"{where}: expected a list of {len(items)}, got {value!r}")
        return tuple(_convert(item, kind, f"{where}[{i}]") for i, (item, kind) in enumerate(zip(value, items, strict=True)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        key_kind, value_kind = typing.get_args(annotation)
        return {_convert(k, key_kind, f"{where} key {k!r}"): _convert(v, value_kind, f"{where}.{k}") for k, v in value.items()}
    if annotation in _SCALARS:
        name, types_ = _SCALARS[annotation]
        if not isinstance(value, types_) or (annotation is not bool and isinstance(value, bool)):
            raise SettingsError(f"{where}: expected {name}, got {value!r}")
    return value


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """Instantiate dataclass ``cls`` from ``values``; ``where`` names the section in errors."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise SettingsError(f"{where}: unknown setting(s) {unknown}; known settings: {known}")
    try:
        obj = cls(**{k: _convert(v, hints[k], f"{where}.{k}") for k, v in values.items()})
    except TypeError as err:
        raise SettingsError(f"{where}: {err}") from err
    if isinstance(obj, Settings):
        try:
            obj.check()
        except SettingsError as err:
            raise SettingsError(f"{where}.{err}") from None
    return obj


def from_json(cls: type[T], text: str, where: str) -> T:
    """Like :func:`from_mapping`, from a JSON object given on the command line."""
    try:
        values = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise SettingsError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(values, dict):
        raise SettingsError(f"{where}: expected a JSON object, got {type(values).__name__}")
    return from_mapping(cls, values, where)


def to_dict(settings: Any) -> dict:
    """Settings as plain JSON-able data, defaults included (the effective settings)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))
