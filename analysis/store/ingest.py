"""A Parquet store of tagged events for traces bigger than memory: ``ingest`` exports, ``open_store`` to analyse.

Layout of a store folder::

    _manifest.json           every file ingested (sha256, events), tenant domains, partitions and their groups
    _load_reports/*.json     the load report of every file (formats, row accounting, rejected lines)
    day=2026-11-16/part.00003.0000.parquet ...   events by day (hive style; undated: day=__HIVE_DEFAULT_PARTITION__)

Every file holds the canonical columns of :mod:`analysis.core.schema`, the tags of :func:`analysis.tag` (with
``cause_explanation`` and ``remedy``), ``_seq`` (the store's row order: the order the files were ingested in,
then their rows) and ``_file`` (the manifest number of the file a row came from). The ``part.N.*`` files of every
day (of a group of linked ``N``, see below) together hold whole *sites* (recipient domains, see
:mod:`analysis.backends.dask`), so :func:`open_store` gives Dask partitions the kit's functions run on without a
shuffle.

:func:`ingest` works in two steps, both on Dask (threads, or the cluster of :func:`analysis.backends.dask.connect`):

1. **Load**: every new file (by sha256; a file already in the store is skipped) is read with
   :func:`analysis.load_trace` on its own. CSV files (UTF-8, any delimiter, tracking logs too) of more than
   ``chunk_rows`` rows are cut at record boundaries into pieces of ``chunk_rows`` rows that are loaded one by
   one with the file's header, so memory is bounded by a piece, not by the file (other files - UTF-16 EAC
   reports, ZIP archives - are loaded whole: about 3 KB of memory per row while loading). Pieces are staged as
   Parquet.
2. **Rebuild**: the staged and the stored events are shuffled by site, and on each partition, in ``_seq`` order,
   the cross-file steps ``load_trace`` does when given all files at once run again over the whole store:
   Get-MessageTraceDetail rows take sender, subject, size and status from summary exports of the same message,
   the status of event-level rows comes from the message+recipient's last event, the direction from the
   store's tenant domains, repeated events (same message, recipient, event and second, in exports of one family;
   see ``loader._drop_duplicates``) are kept once (the earliest ingested copy, completed with the facts only the
   others carry). Then :func:`analysis.tag` tags every partition, which equals tagging the whole store at once
   (every cross-event rule works within a site). The rewritten store replaces the old one only when complete.

So each ingest rewrites the whole store (tags of older events can change when new events arrive: a refusal
pattern of a site shows up only over time). Global values are computed before the shuffle: the tenant domains
(given once with ``tenant_domains=`` and kept, else inferred like the loader does from the senders of
outbound attempts - without the export's "Directionality" hints, which the canonical table does not keep), the
domains that must share the partition of rows without a recipient domain, and the sites too big for one
partition. Memory per worker is bounded by a partition (``partition_rows`` events): a bigger site is cut into
slices of whole messages (by trace id), which is exact when no step needs the whole site - tag's
selective-refusal rule needs it only for a site with both refusals and acceptances carrying an Exchange Online
source IP, and de-duplication only when a Message-ID comes with two trace ids; such a site stays whole (and must
fit in one worker). The partitions holding the slices of a site are linked in the manifest, and
:func:`open_store` reads them as one partition, so the summaries see every site whole.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import datetime
import glob
import hashlib
import json
import math
import os
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.backends import dask as dask_engine
from analysis.backends.dask import SEQ, STORE_MANIFEST
from analysis.backends.store import (
    FILE,
    HELPERS,
    NEXT_MANIFEST,
    NO_DAY,
    open_store,
    partition_files,
    read_manifest,
    read_part,
    store_meta,
)
from analysis.core.columns import map_unique
from analysis.core.concepts import address_domain, is_expiry, site_key, source_range
from analysis.core.errors import NotATraceError, TraceLoadError
from analysis.core.schema import EVENT_COLUMNS, STRING, conform
from analysis.io import loader
from analysis.io.formats import BY_NAME
from analysis.io.loader import (
    TENANT_MIN_ROWS,
    TENANT_MIN_SHARE,
    FileReport,
    LoadReport,
    load_trace,
    not_trace_like,
)
from analysis.reference.endpoints import Endpoints
from analysis.tagging.tag import ACCEPTED_EVENTS, CLEAR_ACCEPTS, CLEAR_REFUSALS, REFUSAL_EVENTS, tag

__all__ = ["IngestReport", "ingest", "load_reports", "open_store", "open_trace", "read_manifest",
           "store_load_report"]

REPORTS = "_load_reports"
STAGING, NEXT, OLD = "_staging", "_next", "_old"
CHUNK_ROWS = 250_000
PARTITION_ROWS = 250_000
MAX_CHUNK_ROWS = 4_000_000  # rows of a piece stay below 2**24 (the piece's bits of _seq)
_FILE_BITS, _PIECE_BITS = 40, 24
_SPLITTABLE = {".csv", ".txt", ".log", ".tsv"}
_SCAN_BLOCK = 1 << 24
_SLICE = " #"  # joins a site and a slice number in a shuffle key (no domain holds a space)


# ---------------------------------------------------------------- reports

@dataclass
class IngestedFile:
    """What :func:`ingest` did with one input file."""

    path: str
    sha256: str | None = None
    status: str = "ingested"  # ingested / already in the store / failed / skipped
    events_loaded: int = 0  # events load_trace gave
    events_added: int = 0  # of those, events the store did not hold yet
    file_number: int | None = None
    error: str | None = None
    reports: list[FileReport] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.events_loaded - self.events_added if self.status == "ingested" else 0


@dataclass
class IngestReport:
    """Per input file: status and events added; and the store after the ingest."""

    store: str
    files: list[IngestedFile] = field(default_factory=list)
    events: int = 0  # events in the store
    days: int = 0
    partitions: int = 0
    tenant_domains: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return all(f.status != "failed" for f in self.files)

    @property
    def events_added(self) -> int:
        return sum(f.events_added for f in self.files)

    def to_frame(self) -> pd.DataFrame:
        """One row per input file: path, sha256, status, events loaded / added / duplicates, error."""
        return pd.DataFrame([{"file": f.path, "sha256": f.sha256, "status": f.status,
                              "events_loaded": f.events_loaded, "events_added": f.events_added,
                              "duplicates": f.duplicates, "error": f.error or ""} for f in self.files],
                            columns=["file", "sha256", "status", "events_loaded", "events_added", "duplicates",
                                     "error"])

    def summary(self) -> str:
        lines = [f"{f.path}: {f.status}" + (f", {f.events_added} of {f.events_loaded} events added"
                                            if f.status == "ingested" else "")
                 + (f": {f.error}" if f.error else "") for f in self.files]
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"store {self.store}: {self.events} events, {self.days} days, {self.partitions} partitions")
        return "\n".join(lines)

    __str__ = summary


def _stored_reports(store_dir: str | os.PathLike[str]) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """(manifest entry, FileReport fields) of every ingested, then every failed file."""
    manifest = read_manifest(store_dir)
    for entry in [*manifest["files"], *manifest.get("failed", [])]:
        for report in json.loads((Path(store_dir) / entry["report"]).read_text(encoding="utf-8")):
            yield entry, report


def load_reports(store_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The load report of every ingested (then every failed) file: FileReport fields, the number of rejected
    lines, sha256 and events_in_store."""
    return pd.DataFrame([{"sha256": entry["sha256"], "events_in_store": entry.get("events", 0),
                          **{k: v for k, v in report.items() if k != "rejects"},
                          "rejects": len(report.get("rejects", []))}
                         for entry, report in _stored_reports(store_dir)])


