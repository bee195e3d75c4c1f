"""HTTP to Microsoft Graph's message-trace API, inside its published limits.

The contract (docs/reference/graph-message-trace.md, sections 2 and 5): one quota of 100 requests per rolling
5 minutes per tenant, shared by the list and the details calls [S1][S3][S6]; 429 and 503 carry ``Retry-After``,
possibly fractional (``2.128``) [S16]; errors come in ``{"error": {"code", "message", ...}}`` [S18].

Every request goes through one :class:`RequestBudget`, which waits *before* sending when the rolling window is
full, so the quota is respected up front instead of being discovered by 429s. Retries are a small loop in
:meth:`GraphClient.get` rather than urllib3's ``Retry``: a wait must be charged to the shared budget, shown on the
progress bar and refused when it is longer than the caller accepts (``max_wait``), which ``Retry`` cannot do.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import requests

from analysis.core.errors import ExoDeferralsError

QUOTA_REQUESTS, QUOTA_SECONDS = 100, 300.0  # per tenant, list and details together [S1][S3][S6]
TRANSIENT = (429, 503, 504)  # retried: throttled, unavailable, gateway timeout [S16][S18]
TRACE_APP_ID = "8bd644d1-64a1-4d4b-ae52-2e0cbf64e373"  # Microsoft's message-trace app ("Transport Data Platform") [S10]
PERMISSION = "ExchangeMessageTrace.Read.All"  # [S1][S3]

# what an admin runs when Graph says the message-trace app has no service principal in the tenant [S7][S10]
PROVISION_HINT = (
    f"Microsoft's message-trace app ({TRACE_APP_ID}) has no service principal in your tenant yet. Create it once "
    f"with `New-MgServicePrincipal -AppId {TRACE_APP_ID}` (Microsoft Graph PowerShell, scope "
    "Application.ReadWrite.All) or POST /v1.0/servicePrincipals {\"appId\": \"" + TRACE_APP_ID + "\"}; "
    "provisioning can take several hours, during which Graph keeps answering 401 (docs/graph.md)"
)
CONSENT_HINT = (
    f"the app (or the signed-in user) lacks the permission {PERMISSION} or an admin has not granted consent: in "
    f"Entra ID > App registrations > API permissions add Microsoft Graph > {PERMISSION} (Application for a secret "
    "or certificate, Delegated for --device-code) and press 'Grant admin consent'; a delegated user must also be "
    "an Exchange admin (docs/graph.md)"
)


class PullError(ExoDeferralsError):
    """A pull cannot go on: the message is one plain line that says what to do (never a secret)."""


class ThrottledError(PullError):
    """Graph's quota asks for a longer wait than the caller accepts; ``wait`` seconds, ``until`` (UTC)."""

    def __init__(self, wait: float, why: str):
        self.wait = wait
        self.until = datetime.now(UTC) + timedelta(seconds=wait)
        super().__init__(
            f"{why}: Graph's quota of {QUOTA_REQUESTS} requests per {QUOTA_SECONDS / 60:.0f} minutes (shared by "
            f"every app of the tenant) needs a wait of {wait:.0f} s. Run the same command again after "
            f"{self.until:%H:%M:%S} UTC (or raise --max-wait); the pull resumes where it stopped")


