"""Plain JSON data into typed dataclasses and back, checked field by field against the annotations.

`from_plain(SomeDataclass, data)` checks every field against its annotation
(int, float, str, bool, None, Any, unions, Literal, list[X], tuple[X, ...],
dict[str, X] and nested dataclasses) and raises `PlainTypeError` naming the
path of the first wrong value (`metrics.val.acc: expected a number, got '0.9x'`).
`to_plain` turns such a dataclass back into JSON-ready data.  The run record
(`record.py`) and the run spec use it, so a record is validated in one place.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


class PlainTypeError(ValueError):
    """A value of plain data does not have the type its dataclass field declares."""


NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def from_plain(kind: Any, value: Any, path: str = "") -> Any:
    """`value` as an instance of `kind` (a dataclass or a typing annotation), checked all the way down."""
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, value, path)
    origin = get_origin(kind)
    check = ORIGINS.get(origin) or SCALARS.get(kind)
    if check is None:
        raise TypeError(f"from_plain cannot check the annotation {kind!r} (at {path or 'the value'})")
    return check(kind, value, path)


def _union(kind: Any, value: Any, path: str) -> Any:
    options = get_args(kind)
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        try:
            return from_plain(option, value, path)
        except PlainTypeError as exc:
            errors.append(exc)
    inner = [o for o in options if o is not type(None)]
    if len(inner) == 1:  # X | None holding a wrong value: X's own message is the precise one
        raise errors[options.index(inner[0])]
    raise PlainTypeError(f"{path or 'the value'}: expected {_name(kind)}, got {describe(value)}")


def _literal(kind: Any, value: Any, path: str) -> Any:
    if value not in get_args(kind):
        raise PlainTypeError(f"{path or 'the value'}: expected one of {list(get_args(kind))}, got {describe(value)}")
    return value


def _sequence(kind: Any, value: Any, path: str) -> Any:
    if not isinstance(value, (list, tuple)):
        raise PlainTypeError(f"{path or 'the value'}: expected a list, got {describe(value)}")
    (inner, *_) = get_args(kind) or (Any,)
    items = [from_plain(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    return items if get_origin(kind) is list else tuple(items)


def _mapping(kind: Any, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise PlainTypeError(f"{path or 'the value'}: expected an object, got {describe(value)}")
    inner = (get_args(kind) or (str, Any))[1]
    for k in value:
        if not isinstance(k, str):
            raise PlainTypeError(f"{path or 'the value'}: keys must be strings, got {describe(k)}")
    return {k: from_plain(inner, v, f"{path}.{k}" if path else k) for k, v in value.items()}


def _scalar(kind: Any, value: Any, path: str) -> Any:
    """int and float refuse booleans (JSON's true is not 1); a float field takes an integer (JSON writes 1.0 as 1)."""
    accepted = (int, float) if kind is float else kind
    if isinstance(value, bool) and kind is not bool or not isinstance(value, accepted):
        raise PlainTypeError(f"{path or 'the value'}: expected {NAMES[kind]}, got {describe(value)}")
    return value


ORIGINS = {Union: _union, types.UnionType: _union, Literal: _literal, list: _sequence, tuple: _sequence, dict: _mapping}
SCALARS = {kind: _scalar for kind in NAMES}


def _name(kind: Any) -> str:
    if get_origin(kind) in (Union, types.UnionType):
        return " or ".join(_name(k) for k in get_args(kind))
    if dataclasses.is_dataclass(kind):
        return "an object"
    if get_origin(kind) is dict:
        return "an object"
    if get_origin(kind) in (list, tuple):
        return "a list"
    return NAMES.get(kind, str(kind))


def _dataclass(kind: type, value: Any, path: str) -> Any:
    where = path or "the record"
    if not isinstance(value, dict):
        raise PlainTypeError(f"{where}: expected an object, got {describe(value)}")
    hints = get_type_hints(kind)
    fields = {f.name: f for f in dataclasses.fields(kind) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise PlainTypeError(f"{where}: unknown field(s) {unknown}")
    missing = [
        name
        for name, f in fields.items()
        if name not in value and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise PlainTypeError(f"{where}: missing field(s) {missing}")
    return kind(**{k: from_plain(hints[k], v, f"{path}.{k}" if path else k) for k, v in value.items()})


def to_plain(obj: Any) -> Any:
    """A dataclass (recursively) as plain data: fields in declaration order; a dataclass may leave fields out of
    its plain form by listing them in `OMIT_WHEN_NONE` (those that are None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        omit = getattr(obj, "OMIT_WHEN_NONE", ())
        return {
            f.name: to_plain(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if not (f.name in omit and getattr(obj, f.name) is None)
        }
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