def store_load_report(store_dir: str | os.PathLike[str]) -> LoadReport:
    """The load reports kept in the store as one :class:`~analysis.io.loader.LoadReport` (what ``load_trace`` of
    every ingested file would have reported), for the views that show a load."""
    files = []
    for _, fields in _stored_reports(store_dir):
        known = {k: v for k, v in fields.items() if k in _REPORT_FIELDS}
        known["rejects"] = [tuple(reject) for reject in known.get("rejects", [])]
        files.append(FileReport(**known))
    return LoadReport(files)


_REPORT_FIELDS = {f.name for f in dataclasses.fields(FileReport)}


def open_trace(paths: Any, *, dask_scheduler: str | None = None, progress: Any = None,
               tenant_domains: Iterable[str] | None = None, **load_options: Any) -> tuple[Any, LoadReport]:
    """``(events, load report)`` for a notebook: without ``dask_scheduler`` :func:`analysis.load_trace` of
    ``paths`` (errors reported, not raised); with one (``"tcp://host:8786"``, or ``"local"`` for a cluster on
    this machine) ``paths`` is a store made by ``exo-deferrals ingest``: its tagged events as a Dask DataFrame
    computed on that cluster, and the load reports kept in the store."""
    if not dask_scheduler:
        return load_trace(paths, errors="report", with_report=True, progress=progress,
                          tenant_domains=tenant_domains, **load_options)
    named = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if len(named) != 1 or not dask_engine.is_dask(os.fspath(named[0])):
        shown = ", ".join(os.fspath(p) for p in named) or "nothing"
        raise TraceLoadError(shown, problem="with a Dask scheduler, paths must name one store folder",
                             expected="a folder made by `exo-deferrals ingest TRACE... --store DIR`")
    store = Path(named[0])
    stored = read_manifest(store).get("tenant_domains") or []
    if tenant_domains is not None and sorted(d.lower() for d in tenant_domains) != sorted(stored):
        raise TraceLoadError(str(store), problem=f"the store was ingested with tenant domains "
                             f"{', '.join(stored) or '(inferred: none)'}, not {', '.join(tenant_domains)}",
                             expected="tenant_domains=None, or ingest again with --tenant-domain")
    if load_options:
        raise TypeError(f"options {', '.join(load_options)} apply to exports, not to a store")
    dask_engine.ensure_client(dask_scheduler)
    return open_store(store), store_load_report(store)


# ---------------------------------------------------------------- ingest: inputs and pieces

