"""The EAC historical-search summary reports: ``addr##Receive, Defer, Send;addr2##...`` per message."""

from __future__ import annotations

import pandas as pd

from analysis.core.schema import STRING
from analysis.io.formats import DETAIL_EVENTS, OUTCOME_STATUS, known_values
from analysis.io.report import FileReport

_RECIPIENT_SPLIT = r";(?=[^;]*##)"


def explode_recipient_status(frame: pd.DataFrame, report: FileReport) -> pd.DataFrame:
    """``a@x##Receive, Defer, Send;b@y##Receive, Deliver`` -> one row per recipient event."""
    frame = frame.assign(__entry__=frame["recipient"].astype(object).str.split(_RECIPIENT_SPLIT, regex=True))
    frame = frame.explode("__entry__", ignore_index=True)
    parts = frame["__entry__"].astype(STRING).str.split("##", n=1, expand=True).reindex(columns=[0, 1])
    frame["recipient"] = parts[0].astype(STRING)
    events = parts[1].astype(STRING).str.split(",")
    last = events.str[-1].astype(STRING).str.strip().str.lower()
    frame["status"] = last.map(lambda v: OUTCOME_STATUS.get(DETAIL_EVENTS.get(v, ""), pd.NA)
                               if isinstance(v, str) else pd.NA).astype(STRING)
    frame = frame.assign(event=events).explode("event", ignore_index=True)
    frame["event"] = frame["event"].astype(STRING).str.strip().replace("", pd.NA)
    frame["event"] = known_values(frame, "event", DETAIL_EVENTS, "recipient_status event",
                                  "kept as event 'other'", report).fillna("other")
    return frame.drop(columns="__entry__")
