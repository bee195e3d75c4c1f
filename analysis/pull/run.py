"""A pull of message traces from Microsoft Graph into a folder that loads like any export: resumable, incremental.

The folder (``exo-deferrals pull --out DIR``):

- ``messageTraces.jsonl``: one list row per line, as Graph sent it, plus ``_pulledAt``. A row is written again
  only when its status changed (pending -> delivered); the reader keeps the latest.
- ``details.jsonl``: one ``getDetailsByRecipient`` event per line, as sent, plus the recipient and the list
  row's sender, subject, size and status, and ``_of`` (events of that answer) so a half-written answer is seen.
- ``_raw_responses.ndjson``: every answer as received, one per line (Graph's JSON is compact; a line break between
  tokens would be replaced by a space), each after a line ``{"request": n, "kind", "url", "receivedAt"}``.
- ``_pull_report.json``: windows, requests, and every recipient whose details were not fetched, with the reason.
- ``.pull-state.json``: what is done (settled intervals per status, the window in progress and its nextLink, the
  times of recent requests for the shared quota). A killed pull run again continues from there; the JSON Lines
  files are the truth for rows and details, so nothing is written twice whenever the kill came.

API rules followed up front (docs/reference/graph-message-trace.md section 2): windows of at most 10 days, both
bounds in every filter, inside the last 90 days and not in the future; ``$top`` up to 5000; ``@odata.nextLink``
followed whole. Rows arrive late and statuses change [S13], so the last ``reread_hours`` before each listing are
not settled and are read again by the next pull.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import requests

from analysis.pull.auth import SignIn, TokenSource, token_cache_path
from analysis.pull.client import (
    QUOTA_REQUESTS,
    QUOTA_SECONDS,
    GraphClient,
    PullError,
    RequestBudget,
    ThrottledError,
    json_of,
)

GRAPH_URL = "https://graph.microsoft.com/v1.0"
LOGIN_URL = "https://login.microsoftonline.com"
LIST_PATH = "admin/exchange/tracing/messageTraces"
STATUSES = ("gettingStatus", "pending", "failed", "delivered", "expanded", "quarantined", "filteredAsSpam")  # [S2]
MAX_SPAN, RETENTION = timedelta(days=10), timedelta(days=90)  # [S1]
MAX_TOP = 5000  # [S1]
LIST_FILE, DETAILS_FILE, REPORT_FILE, STATE_FILE, RAW_FILE = (
    "messageTraces.jsonl", "details.jsonl", "_pull_report.json", ".pull-state.json", "_raw_responses.ndjson")
ALL = "*"  # the status key of an unfiltered listing
# which recipients' details matter, most informative first: the outcome the admin must explain
DETAIL_CLASSES = {"failed": 0, "pending": 1, "deferred_then_delivered": 2}


def iso(moment: datetime) -> str:
    """A filter bound as Graph documents it: ``YYYY-MM-DDThh:mm:ssZ`` [S1]."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 time (a date alone is midnight; no zone is UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PullError(f"{what} {text!r}: expected an ISO 8601 time such as 2026-11-20 or 2026-11-20T08:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_last(text: str) -> timedelta:
    """``--last``: a number and a unit, ``2d``, ``36h`` or ``90m``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhm])\s*", text.lower())
    if not match:
        raise PullError(f"--last {text!r}: expected a number and a unit such as 2d, 36h or 90m")
    return timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]: float(match.group(1))})


def check_range(start: datetime, end: datetime, now: datetime) -> None:
    """Refuse a window Graph would refuse: end before start, end in the future, start beyond 90 days [S1]."""
    if end <= start:
        raise PullError(f"the window ends ({iso(end)}) before it starts ({iso(start)})")
    if end > now + timedelta(minutes=1):
        raise PullError(f"the window ends in the future ({iso(end)}; now is {iso(now)}): pick an end up to now")
    oldest = now - RETENTION + timedelta(minutes=5)  # a margin: a long pull must not drift past 90 days
    if start < oldest:
        raise PullError(f"the window starts {iso(start)}, beyond the 90 days Graph keeps message traces: start at "
                        f"{iso(oldest)} or later (older mail is only in the EAC's historical search reports)")


def parse_statuses(text: str | None) -> tuple[str, ...]:
    """``--status pending,failed`` as Graph spells the values [S2] (any case); empty: every status."""
    if not text:
        return ()
    by_lower = {s.lower(): s for s in STATUSES}
    chosen = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.lower().replace("_", "") not in by_lower:
            raise PullError(f"--status {part!r}: expected some of {', '.join(STATUSES)}")
        chosen.append(by_lower[part.lower().replace("_", "")])
    return tuple(dict.fromkeys(chosen))


def split_windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end] in windows of at most 10 days; both bounds are inclusive, so neighbours share one second."""
    windows, begin = [], start
    while begin < end:
        windows.append((begin, min(end, begin + MAX_SPAN)))
        begin = windows[-1][1]
    return windows