def _expand(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
            ) -> list[tuple[Path, bool, str | None]]:
    """(file, named explicitly?, why it is not read or None) for every input, as load_trace expands folders and
    glob patterns: a file of a folder that is no export is listed with the reason (never dropped silently)."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[tuple[Path, bool, str | None]] = []
    for item in items:
        text = os.fspath(item)
        if any(ch in text for ch in "*?[") and not os.path.exists(text):
            out += [(Path(m), False, None) for m in sorted(glob.glob(text, recursive=True)) if os.path.isfile(m)]
        elif os.path.isdir(text):
            out += [(f, False, not_trace_like(PurePosixPath(f.as_posix())))
                    for f in sorted(Path(text).rglob("*")) if f.is_file()]
        else:
            out.append((Path(text), True, None))
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Piece:
    """A byte range of a CSV file (after its header) read with the header ``preamble``; None: the whole file."""

    span: tuple[int, int] | None
    preamble_end: int = 0
    line_delta: int = 0  # add to the piece's line numbers for the file's


def plan_pieces(path: Path, chunk_rows: int) -> list[_Piece]:
    """Pieces of ``chunk_rows`` records of a big UTF-8 CSV or tracking log, cut where no quoted field is open."""
    whole = [_Piece(None)]
    try:
        size = path.stat().st_size
        if path.suffix.lower() not in _SPLITTABLE or zipfile.is_zipfile(path):
            return whole
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return whole
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        return whole
    lines = head.count(b"\n")
    if not lines or size / (len(head) / lines) < 1.5 * chunk_rows:
        return whole
    start = _preamble_end(head)
    if start is None:
        return whole
    base = head.count(b"\n", 0, start)
    cuts = [(start, base)]
    with path.open("rb") as handle:
        handle.seek(start)
        position, newlines, records, odd = start, base, 0, 0
        while block := handle.read(_SCAN_BLOCK):
            buf = np.frombuffer(block, dtype=np.uint8)
            breaks = np.flatnonzero(buf == 10)
            quotes = np.flatnonzero(buf == 34)
            closed = (np.searchsorted(quotes, breaks) + odd) % 2 == 0  # a record ends at this line break
            which = np.flatnonzero(closed)
            count = records + np.arange(1, len(which) + 1)
            for i in which[np.flatnonzero(count % chunk_rows == 0)]:
                cuts.append((position + int(breaks[i]) + 1, newlines + int(i) + 1))
            records = int(count[-1] % chunk_rows) if len(count) else records
            odd = (odd + len(quotes)) % 2
            newlines += len(breaks)
            position += len(block)
    cuts = [c for c in cuts if c[0] < size]
    if len(cuts) < 2:
        return whole
    ends = [c[0] for c in cuts[1:]] + [size]
    return [_Piece((begin, end), start, before - base) for (begin, before), end in zip(cuts, ends, strict=True)]


def _preamble_end(head: bytes) -> int | None:
    """Offset after the header: leading blank and ``#`` lines (PowerShell type line, tracking-log headers), then
    the CSV header line (a tracking log's header is its ``#Fields`` line)."""
    offset, tracking = 0, False
    while True:
        end = head.find(b"\n", offset)
        if end < 0:
            return None
        text = head[offset:end].removeprefix(codecs.BOM_UTF8).strip()
        if not text or text.startswith(b"#"):
            tracking |= text.startswith(b"#Fields")
            offset = end + 1
            continue
        return offset if tracking else end + 1


@dataclass
class _Loaded:
    """What a load task returns: the file's reports and the staged piece."""

    reports: list[FileReport]
    events: int
    staged: str | None
    error: str | None = None
    skipped: bool = False


def _load_piece(source: str, explicit: bool, piece: _Piece, number: int, staged: str, options: dict[str, Any]
                ) -> _Loaded:
    """Load one file or piece with load_trace and stage it as Parquet (runs on a Dask worker)."""
    path, temporary = Path(source), None
    if piece.span is not None:
        temporary = Path(staged).with_suffix("") / Path(source).name
        temporary.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as handle, temporary.open("wb") as out:
            out.write(handle.read(piece.preamble_end))
            handle.seek(piece.span[0])
            remaining = piece.span[1] - piece.span[0]
            while remaining > 0:
                block = handle.read(min(remaining, 1 << 24))
                if not block:
                    break
                out.write(block)
                remaining -= len(block)
        path = temporary
    try:
        events, report = load_trace(str(path), errors="raise", with_report=True, **options)
    except NotATraceError as exc:
        return _Loaded([FileReport(path=source, error=_reason(exc, path))], 0, None, _reason(exc, path),
                       skipped=not explicit)
    except TraceLoadError as exc:
        return _Loaded([FileReport(path=source, error=_reason(exc, path))], 0, None, _reason(exc, path))
    except OSError as exc:
        reason = f"cannot read the file: {exc.strerror or exc}"
        return _Loaded([FileReport(path=source, error=reason)], 0, None, reason)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary.parent, ignore_errors=True)
    for file_report in report.files:
        if temporary is not None:
            file_report.path = file_report.path.replace(str(temporary), source)
            file_report.rejects = [(None if line is None else line + piece.line_delta, why)
                                   for line, why in file_report.rejects]
    if temporary is not None:
        events["source_file"] = events["source_file"].cat.rename_categories(
            lambda name: str(name).replace(str(temporary), source))
        events["source_row"] = events["source_row"] + piece.line_delta
    frame = conform(events, EVENT_COLUMNS)
    frame[SEQ] = np.int64(number) + np.arange(len(frame), dtype=np.int64)
    frame[FILE] = np.int32(number >> _FILE_BITS)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), staged)
    return _Loaded(report.files, len(frame), staged)


def _reason(exc: Exception, path: Path) -> str:
    return str(exc).removeprefix(f"{path}: ").removeprefix(f"{path}, ")


def _merge_reports(parts: list[_Loaded], source: str) -> FileReport:
    """One report for a file loaded in pieces (counts summed, rejected lines in file numbering)."""
    reports = [r for p in parts for r in p.reports]
    first = reports[0]
    merged = dataclasses.replace(first, path=source, rejects=[], warnings=[])
    for name in ("rows_read", "rows_loaded", "rows_rejected", "duplicates_removed", "events"):
        setattr(merged, name, sum(getattr(r, name) for r in reports))
    merged.rejects = [item for r in reports for item in r.rejects]
    merged.warnings = list(dict.fromkeys(w for r in reports for w in r.warnings))
    if len({r.date_format for r in reports if r.date_format}) > 1:
        merged.warnings.append("the pieces of this file were read with different date formats: "
                               + ", ".join(sorted({r.date_format for r in reports if r.date_format})))
    errors = [r.error for r in reports if r.error]
    merged.error = errors[0] if errors else None
    return merged


def _dayfirst(report: FileReport) -> bool | None:
    """The day order a piece's dates were read in, when its values decided it (not assumed)."""
    order = report.date_order or ""
    if order.startswith("ambiguous"):
        return None
    return {"DMY": True, "MDY": False}.get(order)


# ---------------------------------------------------------------- ingest

