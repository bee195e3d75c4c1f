"""The display time zone: the one zone every table, time window and chart of a kernel shows times in.

Times are stored in UTC (:func:`analysis.core.concepts.as_utc`); only what is shown changes. UTC unless the user
picks another IANA zone (the notebooks' time-zone choice calls :func:`set_display_zone`); views that registered
with :func:`on_zone_change` redraw at once, charts drawn afterwards follow the new zone.
"""

from __future__ import annotations

import weakref
import zoneinfo
from collections.abc import Callable
from typing import Any

import pandas as pd

__all__ = ["DEFAULT_ZONE", "display_zone", "in_zone", "on_zone_change", "set_display_zone", "zone_name"]

DEFAULT_ZONE = "UTC"
_ZONE = [DEFAULT_ZONE]  # the zone this kernel shows times in
_ZONE_CALLBACKS: list[weakref.WeakMethod] = []


def zone_name(name: str) -> str:
    """``name`` checked as an IANA time zone ("UTC", "Europe/Berlin"); ValueError in one line otherwise."""
    text = str(name).strip()
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {text!r}: expected an IANA name such as UTC or Europe/Berlin") from None
    return text


def display_zone() -> str:
    """The time zone tables, time windows and charts show times in (UTC unless :func:`set_display_zone` changed it)."""
    return _ZONE[0]


def set_display_zone(name: str) -> str:
    """Show times in ``name`` from now on; the views that registered with :func:`on_zone_change` redraw."""
    _ZONE[0] = zone_name(name)
    alive = [ref for ref in _ZONE_CALLBACKS if ref() is not None]
    _ZONE_CALLBACKS[:] = alive
    for ref in alive:
        ref()()
    return _ZONE[0]


def on_zone_change(method: Callable[[], None]) -> None:
    """Call the bound ``method`` after every change of the display zone (held weakly: views may go away)."""
    _ZONE_CALLBACKS.append(weakref.WeakMethod(method))


def in_zone(stamp: Any, tz: str | None = None) -> pd.Timestamp | None:
    """``stamp`` (UTC when naive) in the display zone (or ``tz``); None stays None."""
    if stamp is None or pd.isna(stamp):
        return None
    value = pd.Timestamp(stamp)
    return (value if value.tzinfo else value.tz_localize("UTC")).tz_convert(tz or display_zone())
