"""Typed job parameters: one dataclass per job kind, shared by its page tool, its CLI command and the
API, with its defaults and bounds defined once.

A field's metadata says how it is read and bounded: ``label`` (what the page's form calls it), ``help``
(the CLI's help), ``min`` / ``max`` (whole numbers), ``choices``. ``of(dict)`` reads stored or given
parameters (a job's row, a CLI command's options), ``from_form(form)`` a page's form; both apply the same
bounds and ``check()`` and raise a ``ServiceError`` naming the field. ``as_dict()`` is what a job stores.
``jobs.start`` reads every kind's parameters through its class, so nothing out of bounds is ever started,
whoever starts it.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from admin.errors import ServiceError


@dataclass
class JobParams:
    """Base of every job kind's parameters. Field types: ``int``, ``int | None``, ``bool``, ``str``,
    ``str | None``, ``list[str]``, ``list[int]``, ``dict | None`` (a filter's criteria)."""

    FORM: ClassVar[tuple[str, ...] | None] = None  # the fields a page's form sets (None: all)

    @classmethod
    def label(cls, name: str) -> str:
        f = next(f for f in fields(cls) if f.name == name)
        return f.metadata.get("label") or name.replace("_", " ").capitalize()

    @classmethod
    def meta(cls, name: str, key: str) -> Any:
        """A field's metadata (``min``, ``max``, ``help``, ...): what a page's input and a CLI option show."""
        return next(f for f in fields(cls) if f.name == name).metadata.get(key)

    @classmethod
    def default(cls, name: str) -> Any:
        f = next(f for f in fields(cls) if f.name == name)
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None if f.default is dataclasses.MISSING else f.default

    @classmethod
    def of(cls, data: dict[str, Any] | None, *, options: bool = False):
        """Parameters from a dict (a job's stored ones, a CLI command's); missing ones take their defaults.
        Unknown keys are refused. ``options``: name the fields as CLI options in messages."""
        data = dict(data or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ServiceError(f"unknown parameter {unknown[0]!r}", field=unknown[0])
        hints = typing.get_type_hints(cls)
        values = {}
        for f in fields(cls):
            if f.name in data:
                values[f.name] = _value(cls, f, hints[f.name], data[f.name], options)
        obj = cls(**values)
        obj.check()
        return obj

    @classmethod
    def from_form(cls, form, **given: Any):
        """Parameters from a page's form (text, or empty for the default); ``given`` are set by the view."""
        hints = typing.get_type_hints(cls)
        data: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in given or (cls.FORM is not None and f.name not in cls.FORM):
                continue
            kind = hints[f.name]
            if kind is bool:
                data[f.name] = form.get(f.name) in ("1", "on", "true", "yes")
                continue
            text = (form.get(f.name) or "").strip()
            if text:
                data[f.name] = text
        return cls.of({**data, **given})

    def check(self) -> None:
        """Cross-field checks; raise a ``ServiceError``."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        return type(self).of({**self.as_dict(), **changes})


def _name(cls, f, options: bool) -> str:
    return f"--{f.name.replace('_', '-')}" if options else cls.label(f.name)


def _value(cls, f, kind, raw: Any, options: bool) -> Any:
    name = _name(cls, f, options)
    optional = type(None) in typing.get_args(kind)
    base = next((a for a in typing.get_args(kind) if a is not type(None)), kind) if optional else kind
    if raw is None or (optional and raw == ""):
        if optional:
            return None
        return cls.default(f.name)
    if base is bool:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "on", "true", "yes"):
            return True
        if str(raw).lower() in ("0", "off", "false", "no", ""):
            return False
        raise ServiceError(f"{name}: yes or no, please", field=f.name)
    if base is int:
        low, high = f.metadata.get("min"), f.metadata.get("max")
        text = str(raw).strip()
        if isinstance(raw, int) and not isinstance(raw, bool):
            number = raw
        elif len(text) <= 20 and re.fullmatch(r"-?[0-9]+", text):  # ASCII digits only: no "٣", "²", "1e3"
            number = int(text)
        else:
            number = None
        if number is None or (low is not None and number < low) or (high is not None and number > high):
            span = (
                f" from {low:,} to {high:,}"
                if low is not None and high is not None
                else f" of at least {low:,}"
                if low is not None
                else ""
            )
            raise ServiceError(f"{name}: a whole number{span}, please", field=f.name)
        return number
    if base is str:
        text = str(raw).strip()
        if len(text) > int(f.metadata.get("max_length", 255)):
            raise ServiceError(
                f"{name}: at most {f.metadata.get('max_length', 255)} characters, please", field=f.name
            )
        choices = f.metadata.get("choices")
        if choices and text not in choices:
            raise ServiceError(f"{name}: one of {', '.join(choices)}", field=f.name)
        return text
    origin = typing.get_origin(base)
    if origin is list:
        item = typing.get_args(base)[0]
        items = (
            raw if isinstance(raw, list | tuple) else [p.strip() for p in str(raw).split(",") if p.strip()]
        )
        out: list[int | str] = []
        for it in items:
            if item is int:
                if isinstance(it, bool) or not (isinstance(it, int) or re.fullmatch(r"[0-9]{1,20}", str(it))):
                    raise ServiceError(f"{name}: {str(it)[:30]!r} is not a whole number", field=f.name)
                out.append(int(it))
            else:
                text = str(it).strip()
                choices = f.metadata.get("choices")
                if choices and text not in choices:
                    raise ServiceError(
                        f"{name}: {text[:40]!r} is not one of {', '.join(choices)}", field=f.name
                    )
                out.append(text)
        return out
    if base is dict or origin is dict:
        if not isinstance(raw, dict):
            raise ServiceError(f"{name}: this selection is damaged; reload the page", field=f.name)
        return dict(raw)
    raise TypeError(f"{cls.__name__}.{f.name}: unsupported parameter type {kind!r}")


@dataclass
class NoParams(JobParams):
    """A job kind that takes no parameters (it works on every object of its processor)."""


@dataclass
class Selection(JobParams):
    """A bulk job's rows: the ids ticked on a page, or everything matching a filter's criteria."""

    ids: list[int] = dataclasses.field(default_factory=list, metadata={"label": "Selection"})
    filter: dict | None = dataclasses.field(default=None, metadata={"label": "Filter"})

    def check(self) -> None:
        if not self.ids and self.filter is None:
            raise ServiceError(
                "choose the rows first: tick some, or everything matching the filter", field="ids"
            )