def ingest(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], store_dir: str | os.PathLike[str], *,
           chunk_rows: int = CHUNK_ROWS, partition_rows: int = PARTITION_ROWS,
           tenant_domains: Iterable[str] | None = None, endpoints: Any = None, **load_options: Any
           ) -> IngestReport:
    """Add trace exports to the Parquet store in ``store_dir`` (created when missing); see the module docstring.

    ``paths``: files, folders or glob patterns, as :func:`analysis.load_trace` takes them; ``load_options``
    (``dayfirst``, ``format``, ``tz_offset``, ``trace_format``) go to it. A file whose sha256 the store already
    holds adds nothing; events an earlier export already brought are kept once. A file that cannot be read is
    reported (``IngestReport.files``, the store's ``_load_reports``), not raised. ``chunk_rows``: rows per piece of
    a big CSV; ``partition_rows``: events per partition of the store; ``tenant_domains``: your accepted domains
    (kept for later ingests; default: inferred); ``endpoints``: for the tags (default: the bundled snapshot).
    """
    if not 1 <= chunk_rows <= MAX_CHUNK_ROWS:
        raise ValueError(f"chunk_rows {chunk_rows}: expected 1 .. {MAX_CHUNK_ROWS}")
    if partition_rows < 1:
        raise ValueError(f"partition_rows {partition_rows}: expected at least 1")
    store = Path(store_dir)
    store.mkdir(parents=True, exist_ok=True)
    _recover(store)
    manifest = _read_or_new(store)
    report = IngestReport(store=str(store))
    if tenant_domains is not None:
        manifest["tenant_domains"] = sorted({d.strip().lower() for d in tenant_domains})
    known = {entry["sha256"] for entry in manifest["files"]}
    staging = store / STAGING
    staging.mkdir(exist_ok=True)
    todo: list[tuple[IngestedFile, bool, list[_Piece]]] = []
    for path, explicit, not_read in _expand(paths):
        entry = IngestedFile(path=str(path))
        report.files.append(entry)
        if not_read:
            entry.status, entry.error = "skipped", not_read
            continue
        try:
            entry.sha256 = _sha256(path)
        except OSError as exc:
            entry.status, entry.error = "failed", f"cannot read the file: {exc.strerror or exc}"
            continue
        if entry.sha256 in known:
            entry.status = "already in the store"
            continue
        known.add(entry.sha256)
        entry.file_number = manifest["next_file"]
        manifest["next_file"] += 1
        todo.append((entry, explicit, plan_pieces(path, chunk_rows)))
    if not report.files:
        raise TraceLoadError(str(paths), "no files found", expected="a file, a folder or a glob pattern")

    loaded = _load_all(todo, staging, load_options)
    staged: list[str] = []
    for entry, _explicit, _pieces in todo:
        parts = loaded[entry.file_number]
        if any(p.skipped for p in parts):
            entry.status, entry.error = "skipped", parts[0].error
        elif any(p.error for p in parts):
            entry.status, entry.error = "failed", next(p.error for p in parts if p.error)
        entry.reports = [_merge_reports(parts, entry.path)] if len(parts) > 1 else parts[0].reports
        entry.events_loaded = sum(p.events for p in parts)
        if entry.status == "ingested":
            staged += [p.staged for p in parts if p.staged]
        else:
            for p in parts:
                if p.staged:
                    Path(p.staged).unlink(missing_ok=True)

    if staged:
        counts = _rebuild(store, manifest, staged, partition_rows, endpoints, report)
        for entry, *_ in todo:
            entry.events_added = int(counts.get(entry.file_number, 0))
        for item in manifest["files"]:
            item["events"] = int(counts.get(item["file"], 0))
    _record(store, manifest, [e for e, *_ in todo if e.status == "ingested"],
            [e for e in report.files if e.status == "failed"])
    _swap(store)
    report.events, report.days = manifest["events"], len(manifest["days"])
    report.partitions = manifest["partitions"]
    report.tenant_domains = manifest.get("tenant_domains") or manifest.get("inferred_tenant_domains", [])
    return report


def _read_or_new(store: Path) -> dict[str, Any]:
    if (store / STORE_MANIFEST).is_file():
        return read_manifest(store)
    if any(store.iterdir()):
        raise FileExistsError(f"{store}: the folder is not empty and not an exo-deferrals store")
    return {"format": 1, "files": [], "next_file": 1, "tenant_domains": None, "inferred_tenant_domains": [],
            "partitions": 0, "events": 0, "days": []}


def _load_all(todo: list[tuple[IngestedFile, bool, list[_Piece]]], staging: Path, options: dict[str, Any]
              ) -> dict[int, list[_Loaded]]:
    """Load every file and piece on Dask; pieces after a file's first keep the day order its dates showed."""
    import dask

    def task(entry: IngestedFile, explicit: bool, pieces: list[_Piece], index: int, extra: dict[str, Any]) -> Any:
        number = (entry.file_number << _FILE_BITS) | (index << _PIECE_BITS)
        staged = str(staging / f"f{entry.file_number:07d}-p{index:05d}.parquet")
        return dask.delayed(_load_piece, pure=False)(entry.path, explicit, pieces[index], number, staged,
                                                     {**options, **extra})

    results: dict[int, list[_Loaded]] = {}
    firsts = dask.compute(*[task(entry, explicit, pieces, 0, {}) for entry, explicit, pieces in todo])
    free = "dayfirst" not in options and "format" not in options
    rest, shape = [], []
    for (entry, explicit, pieces), first in zip(todo, firsts, strict=True):
        results[entry.file_number] = [first]
        if len(pieces) > 1 and not first.error:
            order = _dayfirst(first.reports[0]) if free and first.reports else None
            extra = {"dayfirst": order} if order is not None else {}
            rest += [task(entry, explicit, pieces, i, extra) for i in range(1, len(pieces))]
            shape += [(entry.file_number, i) for i in range(1, len(pieces))]
    for (number, _), done in zip(shape, dask.compute(*rest), strict=True):
        results[number].append(done)
    if free:  # a first piece that could not tell day from month follows the pieces that could
        again, where = [], []
        for entry, explicit, pieces in todo:
            parts = results[entry.file_number]
            orders = {_dayfirst(p.reports[0]) for p in parts if p.reports and not p.error} - {None}
            if len(parts) > 1 and len(orders) == 1:
                order = orders.pop()
                for i, part in enumerate(parts):
                    if part.reports and not part.error and _dayfirst(part.reports[0]) is None \
                            and (part.reports[0].date_order or "").startswith("ambiguous"):
                        again.append(task(entry, explicit, pieces, i, {"dayfirst": order}))
                        where.append((entry.file_number, i))
        for (number, i), done in zip(where, dask.compute(*again), strict=True):
            results[number][i] = done
    return results


