"""Message-trace JSON read into a table for the loader: Microsoft Graph's, as ``exo-deferrals pull`` writes it, and
Get-MessageTrace rows of the Office 365 Reporting web service (``Received``, ``RecipientAddress``, ``Status``, ...) as
log shippers store them, one object per line (read as the ``messagetrace`` format).

Two shapes (docs/reference/graph-message-trace.md, sections 3 and 4): list rows (``exchangeMessageTrace``:
``receivedDateTime``, ``senderAddress``, ``recipientAddress``, ``status``, ...) become status rows; detail events
(``exchangeMessageTraceDetail``: ``dateTime``, ``event``, ``description``, ``data``, ...) become events whose
``description`` is the reply. Both come as JSON Lines (one object per line) or as a raw answer
(``{"value": [...]}``). The loader then maps the columns and values as for any export (the two formats in
:mod:`analysis.io.formats`).

A list file pulled more than once holds a later line for a message + recipient whose status changed; the latest
line wins and the earlier ones are counted as superseded. ``_pull_report.json`` beside the list file names the
recipients whose details were not fetched; they are listed in the load report.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from analysis.core.errors import TraceLoadError

# Statuses (exchangeMessageTraceStatus) and detail events are put in the kit's words by the loader, with the
# vocabularies of analysis/io/data/vocabularies.toml ([graph], [detail_events]), which name any other value in
# the load report.
PULL_REPORT = "_pull_report.json"
LISTED_NOT_FETCHED = 10  # recipients named one by one in the load report; the rest are counted


class Report(Protocol):
    """What this reader tells the loader's FileReport."""

    delimiter: str | None
    warnings: list[str]
    duplicates_removed: int

    def reject(self, line: int | None, reason: str) -> None: ...


# the properties that make a JSON object a message-trace row: Graph's list and details, and Get-MessageTrace's
# (the Office 365 Reporting web service's MessageTrace rows, as log shippers keep them: tests/data/real/exo_reporting_*)
ODATA_DATE = r"^\\?/Date\((?P<ms>-?\d{1,15})\)\\?/$"
TRACE_KEYS = ({"receivedDateTime"}, {"dateTime", "event"}, {"Received", "RecipientAddress", "Status"})


def is_trace_json(data: bytes) -> bool:
    """Whether ``data`` (UTF-8) is message-trace JSON: its first object has the fields of one of TRACE_KEYS."""
    text = data.lstrip()
    if not text.startswith(b"{"):
        return False
    try:
        first = json.loads(text.split(b"\n", 1)[0])
    except ValueError:
        try:
            first = json.loads(text)
        except ValueError:
            return False
    rows = _wrapped(first)
    if rows is not None:
        first = rows[0] if rows and isinstance(rows[0], dict) else {}
    return isinstance(first, dict) and any(keys <= first.keys() for keys in TRACE_KEYS)


def _wrapped(answer: object) -> list | None:
    """The rows of a whole answer: Graph's ``{"value": [...]}``, OData v2's ``{"d": {"results": [...]}}`` (the
    Reporting web service's ``$format=json``); None for anything else."""
    if isinstance(answer, dict) and isinstance(answer.get("value"), list):
        return answer["value"]
    inner = answer.get("d") if isinstance(answer, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("results"), list):
        return inner["results"]
    return None


def parse(data: bytes, name: str, report: Report) -> tuple[pa.Table, list[str], int]:
    """(table of strings with ``__line__``, the property names, records read) of a message-trace JSON file.

    ``report`` is the loader's FileReport: rejected lines, superseded rows, warnings and unfetched details go there.
    """
    report.delimiter = "JSON Lines"
    table, read = _records(data, name, report)
    if "receivedDateTime" in table.column_names:
        table = _latest(table, report)
        _not_fetched(Path(name.split("!", 1)[0]).parent / PULL_REPORT, report)
    header = [c for c in table.column_names if c != "__line__"]
    return table, header, read


