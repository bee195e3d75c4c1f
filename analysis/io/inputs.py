"""The input files of a load: files, folders, glob patterns, ZIP archives and ``.gz`` / ``.bz2`` files.

Every file a folder, glob or archive turns up is listed: those that are not exports with the reason they are not read.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from analysis.core.errors import TraceLoadError

PathLike = str | os.PathLike[str]
# .xlsx / .xls are looked at only to say "save as CSV"
TRACE_SUFFIXES = {".csv", ".txt", ".log", ".tsv", ".zip", ".xlsx", ".xls", ".jsonl"}
Source = tuple[str, Callable[[], bytes], bool, str | None]  # name, reader of its bytes, named explicitly?, skip reason
COMPRESSED = {".gz": gzip.decompress, ".bz2": bz2.decompress}
# what ``exo-deferrals pull`` writes beside messageTraces.jsonl and details.jsonl (analysis/pull/run.py)
PULL_BOOKKEEPING = {
    ".pull-state.json": "the pull's own bookkeeping (what is done, to resume), not an export",
    "_pull_report.json": "the pull's own report (its windows and requests); the details it did not fetch are named "
                         "in the warnings of messageTraces.jsonl",
    "_raw_responses.ndjson": "the pull's own copy of Graph's answers as received; messageTraces.jsonl and "
                             "details.jsonl hold the same rows",
}


def expand_paths(paths: PathLike | Iterable[PathLike]) -> Iterable[Source]:
    """(display name, reader of the bytes, explicitly named?, why it is skipped) for every input file.

    Every file a folder or glob turns up is listed: those that are not exports with the reason they are skipped.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    for item in items:
        text = os.fspath(item)
        if any(ch in text for ch in "*?[") and not os.path.exists(text):
            for match in sorted(glob.glob(text, recursive=True)):
                if os.path.isfile(match):
                    yield from _file_or_archive(Path(match), explicit=False)
        elif os.path.isdir(text):
            for found in sorted(Path(text).rglob("*")):
                if found.is_file():
                    yield from _file_or_archive(found, explicit=False)
        else:
            yield from _file_or_archive(Path(text), explicit=True)


def _file_or_archive(path: Path, *, explicit: bool) -> Iterable[Source]:
    why = None if explicit else not_trace_like(PurePosixPath(path.as_posix()))
    if why:
        yield (str(path), path.read_bytes, False, why)
    elif path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [m.filename for m in archive.infolist() if not m.is_dir()]
        for member in members:  # like the files of a folder
            inner = PurePosixPath(member)
            why = not_trace_like(inner) or ("an archive inside an archive is not opened: extract it first"
                                            if inner.suffix.lower() == ".zip" else None)
            yield (f"{path}!{member}", _decompressing(f"{path}!{member}", _zip_reader(path, member)), False, why)
    else:
        yield (str(path), _decompressing(str(path), path.read_bytes), explicit, None)


def not_trace_like(path: PurePosixPath) -> str | None:
    """Why a file found in a folder or archive is not read as an export (None: it may be one)."""
    if path.name in PULL_BOOKKEEPING:
        return PULL_BOOKKEEPING[path.name]
    if "__MACOSX" in path.parts or path.name.startswith("._"):
        return "macOS metadata, not an export"
    if path.name.startswith("."):
        return "a hidden file"
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    inner = suffixes[0] if len(suffixes) == 2 and suffixes[1] in COMPRESSED else suffixes[-1] if suffixes else ""
    if inner not in TRACE_SUFFIXES:
        return (f"the name ends in {''.join(path.suffixes[-2:]) or 'no suffix'}, not one of "
                f"{', '.join(sorted(TRACE_SUFFIXES | {s + c for s in ('.csv', '.log') for c in COMPRESSED}))}")
    return None


def is_trace_like(path: PurePosixPath) -> bool:
    """Whether a file found in a folder or archive may be an export (not hidden, not macOS metadata)."""
    return not_trace_like(path) is None


def _decompressing(name: str, read: Callable[[], bytes]) -> Callable[[], bytes]:
    """``read``, decompressing a ``.gz`` / ``.bz2`` file (a damaged one raises :class:`TraceLoadError`)."""
    decompress = COMPRESSED.get(PurePosixPath(name).suffix.lower())
    if decompress is None:
        return read

    def unpacked() -> bytes:
        try:
            return decompress(read())
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise TraceLoadError(name, f"the {PurePosixPath(name).suffix} file cannot be decompressed ({exc})",
                                 expected="a complete gzip or bzip2 file") from exc
    return unpacked


def _zip_reader(path: Path, member: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with zipfile.ZipFile(path) as archive:
                return archive.read(member)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise TraceLoadError(f"{path}!{member}", f"the archive member cannot be read ({exc})",
                                 expected="an undamaged ZIP archive") from exc
    return read