# ---------------------------------------------------------------- rebuild: the whole store, by site

_INPUT = [*EVENT_COLUMNS, SEQ, FILE]


def _rebuild(store: Path, manifest: dict[str, Any], staged: list[str], partition_rows: int, endpoints: Any,
             report: IngestReport) -> pd.Series:
    """Rewrite the store from its events and the staged ones (into _next); events per file number."""
    import dask
    import dask.dataframe as dd

    old = [files for files in partition_files(store, manifest["partitions"]) if files]
    sources = old + [[path] for path in staged]
    ddf = dd.from_map(read_part, sources, columns=_INPUT, meta=store_meta(_INPUT), label="exo-ingest",
                      enforce_metadata=False)
    facts = dask.compute(*[dask.delayed(_global_facts)(part) for part in ddf[_FACT_COLUMNS].to_delayed()])
    senders = pd.concat([f[0] for f in facts]).groupby(level=0).sum() if facts else pd.Series(dtype=np.int64)
    tenant = manifest.get("tenant_domains")
    if tenant is None:
        tenant = _infer_tenant(senders)
        manifest["inferred_tenant_domains"] = sorted(tenant)
    shared = frozenset().union(*(f[1] for f in facts))
    traces = frozenset().union(*(f[2] for f in facts))
    if traces:  # detail rows without a recipient domain are completed from summary rows of their message
        found = dask.compute(*[dask.delayed(_domains_of_traces)(part, traces) for part in
                               ddf[["trace_id", "recipient_domain", "source_format"]].to_delayed()])
        shared |= frozenset().union(*found)
    sites = pd.concat([f[3] for f in facts]).groupby(level=0).sum()
    sliced = _sliced_sites(ddf, sites, shared, partition_rows)
    placement, partitions = _placement(sites, shared, sliced, partition_rows)
    target = store / NEXT
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    meta = dask_engine.with_site(store_meta(_INPUT), shared).assign(**{_TARGET: pd.Series([], dtype=np.int64)})
    keyed = ddf.map_partitions(_keyed, shared, sliced, placement, partitions, meta=meta)
    shuffled = keyed.set_index(_TARGET, divisions=[*range(partitions), partitions - 1], sort=True)
    meta = pd.DataFrame({FILE: pd.Series([], dtype=np.int64), "day": pd.Series([], dtype=object),
                         "events": pd.Series([], dtype=np.int64), "part": pd.Series([], dtype=np.int64),
                         "sliced": pd.Series([], dtype=object)})
    written = shuffled.map_partitions(_rebuild_partition, frozenset(tenant), endpoints, str(target),
                                      partition_rows, partition_info=True, meta=meta).compute()
    manifest["partitions"] = partitions
    manifest["groups"] = _linked(written, partitions)
    written = written[written[FILE] >= 0]  # without the rows that only say which partitions hold slices
    manifest["events"] = int(written["events"].sum())
    manifest["days"] = sorted(set(written["day"]) - {NO_DAY}) + ([NO_DAY] if NO_DAY in set(written["day"]) else [])
    return written.groupby(FILE)["events"].sum()


_FACT_COLUMNS = ["event", "sender", "recipient", "recipient_domain", "remote_host", "remote_ip", "exo_ip", "trace_id",
                 "source_format"]


def _global_facts(part: pd.DataFrame) -> tuple[pd.Series, set[str], set[str], pd.DataFrame]:
    """Per input partition: senders of outbound attempts (for the tenant), sites rows without a recipient domain
    reach, messages of detail rows without one, and per recipient domain (lower case; "" none) its rows and
    what decides whether it may be cut into slices of messages (see _sliced_sites)."""
    outbound_like = (part["event"].isin(["send", "defer"]).to_numpy(dtype=bool)
                     | part["remote_ip"].notna().to_numpy(dtype=bool))
    senders = map_unique(part["sender"][outbound_like], address_domain).value_counts()
    none = part["recipient_domain"].isna() & part["source_format"].eq("messagetrace_detail").fillna(False)
    traces = set(part.loc[none.to_numpy(dtype=bool), "trace_id"].dropna().unique().tolist())
    sourced = part["exo_ip"].notna().to_numpy(dtype=bool)
    sites = pd.DataFrame({
        "rows": 1,
        "refused_sourced": part["event"].isin(["defer", "fail"]).to_numpy(dtype=bool) & sourced,
        "accepted_sourced": part["event"].isin(["deliver", "send"]).to_numpy(dtype=bool) & sourced,
        "untraced": part["trace_id"].isna().to_numpy(dtype=bool),
    }).groupby(dask_engine.site_keys(part, frozenset()).to_numpy()).sum()
    return senders, dask_engine.site_facts(part), traces, sites


def _sliced_sites(ddf: Any, sites: pd.DataFrame, shared: frozenset[str], partition_rows: int) -> dict[str, int]:
    """Sites of more than ``partition_rows`` events the shuffle may cut into slices of whole messages (by trace
    id), and into how many. Exact because every step that looks at other rows of a site works within a trace
    (cross-file completion, status, retry outcome, expiry) or within a Message-ID that never has two traces
    (de-duplication: checked here) - except tag's selective-refusal rule, which needs refusals and acceptances
    with an Exchange Online source IP: a site without one of them can never be selective, nor any slice of it."""
    keys = pd.Series(sites.index.to_numpy(dtype=object), index=sites.index)
    keys = keys.where(~keys.isin(list(shared)), "")
    per_site = sites.groupby(keys.to_numpy()).sum()
    candidates = per_site[(per_site["rows"] > partition_rows) & (per_site.index != "")
                          & ((per_site["refused_sourced"] == 0) | (per_site["accepted_sourced"] == 0))
                          & (per_site["untraced"] == 0)]
    if candidates.empty:
        return {}
    names = frozenset(candidates.index)
    meta = pd.DataFrame({"site": pd.Series([], dtype=object), "mid": pd.Series([], dtype=object),
                         "trace": pd.Series([], dtype=object)})
    pairs = ddf[["recipient_domain", "remote_host", "recipient", "message_id", "trace_id"]].map_partitions(
        _message_traces, names, shared, meta=meta)
    counts = pairs.drop_duplicates().groupby(["site", "mid"])["trace"].count().compute()
    conflicted = set(counts[counts > 1].index.get_level_values("site"))
    return {site: math.ceil(int(candidates.loc[site, "rows"]) / partition_rows)
            for site in candidates.index if site not in conflicted}