def _records(data: bytes, name: str, report: Report) -> tuple[pa.Table, int]:
    """Every JSON object as a row of strings, with its line; lines that are not objects are rejected."""
    text = data.strip()
    if text.startswith(b"{"):  # JSON Lines stop json.loads at their second object, a whole answer parses
        try:
            whole = _wrapped(json.loads(text))
        except ValueError:
            whole = None
        if whole is not None:  # a raw answer as received
            report.delimiter = "JSON (a whole answer)"
            rows = [{k: v for k, v in r.items() if k != "__metadata"} for r in whole if isinstance(r, dict)]
            return _strings(pa.Table.from_pylist(rows) if rows else pa.table({}), range(1, len(rows) + 1)), len(rows)
    lines = data.split(b"\n")
    try:
        if any(not line.strip() for line in lines[:-1]):
            raise pa.ArrowInvalid("blank lines: read line by line to keep the line numbers")
        table = pj.read_json(io.BytesIO(data), parse_options=pj.ParseOptions(unexpected_field_behavior="infer"))
        return _strings(table, range(1, table.num_rows + 1)), table.num_rows
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    rows, numbers, read = [], [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        read += 1
        try:
            row = json.loads(line)
        except ValueError as exc:
            report.reject(number, f"not JSON ({exc.msg} at character {exc.pos})")
            continue
        if not isinstance(row, dict):
            report.reject(number, f"a JSON {type(row).__name__}, not an object")
            continue
        rows.append({k: v if isinstance(v, str | type(None)) else json.dumps(v) for k, v in row.items()})
        numbers.append(number)
    if not rows:
        raise TraceLoadError(name, "no JSON object in the file", expected="Graph message-trace JSON Lines")
    return _strings(pa.Table.from_pylist(rows), numbers), read


def _strings(table: pa.Table, lines: range | list[int]) -> pa.Table:
    columns = {}
    for column in table.column_names:
        values = table.column(column)
        if not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string()) if not pa.types.is_nested(values.type) else pa.array(
                [None if v is None else json.dumps(v, default=str) for v in values.to_pylist()], pa.string())
        columns[column] = _odata_dates(values)
    columns["__line__"] = pa.array(list(lines), pa.int64())
    return pa.table(columns)


def _odata_dates(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """OData v2 JSON dates (``/Date(1658751973240)/``: milliseconds since 1970, UTC) as ISO 8601 text; other
    values as they are. A column is looked at only when its first values hold such dates."""
    if not pc.any(pc.match_substring_regex(values.slice(0, 100), ODATA_DATE)).as_py():
        return values
    match = pc.extract_regex(values, ODATA_DATE)
    ms = pc.cast(pc.struct_field(match, "ms"), pa.int64())
    iso = pc.strftime(pc.cast(ms, pa.timestamp("ms", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    return pc.coalesce(iso, values)


def _latest(table: pa.Table, report: Report) -> pa.Table:
    """One row per trace id + recipient: the last line (a later pull's status) wins."""
    if "id" not in table.column_names or "recipientAddress" not in table.column_names:
        return table
    key = pc.binary_join_element_wise(pc.fill_null(table.column("id"), ""),
                                      pc.utf8_lower(pc.fill_null(table.column("recipientAddress"), "")), "|")
    order = pa.table({"key": key, "at": pa.array(range(table.num_rows), pa.int64())})
    last = order.group_by("key").aggregate([("at", "max")]).column("at_max")
    superseded = table.num_rows - len(last)
    if superseded:
        report.duplicates_removed += superseded
        report.warnings.append(f"{superseded} rows superseded by a later pull of the same message and recipient "
                               "(its status changed): the latest is kept")
        table = table.take(pc.take(last, pc.sort_indices(last)))  # the kept lines, in file order
    return table


def _not_fetched(path: Path, report: Report) -> None:
    """Name the recipients whose details the pull did not fetch (from its ``_pull_report.json``)."""
    try:
        pulled = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    missing = (pulled.get("not_fetched") or []) if isinstance(pulled, dict) else []
    if not missing:
        return
    reasons: dict[str, int] = {}
    for item in missing:
        reasons[str(item.get("reason"))] = reasons.get(str(item.get("reason")), 0) + 1
    why = "; ".join(f"{count}: {reason}" for reason, count in reasons.items())
    first = ", ".join(f"{m.get('recipientAddress')} ({m.get('status')})" for m in missing[:LISTED_NOT_FETCHED])
    more = f" and {len(missing) - LISTED_NOT_FETCHED} more" if len(missing) > LISTED_NOT_FETCHED else ""
    report.warnings.append(f"details not fetched for {len(missing)} recipients that matter ({why}): {first}{more}; "
                           f"every one with its trace id and reason in {path}")
