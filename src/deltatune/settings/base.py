"""Settings dataclasses: their common checks, and building them from plain mappings (config, JSON).

Every setting a step uses arrives as a mapping (a config section the workflow passes through
``params:``). Unknown keys are errors, never ignored: a misspelled key that silently kept a
default is the kind of hidden override that seed 000 warns about.

A field declares what values it accepts with :func:`setting`: a fixed set of allowed values, or
a range (and, for a list, how many items). These rules live here, once: :meth:`Settings.check`
applies them, and the schema test holds ``workflow/schemas/config.schema.yaml`` to them.
A field marked ``run_only`` says how a step runs, never what it computes (how often training
writes a checkpoint to resume from): the workflow keeps such settings out of a rule's
``params:``, so changing one reruns nothing. Messages of :meth:`Settings.check` start with the
field they concern; :func:`from_mapping` puts the config path of the section in front
(``inference.mode 'x' is not one of ...``).
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
RANGE = "range"  # field metadata key: the Range a value (or each item of a list) must lie in
RUN_ONLY = "run_only"  # field metadata key: the setting never changes a step's outputs


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a number (of every item, for a list) and the length of a list, named as in JSON
    Schema so that the schema test can compare them keyword by keyword."""

    minimum: float | None = None
    maximum: float | None = None
    exclusiveMinimum: float | None = None  # JSON Schema's keywords, for the schema test
    exclusiveMaximum: float | None = None
    minItems: int | None = None
    maxItems: int | None = None

    def bounds(self) -> dict[str, float]:
        """The bounds on numbers, by JSON Schema keyword."""
        keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def lengths(self) -> dict[str, int]:
        """The bounds on a list's length, by JSON Schema keyword."""
        return {k: getattr(self, k) for k in ("minItems", "maxItems") if getattr(self, k) is not None}

    def violation(self, value: float) -> str | None:
        """What is wrong with number ``value`` (``must be at least 1``), or None."""
        tests = (
            ("minimum", lambda b: value >= b, "at least"),
            ("maximum", lambda b: value <= b, "at most"),
            ("exclusiveMinimum", lambda b: value > b, "above"),
            ("exclusiveMaximum", lambda b: value < b, "below"),
        )
        for key, holds, words in tests:
            bound = getattr(self, key)
            if bound is not None and not holds(bound):
                return f"must be {words} {bound:g}"
        return None


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    choices: tuple | None = None,
    run_only: bool = False,
    **bounds: float,
) -> Any:
    """A dataclass field with the rules its values obey.

    ``choices``: the allowed values (for a list, of every item); ``bounds``: :class:`Range`
    keywords (``minimum=1``, ``exclusiveMinimum=0``, ``minItems=2``, ...); ``run_only``: the
    setting never changes what a step computes (the workflow passes it outside ``params:``).
    """
    metadata: dict[str, Any] = {}
    if choices is not None:
        metadata[CHOICES] = tuple(choices)
    if bounds:
        metadata[RANGE] = Range(**bounds)
    if run_only:
        metadata[RUN_ONLY] = True
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


class Settings:
    """Base of the settings dataclasses: :meth:`check` applies every field's :func:`setting` rules.

    Subclasses with rules across fields extend :meth:`check` and call ``super().check()`` first.
    """

    def check(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None:
                continue
            options, limits = f.metadata.get(CHOICES), f.metadata.get(RANGE)
            for where, key, number in _parts(f.name, value):
                if options is not None and key not in options:
                    raise SettingsError(f"{f.name} {key!r} is not one of {options}")
                problem = limits.violation(number) if limits is not None else None
                if problem:
                    raise SettingsError(f"{where} {problem} (got {number!r})")
            if limits is not None and isinstance(value, tuple):
                if limits.minItems is not None and len(value) < limits.minItems:
                    raise SettingsError(f"{f.name} needs at least {limits.minItems} item(s), got {len(value)}")
                if limits.maxItems is not None and len(value) > limits.maxItems:
                    raise SettingsError(f"{f.name} takes at most {limits.maxItems} item(s), got {len(value)}")


def _parts(name: str, value: Any) -> list[tuple[str, Any, Any]]:
    """What a field's rules apply to, as (where, value to choose, number to bound): the value
    itself; each item of a list; each entry of a mapping (its key chosen, its value bounded)."""
    if isinstance(value, dict):
        return [(f"{name}.{k}", k, v) for k, v in value.items()]
    if isinstance(value, tuple):
        return [(f"{name}[{i}]", v, v) for i, v in enumerate(value)]
    return [(name, value, value)]


# What a setting's annotation accepts, as the message names it. ``bool`` is an ``int`` to
# Python; a setting that wants a number does not take ``true``.
_SCALARS = {
    bool: ("true or false", (bool,)),
    int: ("an integer", (int,)),
    float: ("a number", (int, float)),
    str: ("a string", (str,)),
}


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
        pairs = enumerate(zip(value, items, strict=True))
        return tuple(_convert(item, kind, f"{where}[{i}]") for i, (item, kind) in pairs)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        key_kind, value_kind = typing.get_args(annotation)
        return {
            _convert(k, key_kind, f"{where} key {k!r}"): _convert(v, value_kind, f"{where}.{k}")
            for k, v in value.items()
        }
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


def output_dict(settings: Any) -> dict:
    """:func:`to_dict` without the ``run_only`` fields: the settings that shape a step's outputs,
    which the workflow passes through ``params:``."""
    run_only = {f.name for f in dataclasses.fields(settings) if f.metadata.get(RUN_ONLY)}
    return {k: v for k, v in to_dict(settings).items() if k not in run_only}