def _message_traces(part: pd.DataFrame, names: frozenset[str], shared: frozenset[str]) -> pd.DataFrame:
    """The distinct (site, lower-case Message-ID, trace id) of the rows of sites ``names`` that have a Message-ID."""
    site = dask_engine.site_keys(part, shared)
    rows = site.isin(list(names)).to_numpy(dtype=bool) & part["message_id"].notna().to_numpy(dtype=bool)
    return pd.DataFrame({"site": site[rows].to_numpy(dtype=object),
                         "mid": part.loc[rows, "message_id"].str.lower().to_numpy(dtype=object),
                         "trace": part.loc[rows, "trace_id"].to_numpy(dtype=object)}).drop_duplicates()


def _placement(sites: pd.DataFrame, shared: frozenset[str], sliced: dict[str, int], partition_rows: int
               ) -> tuple[dict[str, int], int]:
    """Which partition each bigger site (or slice of a site) goes to, and how many partitions: the slices of a
    cut site get partitions of their own (so reading the site whole reads nothing else); the other sites of more
    than a twentieth of a partition are packed, biggest first, into the least filled of the other partitions;
    smaller ones go by hash (see _keyed)."""
    keys = pd.Series(sites.index.to_numpy(dtype=object), index=sites.index)
    rows = sites["rows"].groupby(keys.where(~keys.isin(list(shared)), "").to_numpy()).sum()
    partitions = max(1, math.ceil(int(rows.sum()) / partition_rows))
    placement: dict[str, int] = {}
    number = 0
    for site, count in sliced.items():
        for k in range(count):
            placement[f"{site}{_SLICE}{k}"] = number
            number += 1
    shared_partitions = max(1, partitions - number)
    load = np.zeros(shared_partitions, dtype=np.int64)
    packed = rows.drop(list(sliced), errors="ignore")
    for site, count in packed[packed > partition_rows // 20].sort_values(ascending=False, kind="stable").items():
        slot = int(np.argmin(load))
        placement[str(site)] = number + slot
        load[slot] += int(count)
    return placement, number + shared_partitions


_TARGET = "_target"  # the partition number a row goes to


def _keyed(part: pd.DataFrame, shared: frozenset[str], sliced: dict[str, int], placement: dict[str, int],
           partitions: int) -> pd.DataFrame:
    """Shuffle keys: the site; for a site cut into slices, the site, " #" and the slice of its trace id. And the
    partition each key goes to (``placement``; other keys by hash, over the partitions no slice owns)."""
    keyed = dask_engine.with_site(part, shared)
    if sliced:
        site = keyed[dask_engine.SITE]
        count = site.map(sliced).to_numpy()
        cut = ~pd.isna(count)
        if cut.any():
            hashed = pd.util.hash_pandas_object(part.loc[cut, "trace_id"].astype(object), index=False).to_numpy()
            number = hashed % count[cut].astype(np.uint64)
            keys = site.to_numpy(dtype=object).copy()
            keys[cut] = site[cut].to_numpy(dtype=object) + _SLICE + number.astype(str).astype(object)
            keyed[dask_engine.SITE] = keys
    site = keyed[dask_engine.SITE].astype(object)
    owned = sum(sliced.values())  # partitions 0 .. owned-1 hold slices only
    hashed = pd.util.hash_pandas_object(site, index=False).to_numpy() % np.uint64(max(1, partitions - owned))
    target = site.map(placement).to_numpy(dtype=np.float64)
    keyed[_TARGET] = np.where(np.isnan(target), owned + hashed.astype(np.int64), target).astype(np.int64)
    return keyed


def _linked(written: pd.DataFrame, partitions: int) -> list[list[int]]:
    """Partition numbers that together hold whole sites: a site cut into slices links the partitions of its slices."""
    parent = list(range(partitions))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for numbers in written.dropna(subset=["sliced"]).groupby("sliced")["part"].unique():
        for other in numbers[1:]:
            parent[root(int(other))] = root(int(numbers[0]))
    groups: dict[int, list[int]] = {}
    for i in range(partitions):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


def _domains_of_traces(part: pd.DataFrame, traces: frozenset[str]) -> set[str]:
    rows = part["trace_id"].isin(list(traces)).to_numpy(dtype=bool)
    return set(part.loc[rows, "recipient_domain"].dropna().astype(str).str.lower().unique().tolist())


def _infer_tenant(senders: pd.Series) -> set[str]:
    """The loader's rule: sender domains of at least TENANT_MIN_ROWS outbound attempts or TENANT_MIN_SHARE of them."""
    chosen = senders[(senders >= TENANT_MIN_ROWS) | (senders >= TENANT_MIN_SHARE * senders.sum())]
    return set(chosen.index.astype(str))


def _rebuild_partition(part: pd.DataFrame, tenant: frozenset[str], endpoints: Any, target: str, slice_rows: int,
                       partition_info: dict | None = None) -> pd.DataFrame:
    """One group of sites: the loader's cross-file steps, de-duplication and tags; written by day.

    A site bigger than ``slice_rows`` is done in slices of whole messages when that is exact: every step but
    tag's selective-refusal rule works within a message, and that rule provably changes nothing in the site
    nor in any slice (see _possibly_selective); otherwise the site is done whole. Slices are copied out of the
    partition one at a time, in ``_seq`` order, so memory holds the partition and one slice.
    """
    number = partition_info["number"] if partition_info else 0
    order = np.argsort(part[SEQ].to_numpy(), kind="stable")
    sites = part[dask_engine.SITE].to_numpy(dtype=object)[order]
    stats: list[tuple[int, str, int]] = []
    for index, rows in enumerate(_slices(part, order, sites, slice_rows, endpoints)):
        piece = part.iloc[order[rows]].drop(columns=[dask_engine.SITE]).reset_index(drop=True)
        tagged = _tag_slice(piece, tenant, endpoints)
        del piece
        stats += _write_by_day(tagged, Path(target), f"part.{number:05d}.{index:04d}.parquet")
        del tagged
        pa.default_memory_pool().release_unused()
    out = pd.DataFrame(stats, columns=[FILE, "day", "events"]).astype({FILE: np.int64, "events": np.int64})
    out["part"], out["sliced"] = number, None
    cut = sorted({str(site).split(_SLICE)[0] for site in pd.unique(sites) if _SLICE in str(site)})
    linked = pd.DataFrame({FILE: -1, "day": NO_DAY, "events": 0, "part": number, "sliced": cut})
    return pd.concat([out, linked.astype(out.dtypes.to_dict())], ignore_index=True) if cut else out


def _tag_slice(events: pd.DataFrame, tenant: frozenset[str], endpoints: Any) -> pd.DataFrame:
    return dask_engine.with_categories(tag(_cross_file(events, tenant), endpoints=endpoints))


def _write_by_day(tagged: pd.DataFrame, target: Path, name: str) -> list[tuple[int, str, int]]:
    day = tagged["timestamp"].dt.strftime("%Y-%m-%d").astype(object).fillna(NO_DAY).to_numpy()
    stats = []
    for value in pd.unique(day):
        rows = tagged[day == value]
        folder = target / f"day={value}"
        folder.mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), folder / name)
        stats += [(int(f), value, int(n)) for f, n in rows[FILE].value_counts().items()]
    return stats