def gaps(start: datetime, end: datetime, settled: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The parts of [start, end] not inside any ``settled`` interval."""
    found, cursor = [], start
    for low, high in sorted(settled):
        if high <= cursor or low >= end:
            continue
        if low > cursor:
            found.append((cursor, low))
        cursor = max(cursor, high)
    if cursor < end:
        found.append((cursor, end))
    return found


def merged(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching intervals joined."""
    out: list[tuple[datetime, datetime]] = []
    for low, high in sorted(intervals):
        if out and low <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


@dataclass
class Progress:
    """What a pull is doing, for a progress bar: requests used of the quota, the wait, rows and details done."""

    phase: str  # "sign-in", "list", "details", "done"
    used: int
    limit: int
    wait: float = 0.0
    rows: int = 0
    details_done: int = 0
    details_total: int = 0
    message: str = ""


@dataclass
class PullReport:
    """The outcome of one pull (also written to ``_pull_report.json``)."""

    out: str
    start: str
    end: str
    statuses: list[str]
    windows: list[dict] = field(default_factory=list)
    list_requests: int = 0
    detail_requests: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    rows_new: int = 0
    rows_changed: int = 0
    rows_total: int = 0
    details_fetched: int = 0
    details_wanted: int = 0
    not_fetched: list[dict] = field(default_factory=list)
    stopped: str | None = None  # why the pull stopped early (throttling beyond --max-wait)

    def summary(self) -> str:
        lines = [f"pulled {self.start} .. {self.end} into {self.out}: {self.rows_new} new rows, "
                 f"{self.rows_changed} with a new status, {self.rows_total} in the folder",
                 f"requests: {self.list_requests} list + {self.detail_requests} details "
                 f"({self.retries} retried, {self.waited_seconds:.1f} s waited for the quota)",
                 f"details: {self.details_fetched} fetched this run; {len(self.not_fetched)} of the "
                 f"{self.details_wanted} recipients that matter not fetched (listed in {REPORT_FILE})"]
        reasons: dict[str, int] = {}
        for item in self.not_fetched:
            reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
        lines += [f"  {count} not fetched: {reason}" for reason, count in reasons.items()]
        if self.stopped:
            lines.append(f"stopped early: {self.stopped}")
        return "\n".join(lines)


class Folder:
    """The output folder: rows and details written so far (read back on start), the state, the raw answers."""

    def __init__(self, out: Path, tenant: str):
        self.out = out
        self.state_path = out / STATE_FILE
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.state: dict = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        except OSError as exc:
            raise PullError(f"{out}: cannot use the folder ({exc.strerror or exc})") from None
        except ValueError:
            raise PullError(f"{self.state_path} is damaged: delete it to list again from the start (the rows and "
                            "details already pulled are kept, nothing is written twice)") from None
        if self.state.get("tenant", tenant).lower() != tenant.lower():
            raise PullError(f"{out} holds a pull of the tenant {self.state['tenant']}: use another --out folder")
        self.state.setdefault("tenant", tenant)
        self.state.setdefault("settled", {})
        self.state.setdefault("empty_details", [])
        self.state.setdefault("raw_seq", 0)
        self.rows: dict[tuple[str, str], dict] = {}  # (trace id, recipient) -> latest row
        self.ever_pending: set[tuple[str, str]] = set()
        for row in self._read_lines(out / LIST_FILE):
            key = row_key(row)
            self.rows[key] = row
            if str(row.get("status", "")).lower() == "pending":
                self.ever_pending.add(key)
        self.fetched: dict[tuple[str, str], str] = {}  # key -> list status when its details were fetched
        self._load_details()
        for entry in self.state["empty_details"]:
            self.fetched[(entry[0], entry[1])] = entry[2]

    @staticmethod
    def _read_lines(path: Path) -> list[dict]:
        """The JSON lines of ``path``; a last line cut off by a kill is removed from the file."""
        if not path.exists():
            return []
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(path, "r+b") as handle:
                handle.truncate(len(complete))
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def _load_details(self) -> None:
        lines = self._read_lines(self.out / DETAILS_FILE)
        counts: dict[tuple[str, str], list[int]] = {}  # key -> [lines seen, lines the answer had]
        for line in lines:
            seen = counts.setdefault(row_key(line), [0, int(line.get("_of", 1))])
            seen[0] += 1
        if any(seen != of for seen, of in counts.values()):  # an answer cut off by a kill: fetched again
            lines = [x for x in lines if counts[row_key(x)][0] == counts[row_key(x)][1]]
            self._rewrite(self.out / DETAILS_FILE, lines)
        for line in lines:
            self.fetched[row_key(line)] = str(line.get("status", ""))

    @staticmethod
    def _rewrite(path: Path, lines: list[dict]) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
        os.replace(temporary, path)

    def raw(self, kind: str, url: str, body: bytes) -> None:
        """Keep an answer as received (after a line saying which request it answered)."""
        self.state["raw_seq"] += 1
        about = {"request": self.state["raw_seq"], "kind": kind, "url": url, "receivedAt": iso(datetime.now(UTC))}
        with open(self.out / RAW_FILE, "ab") as handle:
            handle.write(json.dumps(about).encode() + b"\n" + body.replace(b"\n", b" ").rstrip() + b"\n")

    def add_rows(self, rows: list[dict], pulled_at: str) -> tuple[int, int]:
        """Append the rows that are new or changed status; (new, changed)."""
        new = changed = 0
        lines = []
        for row in rows:
            key = row_key(row)
            known = self.rows.get(key)
            if known is not None and known.get("status") == row.get("status"):
                continue
            if known is None:
                new += 1
            else:
                changed += 1
            row = {**row, "_pulledAt": pulled_at}
            self.rows[key] = row
            if str(row.get("status", "")).lower() == "pending":
                self.ever_pending.add(key)
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        self._append(LIST_FILE, lines)
        return new, changed

    def add_details(self, key: tuple[str, str], events: list[dict], fetched_at: str) -> None:
        """Append one answer's events (with the list row's facts), or note an empty answer in the state."""
        row = self.rows[key]
        status = str(row.get("status", ""))
        if not events:
            self.state["empty_details"].append([key[0], key[1], status])
        context = {"recipientAddress": row.get("recipientAddress"), "senderAddress": row.get("senderAddress"),
                   "subject": row.get("subject"), "size": row.get("size"), "status": status,
                   "_fetchedAt": fetched_at, "_of": len(events)}
        self._append(DETAILS_FILE, [json.dumps({**event, **context}, ensure_ascii=False) + "\n" for event in events])
        self.fetched[key] = status

    def _append(self, name: str, lines: list[str]) -> None:
        if lines:  # one write: a kill leaves whole answers or a cut last line, which the next start removes
            with open(self.out / name, "a", encoding="utf-8") as handle:
                handle.write("".join(lines))

    def save(self, budget: RequestBudget | None = None) -> None:
        if budget is not None:
            self.state["sent"] = list(budget.sent)
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.state))
        os.replace(temporary, self.state_path)

    def settled(self, status: str) -> list[tuple[datetime, datetime]]:
        spans = self.state["settled"].get(status, []) + (self.state["settled"].get(ALL, []) if status != ALL else [])
        return [(parse_time(a, "state"), parse_time(b, "state")) for a, b in spans]

    def settle(self, status: str, low: datetime, high: datetime) -> None:
        own = [(parse_time(a, "state"), parse_time(b, "state")) for a, b in self.state["settled"].get(status, [])]
        self.state["settled"][status] = [[iso(a), iso(b)] for a, b in merged([*own, (low, high)])]