class RequestBudget:
    """At most ``limit`` requests in any ``period`` seconds, plus blocks asked for by ``Retry-After``.

    ``sent`` (epoch seconds of earlier requests, e.g. from a killed run's state) is counted too, so a resumed
    pull does not exceed the quota its predecessor already used. ``on_wait(seconds)`` is told before each wait.
    """

    def __init__(self, limit: int = QUOTA_REQUESTS, period: float = QUOTA_SECONDS, *, sent: Iterable[float] = (),
                 max_wait: float = 900.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, on_wait: Callable[[float], None] | None = None):
        self.limit, self.period, self.max_wait = limit, period, max_wait
        self.clock, self.sleep, self.on_wait = clock, sleep, on_wait
        self.sent: deque[float] = deque(sorted(sent))
        self.blocked_until = 0.0
        self.waited = 0.0

    def _prune(self, now: float) -> None:
        while self.sent and self.sent[0] <= now - self.period:
            self.sent.popleft()

    @property
    def used(self) -> int:
        """Requests sent in the current rolling window."""
        self._prune(self.clock())
        return len(self.sent)

    def wait_time(self) -> float:
        """Seconds until the next request may be sent."""
        now = self.clock()
        self._prune(now)
        # a margin of 0.5 % of the period: Graph counts a request when it arrives, a little after it was sent
        full = (self.sent[len(self.sent) - self.limit] + self.period * 1.005 - now
                if len(self.sent) >= self.limit else 0.0)
        return max(0.0, full, self.blocked_until - now)

    def block(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a ``Retry-After``)."""
        self.blocked_until = max(self.blocked_until, self.clock() + seconds)

    def acquire(self, why: str = "the request budget is spent") -> None:
        """Wait until a request may be sent and count it; :class:`ThrottledError` if that is over ``max_wait``."""
        wait = self.wait_time()
        if wait > self.max_wait:
            raise ThrottledError(wait, why)
        if wait > 0:
            if self.on_wait:
                self.on_wait(wait)
            self.sleep(wait)
            self.waited += wait
        self.sent.append(self.clock())


def retry_after(response: requests.Response) -> float | None:
    """Seconds asked for by ``Retry-After`` (fractional allowed [S16]; an HTTP date too), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def error_of(response: requests.Response) -> tuple[str, str]:
    """(code, message) of a Graph error envelope [S18], as one short line each."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return "", " ".join(response.text.split())[:300]
    if not isinstance(error, dict):
        return "", str(error)[:300]
    return str(error.get("code", "")), " ".join(str(error.get("message", "")).split())[:300]


def plain_error(response: requests.Response, what: str) -> PullError:
    """The one-line error an admin reads for a Graph answer that is not a success and not worth retrying."""
    code, message = error_of(response)
    said = f"{response.status_code} {code}: {message}".strip().rstrip(":")
    if response.status_code == 401 and "service principal" in message.lower():
        return PullError(f"Graph refused {what} (401: service principal not found). {PROVISION_HINT}")
    if response.status_code == 401:
        return PullError(f"Graph refused the token for {what} ({said}): check --tenant, --client-id and that the "
                         "app is registered in that tenant")
    if response.status_code == 403:
        return PullError(f"Graph answered 403 Forbidden for {what} ({message or code}): {CONSENT_HINT}")
    if response.status_code == 400:
        return PullError(f"Graph rejected {what} as a bad request ({said})")
    return PullError(f"Graph answered {said} for {what}")


@dataclass
class Counts:
    """What the client did: requests sent by kind, retries, seconds waited for the quota."""

    list: int = 0
    details: int = 0
    retries: int = 0


class GraphClient:
    """GET requests to Graph with a bearer token, one shared :class:`RequestBudget`, retries and plain errors.

    ``token(refresh)`` returns an access token (a fresh one when ``refresh``); it is sent only to ``base_url``'s
    host: a ``@odata.nextLink`` to another host is refused.
    """

    def __init__(self, base_url: str, token: Callable[[bool], str], budget: RequestBudget,
                 session: requests.Session, *, timeout: float = 60.0, retries: int = 5, backoff: float = 1.0,
                 on_request: Callable[[], None] | None = None):
        self.base_url = base_url.rstrip("/")
        self.origin = urlsplit(self.base_url)[:2]
        self.token, self.budget, self.session = token, budget, session
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.on_request = on_request
        self.counts = Counts()

    def get(self, url: str, *, kind: str, what: str, params: dict[str, str] | None = None) -> requests.Response:
        """GET ``url`` (absolute, or relative to ``base_url``); retry 429/503/504 and timeouts; raise PullError."""
        if not url.startswith("https://") and not url.startswith("http://"):
            url = f"{self.base_url}/{url.lstrip('/')}"
        if urlsplit(url)[:2] != self.origin:
            raise PullError(f"Graph sent a link to another host ({urlsplit(url).netloc}) for {what}: not followed")
        refreshed = False
        for attempt in range(self.retries + 1):
            self.budget.acquire(f"throttled while reading {what}")
            setattr(self.counts, kind, getattr(self.counts, kind) + 1)
            if self.on_request:
                self.on_request()
            headers = {"Authorization": f"Bearer {self.token(False)}", "client-request-id": str(uuid.uuid4()),
                       "Accept": "application/json"}
            try:
                response = self.session.get(url, params=params, headers=headers, timeout=self.timeout)
            except (requests.Timeout, requests.ConnectionError) as exc:
                if attempt == self.retries:
                    raise PullError(f"Graph did not answer {what} after {attempt + 1} tries "
                                    f"({type(exc).__name__}); check the network and run again") from None
                self._pause(self.backoff * 2 ** attempt)
                self.counts.retries += 1
                continue
            if response.status_code == 200:
                return response
            no_principal = "service principal" in error_of(response)[1].lower()
            if response.status_code == 401 and not refreshed and not no_principal:
                refreshed = True  # an expired token: one new token, one more try
                self.token(True)
                continue
            if response.status_code in TRANSIENT and attempt < self.retries:
                wait = retry_after(response)
                wait = self.backoff * 2 ** attempt if wait is None else wait
                if response.status_code == 429:
                    self.budget.block(wait)  # the quota is shared: nothing else goes out meanwhile
                    if wait > self.budget.max_wait:
                        raise ThrottledError(wait, f"Graph throttled {what} (429)")
                else:
                    self._pause(wait)
                self.counts.retries += 1
                continue
            if response.status_code == 429:
                raise ThrottledError(retry_after(response) or self.budget.period, f"Graph kept throttling {what}")
            raise plain_error(response, what)
        raise PullError(f"Graph did not answer {what} after {self.retries + 1} tries")  # pragma: no cover

    def _pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a back-off before retrying)."""
        if seconds > self.budget.max_wait:
            raise ThrottledError(seconds, "Graph asked for a long pause")
        self.budget.block(seconds)


def json_of(response: requests.Response, what: str) -> dict:
    """The JSON object of a Graph answer, or a PullError naming what was expected."""
    try:
        body = response.json()
    except ValueError:
        raise PullError(f"Graph's answer to {what} is not JSON: {response.text[:80]!r}") from None
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise PullError(f"Graph's answer to {what} has no 'value' list: {json.dumps(body)[:120]}")
    return body