def _slices(part: pd.DataFrame, order: np.ndarray, sites: np.ndarray, slice_rows: int, endpoints: Any
            ) -> list[np.ndarray]:
    """Slices of a partition as positions in ``_seq`` order (``order``: that order's positions in ``part``): the
    small sites together, each big site whole or in slices of whole messages."""
    codes, labels = pd.factorize(sites)
    sizes = np.bincount(codes, minlength=len(labels))
    big = np.flatnonzero(sizes > slice_rows)
    small = np.flatnonzero(~np.isin(codes, big))
    out = [small] if len(small) else []
    for site in big:
        rows = np.flatnonzero(codes == site)
        pieces = math.ceil(len(rows) / slice_rows)
        message = _message_slices(part[["message_id", "trace_id"]].iloc[order[rows]], pieces)
        facts = part[["event", "enhanced_code", "reply", "recipient_domain", "remote_host", "exo_ip"]].iloc[order[rows]]
        if message is None or _possibly_selective(facts, np.zeros(len(rows), dtype=np.int64), endpoints).any() \
                or _possibly_selective(facts, message, endpoints).any():
            out.append(rows)
            continue
        out += [rows[message == k] for k in range(pieces) if (message == k).any()]
    return out


def _message_slices(events: pd.DataFrame, pieces: int) -> np.ndarray | None:
    """Per row, a slice number (0 .. pieces-1) that keeps every message whole - rows with the same message id
    (any case) or the same trace id - or None when a trace id comes with two message ids."""
    mid = events["message_id"].str.lower().astype(object)
    trace = events["trace_id"].astype(object)
    both = mid.notna() & trace.notna()
    per_trace = pd.DataFrame({"trace": trace[both], "mid": mid[both]}).drop_duplicates()
    if per_trace["trace"].duplicated().any():
        return None
    via_trace = trace.map(per_trace.set_index("trace")["mid"])
    key = mid.fillna(via_trace).fillna(trace).fillna("")
    hashed = pd.util.hash_pandas_object(key, index=False).to_numpy()
    return (hashed % np.uint64(pieces)).astype(np.int64)


