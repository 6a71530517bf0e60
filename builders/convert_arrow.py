"""Arrow side of the converters (builders/convert.py): cut a file's schema down to the declared
fields, and turn the rows of one Arrow batch into Python dicts for `to_record`.

Two kinds of file content are settled row by row rather than for the whole file:
  - a column that `datasets` stores as its Json extension type (`extension<arrow.json>`), which it
    does when rows disagree on a field's type or leave an object's key out: each row's JSON text is
    decoded and checked against the declared field spec, so a row with a wrong type is one
    `RowError(wrong_type)` (skipped and counted under --on-error skip) and the other rows convert;
  - text that is not UTF-8: when a batch does not decode, it is decoded row by row and the bad row
    is one `RowError(not_utf8)` naming the field.
"""

from __future__ import annotations

import json
from typing import Any

from mosaic.errors import MosaicError


class RowError(ValueError):
    """A malformed source row: `field` (path in the source row), `reason` (counted tag), `detail`."""

    def __init__(self, field: str, reason: str, detail: str = "") -> None:
        super().__init__(f"field {field}: {reason}" + (f" ({detail})" if detail else ""))
        self.field, self.reason, self.detail = field, reason, detail


_KINDS = {"str": ("string", "large_string"), "num": ("integer", "floating"), "int": ("integer",),
          "bool": ("boolean",), "scalar": ("string", "large_string", "integer", "floating")}
_PY = {"str": (str,), "num": (int, float), "int": (int,), "bool": (bool,), "scalar": (str, int, float)}


def is_json(t) -> bool:
    """The `datasets` Json feature's Arrow type (JSON text per value)."""
    import pyarrow as pa

    return isinstance(t, pa.BaseExtensionType) and t.extension_name == "arrow.json"


def has_json(t) -> bool:
    import pyarrow as pa

    if is_json(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return has_json(t.value_type)
    if pa.types.is_struct(t):
        return any(has_json(t.field(k).type) for k in range(t.num_fields))
    return False


def _prune(t, spec: Any, path: str):
    """The Arrow type holding only the fields `spec` names; MosaicError when the file's type does not fit.
    A Json-typed value fits any spec here: its rows are checked one by one (`from_json`)."""
    import pyarrow as pa

    is_list = pa.types.is_list(t) or pa.types.is_large_list(t)
    if pa.types.is_null(t) or is_json(t):
        return t
    if isinstance(spec, list) or (isinstance(spec, dict) and is_list):  # a dict also fits a list of structs
        if not is_list:
            raise MosaicError(f"field {path}: expected a list, the file has {t}")
        return pa.list_(_prune(t.value_type, spec[0] if isinstance(spec, list) else spec, f"{path}[]"))
    if isinstance(spec, dict):
        if not pa.types.is_struct(t):
            raise MosaicError(f"field {path}: expected an object, the file has {t}")
        fields = []
        for key, sub in spec.items():
            name = key.rstrip("?")
            where = f"{path}.{name}" if path else name
            if t.get_field_index(name) >= 0:
                fields.append(pa.field(name, _prune(t.field(name).type, sub, where)))
            elif not key.endswith("?"):
                raise MosaicError(f"field {where}: missing from the file (is it in the source's row format?)")
        return pa.struct(fields)
    if not any(getattr(pa.types, f"is_{kind}")(t) for kind in _KINDS[spec]):
        raise MosaicError(f"field {path}: expected {spec}, the file has {t}")
    return t


def project_schema(schema, fields: dict[str, Any]):
    """The file's schema cut down to the declared `fields` (raises on a missing or mistyped field)."""
    import pyarrow as pa

    return pa.schema(list(_prune(pa.struct(list(schema)), fields, "")))


def _json_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def check_value(value: Any, spec: Any, path: str) -> Any:
    """A decoded JSON value checked against a field spec and cut down to its declared fields
    (an absent key reads as null, as in Arrow); RowError(wrong_type) names the path."""
    if value is None:
        return None
    if isinstance(spec, list) or (isinstance(spec, dict) and isinstance(value, list)):
        if not isinstance(value, list):
            raise RowError(path, "wrong_type", f"expected a list, the row has {_json_name(value)}")
        element = spec[0] if isinstance(spec, list) else spec
        return [check_value(v, element, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise RowError(path, "wrong_type", f"expected an object, the row has {_json_name(value)}")
        out = {}
        for key, sub in spec.items():
            name = key.rstrip("?")
            out[name] = check_value(value.get(name), sub, f"{path}.{name}")
        return out
    if not isinstance(value, _PY[spec]) or (isinstance(value, bool) and spec != "bool"):
        raise RowError(path, "wrong_type", f"expected {spec}, the row has {_json_name(value)} {value!r:.40}")
    return value


def from_json(value: Any, t, spec: Any, path: str) -> Any:
    """One row's Python value of Arrow type `t` with its Json-typed parts decoded and checked."""
    import pyarrow as pa

    if value is None:
        return None
    if is_json(t):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise RowError(path, "bad_json", str(exc)) from None
        return check_value(value, spec, path)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        element = spec[0] if isinstance(spec, list) else spec
        return [from_json(v, t.value_type, element, f"{path}[{i}]") for i, v in enumerate(value)]
    if pa.types.is_struct(t) and isinstance(spec, dict):
        subs = {k.rstrip("?"): s for k, s in spec.items()}
        return {k: from_json(v, t.field(k).type, subs[k], f"{path}.{k}") for k, v in value.items()}
    return value


def row_reader(table, fields: dict[str, Any]):
    """`read(k)` -> row k of `table` as a dict of the declared fields, Json parts decoded; raises RowError
    for that row alone (a wrong type, text that is not UTF-8). Decodes the batch at once when it can."""
    specs = {k.rstrip("?"): s for k, s in fields.items()}
    names = table.schema.names
    json_cols = {n: table.schema.field(n).type for n in names if has_json(table.schema.field(n).type)}
    try:
        cols = table.to_pydict()
    except UnicodeDecodeError:
        cols = None

    def raw(k: int) -> dict[str, Any]:
        if cols is not None:
            return {n: cols[n][k] for n in names}
        row = {}
        for n in names:
            try:
                row[n] = table.column(n).slice(k, 1).to_pylist()[0]
            except UnicodeDecodeError as exc:
                raise RowError(n, "not_utf8", f"text that is not UTF-8 (byte {exc.start}: {exc.reason})") from None
        return row

    def read(k: int) -> dict[str, Any]:
        row = raw(k)
        for n, t in json_cols.items():
            row[n] = from_json(row[n], t, specs[n], n)
        return row

    return read