def row_key(row: dict) -> tuple[str, str]:
    """A list row is one message x recipient: the trace id repeats across recipients [S3][S8]."""
    return str(row.get("id", "")).lower(), str(row.get("recipientAddress", "")).lower()


def session_for(ca_bundle: str | None) -> requests.Session:
    """A requests session that ignores REQUESTS_CA_BUNDLE & co. and trusts ``ca_bundle`` when given [S24]."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle if ca_bundle else True
    return session


def pull(sign_in: SignIn, out: str | os.PathLike[str], *, start: datetime, end: datetime,
         statuses: tuple[str, ...] = (), details: str = "auto", graph_url: str = GRAPH_URL,
         login_url: str = LOGIN_URL, ca_bundle: str | None = None, token_cache: bool = True,
         page_size: int = MAX_TOP, max_requests: int | None = None, max_wait: float = 900.0,
         reread_hours: float = 6.0, quota: tuple[int, float] = (QUOTA_REQUESTS, QUOTA_SECONDS),
         timeout: float = 60.0, backoff: float = 1.0, progress: Callable[[Progress], None] | None = None,
         prompt: Callable[[str], None] = print, now: datetime | None = None) -> PullReport:
    """Pull the message traces of ``[start, end]`` (and details per ``details``: auto, all, none) into ``out``.

    ``max_requests`` caps the requests of this run (list first, then details, most informative first);
    ``max_wait`` is the longest wait for the quota accepted before stopping with :class:`ThrottledError`
    (what was done is kept; run again to continue). ``quota`` is Graph's (100 per 300 s).
    """
    now = now or datetime.now(UTC)
    check_range(start, end, now)
    if details not in ("auto", "all", "none"):
        raise PullError(f"--details {details!r}: expected auto, all or none")
    if not 1 <= page_size <= MAX_TOP:
        raise PullError(f"page size {page_size}: Graph returns 1 to {MAX_TOP} rows per page")
    folder = Folder(Path(out), sign_in.tenant)
    session = session_for(ca_bundle)
    report = PullReport(str(out), iso(start), iso(end), list(statuses))
    budget = RequestBudget(*quota, sent=folder.state.get("sent", []), max_wait=max_wait)
    shown = Progress("sign-in", budget.used, quota[0])

    def tell(**changes: object) -> None:
        for name, value in changes.items():
            setattr(shown, name, value)
        shown.used = budget.used
        if progress:
            progress(shown)

    budget.on_wait = lambda seconds: tell(wait=seconds, message=f"waiting {seconds:.1f} s for Graph's quota")
    cache = token_cache_path(sign_in.tenant, sign_in.client_id) if token_cache else None
    tell()
    token = TokenSource(sign_in, login_url=login_url, graph_url=graph_url, session=session, cache_path=cache,
                        prompt=prompt)
    client = GraphClient(graph_url, token, budget, session, timeout=timeout, backoff=backoff,
                         on_request=lambda: tell(wait=0.0))
    try:
        try:
            if _list(client, folder, report, start, end, statuses, page_size, max_requests, reread_hours, tell):
                _details(client, folder, report, details, max_requests, tell)
            else:
                _details_not_fetched(folder, report, details, f"not reached: {report.stopped}")
        except ThrottledError as exc:
            report.stopped = str(exc)
            _details_not_fetched(folder, report, details, f"not reached: {exc}")
            raise
    finally:
        folder.save(budget)
        report.list_requests, report.detail_requests = client.counts.list, client.counts.details
        report.retries, report.waited_seconds = client.counts.retries, round(budget.waited, 3)
        report.rows_total = len(folder.rows)
        (Path(out) / REPORT_FILE).write_text(json.dumps(report.__dict__, indent=1, ensure_ascii=False))
        tell(phase="done", wait=0.0, message="done" if report.stopped is None else "stopped")
    return report


def _list(client: GraphClient, folder: Folder, report: PullReport, start: datetime, end: datetime,
          statuses: tuple[str, ...], page_size: int, max_requests: int | None, reread_hours: float,
          tell: Callable[..., None]) -> bool:
    """List every window not yet settled; False when ``max_requests`` stopped it (``report.stopped`` says so)."""
    reread = timedelta(hours=reread_hours)
    for status in statuses or (ALL,):
        todo = [w for gap in gaps(start, end, folder.settled(status)) for w in split_windows(*gap)]
        current = folder.state.get("current")
        resume = None
        if current and current["status"] == status:
            low, high = parse_time(current["window"][0], "state"), parse_time(current["window"][1], "state")
            if low < end and high > start:
                resume = (low, high)
                todo = [resume] + [w for gap in gaps(start, end, [*folder.settled(status), resume])
                                   for w in split_windows(*gap)]
        for low, high in todo:
            query = f"receivedDateTime ge {iso(low)} and receivedDateTime le {iso(high)}"
            if status != ALL:
                query += f" and status eq '{status}'"
            link = current["next"] if resume == (low, high) and current and current.get("next") else None
            params = None if link else {"$filter": query, "$top": str(page_size)}
            url = link or LIST_PATH
            listed_at = datetime.now(UTC)
            pages = 0
            while url:
                if max_requests is not None and client.counts.list + client.counts.details >= max_requests:
                    report.stopped = f"--max-requests {max_requests} reached while listing: run again to continue"
                    return False
                response = client.get(url, kind="list", what=f"the list of {iso(low)} .. {iso(high)}", params=params)
                body = json_of(response, "the list")
                folder.raw("list", response.url, response.content)
                new, changed = folder.add_rows(body["value"], iso(datetime.now(UTC)))
                report.rows_new += new
                report.rows_changed += changed
                url, params, pages = body.get("@odata.nextLink"), None, pages + 1
                folder.state["current"] = {"status": status, "window": [iso(low), iso(high)], "next": url}
                folder.save(client.budget)
                tell(phase="list", rows=len(folder.rows), message=f"listed {iso(low)} .. {iso(high)}, page {pages}")
            settled_until = min(high, listed_at - reread)
            if settled_until > low:
                folder.settle(status, low, settled_until)
            folder.state["current"] = None
            folder.save(client.budget)
            report.windows.append({"status": status, "start": iso(low), "end": iso(high), "pages": pages})
            resume = None
    return True


def wanted_details(folder: Folder, mode: str) -> list[tuple[tuple[str, str], str]]:
    """(key, class) of the recipients whose details to fetch, most informative first.

    Classes: failed, pending (still deferred), deferred_then_delivered (seen pending by an earlier pull), and
    with ``all`` every other row. Order: a round over recipient domains (each domain's most informative row
    first, so one busy domain does not take the whole budget), then class, then the oldest first.
    """
    if mode == "none":
        return []
    picked = []
    for key, row in folder.rows.items():
        status = str(row.get("status", "")).lower()
        kind = ("deferred_then_delivered" if status == "delivered" and key in folder.ever_pending
                else status if status in DETAIL_CLASSES else "other")
        if kind == "other" and mode != "all":
            continue
        picked.append((DETAIL_CLASSES.get(kind, 3), str(row.get("receivedDateTime", "")), key, kind))
    picked.sort()
    rounds: dict[str, int] = {}
    ranked = []
    for rank, received, key, kind in picked:
        domain = key[1].rpartition("@")[2]
        rounds[domain] = rounds.get(domain, 0) + 1
        ranked.append((rounds[domain], rank, received, key, kind))
    ranked.sort()
    return [(key, kind) for _, _, _, key, kind in ranked]


def _details(client: GraphClient, folder: Folder, report: PullReport, mode: str, max_requests: int | None,
             tell: Callable[..., None]) -> None:
    wanted = wanted_details(folder, "auto" if mode == "none" else mode)
    report.details_wanted = len(wanted)
    todo = [(key, kind) for key, kind in wanted if folder.fetched.get(key) != str(folder.rows[key].get("status"))]
    if mode == "none":
        report.not_fetched = [_missing(folder, key, kind, "--details none") for key, kind in todo]
        return
    for number, (key, kind) in enumerate(todo):
        if max_requests is not None and client.counts.list + client.counts.details >= max_requests:
            reason = f"over --max-requests {max_requests} for this run: run again to fetch more"
            report.not_fetched += [_missing(folder, k, c, reason) for k, c in todo[number:]]
            return
        trace_id, recipient = key
        row = folder.rows[key]
        address = str(row.get("recipientAddress") or recipient).replace("'", "''")
        url = (f"{LIST_PATH}/{quote(str(row.get('id') or trace_id), safe='')}/getDetailsByRecipient("
               f"recipientAddress='{quote(address, safe='@')}')")
        try:
            response = client.get(url, kind="details", what=f"the details of {recipient}")
        except ThrottledError:
            report.not_fetched += [_missing(folder, k, c, "Graph's quota asked for a wait over --max-wait")
                                   for k, c in todo[number:]]
            raise
        except PullError as exc:
            if "404" not in str(exc):
                raise
            report.not_fetched.append(_missing(folder, key, kind, str(exc)))
            continue
        body = json_of(response, "the details")
        folder.raw("details", response.url, response.content)
        folder.add_details(key, body["value"], iso(datetime.now(UTC)))
        report.details_fetched += 1
        folder.save(client.budget)
        tell(phase="details", details_done=number + 1, details_total=len(todo),
             message=f"details {number + 1} of {len(todo)}")


def _details_not_fetched(folder: Folder, report: PullReport, mode: str, reason: str) -> None:
    """When listing stopped early: every recipient that matters and has no details yet."""
    if report.not_fetched:
        return
    wanted = wanted_details(folder, "auto" if mode == "none" else mode)
    report.details_wanted = len(wanted)
    report.not_fetched = [_missing(folder, key, kind, reason) for key, kind in wanted
                          if folder.fetched.get(key) != str(folder.rows[key].get("status"))]


def _missing(folder: Folder, key: tuple[str, str], kind: str, reason: str) -> dict:
    row = folder.rows[key]
    return {"traceId": row.get("id"), "recipientAddress": row.get("recipientAddress"),
            "status": row.get("status"), "class": kind, "receivedDateTime": row.get("receivedDateTime"),
            "reason": reason}
