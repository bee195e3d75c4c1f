"""The message-tracking family: Exchange Server message-tracking logs and the EAC extended report.

One row per event with ``;``-separated recipient and recipient-status lists, split here into one row per recipient;
the remote host of each attempt comes from the server fields of a SEND and from the LED of a DEFER / FAIL.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from analysis.core.errors import TraceLoadError
from analysis.core.schema import STRING
from analysis.io import textio
from analysis.io.csvparse import Parsed, detect_format, line_text, parse_rows, unique_names
from analysis.io.formats import TRACKING_EVENTS, TraceFormat, known_values
from analysis.io.report import FileReport


def parse_tracking_log(data: bytes, name: str, trace_format: str | None, report: FileReport
                       ) -> tuple[Parsed, TraceFormat, dict]:
    """The entries of a log with ``#`` header lines: columns from its ``#Fields:`` line, file line numbers kept."""
    offsets = textio.line_offsets(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    valid_offsets = offsets[offsets < len(data)]
    is_comment = buf[valid_offsets] == ord("#")
    fields_line = None
    for index in np.flatnonzero(is_comment):
        text = line_text(data, valid_offsets, int(index))
        if text.startswith("#Fields:"):
            fields_line = (int(index), text)
            break
    if fields_line is None:
        raise TraceLoadError(name, "a message-tracking log without a '#Fields:' line", line=1,
                             expected="'#Fields: date-time,client-ip,...' before the first entry")
    header = [h.strip() for h in fields_line[1].removeprefix("#Fields:").split(",")]
    report.delimiter = ","
    fmt, present = detect_format(header, name, fields_line[0] + 1, trace_format, is_tracking_log=True)
    kept_lines = np.flatnonzero(~is_comment) + 1
    if is_comment.any():
        pieces = [data[int(valid_offsets[i - 1]):int(offsets[i]) if i < len(offsets) else len(data)]
                  for i in kept_lines]
        body = b"".join(pieces)
    else:
        body = data
    if not kept_lines.size:
        parsed = Parsed(pa.table({**{h: pa.array([], pa.string()) for h in unique_names(header)},
                                   "__line__": pa.array([], pa.int64())}), header, 0)
        return parsed, fmt, present
    parsed = parse_rows(body, 0, header, ",", 0, name, report, line_map=kept_lines)
    return parsed, fmt, present


def explode_tracking(frame: pd.DataFrame, report: FileReport) -> pd.DataFrame:
    """Split ``;``-separated recipient-address / recipient-status lists into one row per recipient."""
    addresses = frame["recipient"].astype(object).str.split(";")
    counts = pd.to_numeric(addresses.str.len()).fillna(1).astype(int)  # object lengths on pandas 2.2: no downcast
    statuses = _split_status_lists(frame["reply"], counts)
    status_counts = statuses.map(len)
    single = status_counts == 1
    broadcast = single & (counts > 1)
    empty = status_counts == 0
    # lists go in through a Series: assigning a list of equal-length lists by mask makes numpy build a 2-D array
    repeated = pd.Series([s * n for s, n in zip(statuses[broadcast], counts[broadcast], strict=True)]
                         + [[None] * n for n in counts[empty]],
                         index=[*statuses.index[broadcast], *statuses.index[empty]], dtype=object)
    statuses = statuses.where(~(broadcast | empty), repeated)
    mismatch = ~(single | empty) & (status_counts != counts)
    for line, n, m in zip(frame.loc[mismatch, "__line__"], counts[mismatch], status_counts[mismatch], strict=True):
        report.reject(int(line), f"{n} recipients but {m} recipient-status entries")
    frame = frame.loc[~mismatch].assign(recipient=addresses[~mismatch], reply=statuses[~mismatch])
    frame = frame.explode(["recipient", "reply"], ignore_index=True)
    for column in ("recipient", "reply"):
        frame[column] = frame[column].astype(STRING).str.strip().replace("", pd.NA)
    frame["event"] = known_values(frame, "event", TRACKING_EVENTS, "event-id", "kept as event 'other'",
                                  report).fillna("other")
    attempt = frame["event"].isin(["send", "defer", "fail"])  # DELIVER is the local mailbox store
    # on SEND the server fields name the next hop; on DEFER / FAIL the local server: the LED's {FQDN=}, {IP=},
    # [LastAttemptedServerName=], [LastAttemptedIP=] name the remote host (read by _parse_replies)
    sent = frame["event"].eq("send")
    frame["remote_host"] = frame["receiving_host"].where(sent)
    frame["remote_ip"] = frame["receiving_ip"].where(sent)
    frame["exo_host"] = frame["sending_host"].where(attempt)
    frame["exo_ip"] = frame["sending_ip"].where(attempt)
    receive = frame["event"].eq("receive")
    frame["client_ip"] = frame["client_ip"].fillna(frame["sending_ip"].where(receive))
    return frame.drop(columns=["receiving_host", "receiving_ip", "sending_host", "sending_ip"])


def _split_status_lists(statuses: pd.Series, counts: pd.Series) -> pd.Series:
    """Split each recipient-status list on the ``;`` that separate entries (not those inside ``{...}``/``[...]``)."""
    codes, uniques = pd.factorize(statuses.astype(object), use_na_sentinel=True)
    split = [_top_level_split(value) for value in uniques]
    lookup = pd.Series([*split, []], dtype=object)
    return pd.Series(lookup.iloc[np.where(codes < 0, len(split), codes)].to_numpy(), index=statuses.index)


def _top_level_split(value: str) -> list[str]:
    if "{" not in value and "[" not in value:
        return value.split(";")
    parts, depth, current = [], 0, []
    for char in value:
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth = max(0, depth - 1)
        if char == ";" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
