"""The kit's own error types: the only exceptions its public functions raise on bad input."""

from __future__ import annotations


class ExoDeferralsError(Exception):
    """Base class of every error the kit raises on purpose."""


class TraceLoadError(ExoDeferralsError):
    """A trace file could not be read: names the file, the line when known, what was seen and expected."""

    def __init__(self, path: str, problem: str, *, line: int | None = None, expected: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.line = line
        self.expected = expected
        where = self.path if line is None else f"{self.path}, line {line}"
        text = f"{where}: {problem}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class NotATraceError(TraceLoadError):
    """The file is not a message-trace export at all (another kind of file, not text, an unknown header).

    Files found by expanding a folder, glob or ZIP archive that raise this are skipped and listed in the load
    report; a file named explicitly raises it.
    """


class AllowListError(ExoDeferralsError):
    """An allow-list could not be used (nothing parseable in it, unreadable file)."""


class EndpointsError(ExoDeferralsError):
    """The Microsoft 365 endpoints data could not be fetched, validated or loaded."""