def _possibly_selective(events: pd.DataFrame, groups: np.ndarray, endpoints: Any) -> np.ndarray:
    """Per group of rows: whether tag's selective-refusal rule could change anything if tagging saw only that
    group. An over-approximation of the rule's "clear" sites (see tagging._selective_refusals): a range that
    refused (any refusal counts) and accepted nothing, with at least CLEAR_REFUSALS such refusals, and at least
    CLEAR_ACCEPTS acceptances in the site."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    event = events["event"]
    expiry = is_expiry(event, events["enhanced_code"], events["reply"])
    refused = event.isin(REFUSAL_EVENTS).to_numpy(dtype=bool) & ~expiry
    accepted = event.isin(ACCEPTED_EVENTS).to_numpy(dtype=bool)
    site = site_key(events["recipient_domain"], events["remote_host"])
    rows = (refused | accepted) & events["exo_ip"].notna().to_numpy(dtype=bool) & site.notna().to_numpy(dtype=bool)
    if not (rows & refused).any() or not (rows & accepted).any():
        return np.zeros(n_groups, dtype=bool)
    ips = events.loc[rows, "exo_ip"].astype(object)
    unique = pd.Series(ips.unique(), dtype=STRING)
    matched = (endpoints or Endpoints.bundled()).match_ips(unique)
    cidr = pd.Series(matched["cidr"].astype(object).to_numpy(), index=unique.astype(object).to_numpy())
    source = source_range(ips, pd.Series(cidr.reindex(ips.to_numpy()).to_numpy(), index=ips.index))
    stats = pd.DataFrame({"group": groups[rows], "site": site[rows].to_numpy(dtype=object),
                          "range": source.to_numpy(dtype=object), "refused": refused[rows],
                          "accepted": accepted[rows]}).dropna(subset=["range"])
    per_range = stats.groupby(["group", "site", "range"]).agg(refused=("refused", "sum"),
                                                              accepted=("accepted", "sum"))
    refusing = (per_range["refused"] > 0) & (per_range["accepted"] == 0)
    per_site = pd.DataFrame({
        "refusals": per_range["refused"].where(refusing, 0).groupby(level=["group", "site"]).sum(),
        "accepts": per_range["accepted"].groupby(level=["group", "site"]).sum(),
    })
    possible = (per_site["refusals"] >= CLEAR_REFUSALS) & (per_site["accepts"] >= CLEAR_ACCEPTS)
    flagged = possible[possible].index.get_level_values("group").unique()
    out = np.zeros(n_groups, dtype=bool)
    out[np.asarray(flagged, dtype=np.int64)] = True
    return out


_STATUS_DERIVED = tuple(name for name, spec in BY_NAME.items() if spec.layout in ("events", "tracking"))


def _cross_file(events: pd.DataFrame, tenant: frozenset[str]) -> pd.DataFrame:
    """What load_trace does across files (see its ``_combine``), on rows in store order."""
    for name in ("status", "event", "direction", "source_format"):
        events[name] = events[name].astype(STRING)
    derived = events["source_format"].isin(_STATUS_DERIVED).fillna(False).to_numpy(dtype=bool)
    events.loc[derived, "status"] = pd.NA  # event-level exports carry no status: it comes from the other rows
    events = loader.join_detail_to_summary(events)
    events = loader.derive_status(events)
    events["direction"] = loader.infer_direction(events, tenant)
    events = _drop_repeats(events)
    return conform(events, {**EVENT_COLUMNS, **HELPERS})


def _drop_repeats(events: pd.DataFrame) -> pd.DataFrame:
    """loader._drop_duplicates with each ingested file as a file: an event repeated by later exports of the
    same family is kept once (the first ingested, completed with the facts of the others); a recipient-status
    list row whose message and recipient an event-level export covers is dropped."""
    family = events["source_format"].astype(object).map(loader.FORMAT_FAMILY).astype(object)
    files = events[FILE].groupby(family.to_numpy()).nunique()
    if (files <= 1).all() and not {"events", "recipient_list"} <= set(files.index):
        return events  # one file per family: nothing can repeat (the loader's shortcut)
    message = events["message_id"].str.lower().fillna(events["trace_id"]).astype(object)
    key = pd.DataFrame({
        "family": family, "message": message, "recipient": events["recipient"].astype(object),
        "event": events["event"].astype(object), "second": events["timestamp"].dt.floor("s"),
    })
    key["occurrence"] = key.groupby([*key.columns, events[FILE]], dropna=False, sort=False).cumcount().to_numpy()
    duplicate = key.duplicated(keep="first").to_numpy()
    if duplicate.any():
        events = loader.merge_facts(events, key, duplicate)
    detailed = pd.MultiIndex.from_frame(key.loc[family.eq("events"), ["message", "recipient"]])
    covered = family.eq("recipient_list").to_numpy() & pd.MultiIndex.from_frame(
        key[["message", "recipient"]]).isin(detailed)
    dropped = duplicate | covered
    return events.loc[~dropped].reset_index(drop=True) if dropped.any() else events


# ---------------------------------------------------------------- manifest, reports, swap

def _record(store: Path, manifest: dict[str, Any], added: list[IngestedFile], failed: list[IngestedFile]) -> None:
    """Write the load reports and the next manifest (the store changes in _swap). Failed files are listed under
    "failed" (their events are not in the store; ingesting them again tries again)."""
    reports = store / REPORTS
    reports.mkdir(exist_ok=True)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for entry in failed:
        name = f"{REPORTS}/failed-{(entry.sha256 or 'unreadable')[:16]}.json"
        (store / name).write_text(json.dumps([dataclasses.asdict(r) for r in entry.reports]
                                             or [{"path": entry.path, "error": entry.error}], indent=1, default=str),
                                  encoding="utf-8")
        manifest.setdefault("failed", []).append({"path": entry.path, "sha256": entry.sha256, "error": entry.error,
                                                  "at": now, "report": name})
    for entry in added:
        name = f"{REPORTS}/{entry.file_number:07d}-{entry.sha256[:16]}.json"
        (store / name).write_text(json.dumps([dataclasses.asdict(r) for r in entry.reports], indent=1,
                                             default=str), encoding="utf-8")
        manifest["files"].append({"file": entry.file_number, "path": entry.path, "sha256": entry.sha256,
                                  "bytes": Path(entry.path).stat().st_size, "ingested_at": now,
                                  "events_loaded": entry.events_loaded, "events": entry.events_added,
                                  "report": name})
    temporary = store / (NEXT_MANIFEST + ".tmp")
    temporary.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(temporary, store / NEXT_MANIFEST)


def _swap(store: Path) -> None:
    """Put _next in place of the day folders and the next manifest in place of the manifest, then clean up.
    Safe to repeat: an interrupted swap is finished by the next ingest (see _recover)."""
    nxt, old = store / NEXT, store / OLD
    if nxt.is_dir():
        old.mkdir(exist_ok=True)
        for day in store.glob("day=*"):
            if day.is_dir():
                os.replace(day, old / day.name)
        for day in nxt.glob("day=*"):
            os.replace(day, store / day.name)
    os.replace(store / NEXT_MANIFEST, store / STORE_MANIFEST)
    for folder in (nxt, old, store / STAGING):
        shutil.rmtree(folder, ignore_errors=True)


def _recover(store: Path) -> None:
    """Finish a swap an interrupted ingest had started; drop what an unfinished one left behind."""
    if (store / NEXT_MANIFEST).is_file():
        nxt = store / NEXT
        if nxt.is_dir():  # the day folders may be half moved: put every remaining new one in place
            (store / OLD).mkdir(exist_ok=True)
            for day in nxt.glob("day=*"):
                if (store / day.name).exists():
                    os.replace(store / day.name, store / OLD / f"{day.name}.replaced")
                os.replace(day, store / day.name)
        _swap(store)
    for folder in (store / NEXT, store / OLD, store / STAGING):
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (store / (NEXT_MANIFEST + ".tmp")).unlink()


# ---------------------------------------------------------------- command line
