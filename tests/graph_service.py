"""A loopback stand-in for the Microsoft identity platform and Graph's message-trace API, over real HTTPS.

What it answers, and why that way (docs/reference/graph-message-trace.md, "[Sx]" = its sources):

- identity platform: ``{tenant}/v2.0/.well-known/openid-configuration`` (what MSAL reads, section 7), the token
  endpoint (client secret checked; a certificate assertion's signature checked against the registered
  certificate, its ``aud``/``iss``/``sub``/``exp`` and ``x5t``/``x5t#S256``; the device-code grant), and the
  device-authorization endpoint. Errors are Entra's ``{"error", "error_description": "AADSTSnnn: ..."}``.
- Graph: the list (``$filter`` with both ``receivedDateTime`` bounds, at most 10 days, inside 90 days, not in the
  future; ``$top`` 1..5000; only ``$filter``/``$top``/``$skiptoken``; newest first; ``@odata.nextLink`` keeping
  the query) [S1] and ``getDetailsByRecipient`` [S3]; one quota per tenant for both, answered with 429 and a
  fractional ``Retry-After`` [S16]; 401 with the documented missing-service-principal message [S10]; 403; faults
  on demand (``fail``). The error text of a bad query is undocumented, so ours is our own.
- a test CA and a server certificate for 127.0.0.1 made here with ``cryptography``.

Time: ``time_scale`` shortens the quota window (300 s / scale) and every ``Retry-After`` by the same factor, so a
test of throttling takes seconds; "now" for the 90-day and future checks is the real clock plus ``offset``.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

UTC = dt.UTC
TRACE_APP_ID = "8bd644d1-64a1-4d4b-ae52-2e0cbf64e373"
PERMISSION = "ExchangeMessageTrace.Read.All"
# [S10], as observed by office365itpros (2026-01-27)
NO_SERVICE_PRINCIPAL = (
    f"Service principal-less Authentication failed: the service principal for App ID {TRACE_APP_ID} was not found. "
    "Please create a service principal for this app in your tenant. Provisioning may take several hours to "
    "complete. Please try again later.")

# Defer / Fail Detail texts seen in real traces (docs/reference/exchange-formats.md, "Detail text": Microsoft
# Q&A 2149611, the Tech Community TLS blog 4420592, Q&A 1377740); the Graph description is assumed to carry the
# same text (the reference's "Uncertain" section)
DEFER_TEXTS = (
    "Reason: [{LED=451-4.7.23 Message deferred - unable to verify SPF policy for 451 4.7.23 chromaderm.com.au. "
    "IB305 i{2b0c499b-c839-43d2-9c76-dda19649fe67}};{MSG=};{FQDN=extmail.bigpond.com};{IP=203.42.22.10};"
    "{LRT=1/21/2025 3:45:12 AM}]. OutboundProxyTargetIP: 203.42.22.10. OutboundProxyTargetHostName: "
    "extmail.bigpond.com",
    "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send "
    "mail] [LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=72.14.1.9:25]};{MSG=};{FQDN=};{IP=};{LRT=}]",
    "Reason: [{LED=450 4.4.316 Connection refused [Message=Socket error code 10061]};{MSG=};{FQDN=};{IP=};{LRT=}]",
)
FAIL_TEXT = ("Reason: [{LED=550 5.4.317 Message expired, cannot connect to remote server(451 5.7.3 STARTTLS is "
             "required to send mail)};{MSG=};{FQDN=};{IP=};{LRT=}]")


# ---------------------------------------------------------------- certificates

def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name("exo-deferrals test CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem(key))
    return paths


@dataclass
class ClientCertificate:
    """A self-signed app certificate: the PEM (key + certificate), its SHA-1 thumbprint and public key."""

    pem: Path
    key_only: Path
    thumbprint: str
    sha256: str
    certificate: x509.Certificate


def make_client_certificate(folder: Path, name: str = "app") -> ClientCertificate:
    now = dt.datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    pem, key_only = folder / f"{name}.pem", folder / f"{name}.key.pem"
    pem.write_bytes(_pem(key) + cert.public_bytes(serialization.Encoding.PEM))
    key_only.write_bytes(_pem(key))
    return ClientCertificate(pem, key_only, cert.fingerprint(hashes.SHA1()).hex(),
                             cert.fingerprint(hashes.SHA256()).hex(), cert)


# ---------------------------------------------------------------- data

def make_traces(count: int, *, days: float, now: dt.datetime, seed: int = 7, domains: int = 40) -> list[dict]:
    """``count`` list rows in the documented shape [S1], spread over the last ``days``; ~1.25 recipients per
    message (the trace id repeats per recipient [S8]); statuses mostly delivered, some pending/failed/others."""
    rng = np.random.default_rng(seed)
    statuses = np.array(["delivered", "pending", "failed", "expanded", "quarantined", "filteredAsSpam",
                         "gettingStatus"])
    weights = np.array([0.84, 0.07, 0.04, 0.02, 0.01, 0.01, 0.01])
    seconds = np.sort(rng.uniform(60, days * 86400 - 60, count))[::-1]
    rows, index = [], 0
    while index < count:
        recipients = min(count - index, 1 + int(rng.random() < 0.2))
        trace = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | index))
        when = now - dt.timedelta(seconds=float(seconds[index]))
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
        for r in range(recipients):
            domain = f"partner{int(rng.integers(0, domains))}.example"
            rows.append({
                "id": trace, "senderAddress": f"user{index % 97}@contoso.com",
                "recipientAddress": f"rcpt{index}-{r}@{domain}", "messageId": f"<{trace}@contoso.com>",
                "receivedDateTime": stamp, "subject": f"Order {index}", "size": int(rng.integers(2_000, 900_000)),
                "fromIP": "192.168.1.100", "toIP": f"203.0.113.{index % 250}",
                "status": str(rng.choice(statuses, p=weights)),
            })
            index += 1
    return rows


def details_for(row: dict) -> list[dict]:
    """The events of one message + recipient in the documented shape [S3][S4], by the row's status."""
    base = dt.datetime.fromisoformat(row["receivedDateTime"].replace("Z", "+00:00"))

    def event(offset: int, name: str, description: str) -> dict:
        return {"id": row["id"], "messageId": row["messageId"], "event": name, "action": "",
                "dateTime": (base + dt.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "description": description, "data": '<root><MEP Name="ServerHostName" String="MN2PR00MB0670" /></root>'}

    events = [event(0, "Receive", "Message received by: MN2PR00MB0670.namprd00.prod.outlook.com"),
              event(2, "Submit", "The message was submitted.")]
    status = row["status"]
    defer = DEFER_TEXTS[sum(map(ord, row["recipientAddress"])) % len(DEFER_TEXTS)]
    if status in ("pending", "failed"):
        events += [event(60 * (n + 1), "Defer", defer) for n in range(2)]
    if status == "failed":
        events.append(event(86400, "Fail", FAIL_TEXT))
    if status == "delivered":
        events.append(event(5, "Deliver", "The message was successfully delivered."))
    return events


# ---------------------------------------------------------------- the service

@dataclass
class App:
    client_id: str
    secret: str | None = None
    certificate: x509.Certificate | None = None
    roles: tuple[str, ...] = (PERMISSION,)


@dataclass
class Fault:
    kind: str  # "list", "details", "token", "any"
    status: int
    times: int = 1
    retry_after: str | None = None
    body: dict | None = None
    stall: float = 0.0  # seconds to sleep, then answer normally (a client time-out)


@dataclass
class GraphService:
    """The loopback service. Start with ``with GraphService(tmp_path, traces) as service:``."""

    folder: Path
    traces: list[dict]
    tenant: str = "contoso.onmicrosoft.com"
    quota: tuple[int, float] = (100, 300.0)
    time_scale: float = 1.0
    offset: float = 0.0
    service_principal: bool = True
    apps: dict[str, App] = field(default_factory=dict)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    delay: float = 0.0  # seconds added to every Graph answer (a kill test needs time to land)

    def __post_init__(self) -> None:
        self.ca, cert, key = make_tls(self.folder)
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()
        self.tokens: dict[str, dict] = {}
        self.assertions: list[str] = []  # client assertions received (a test looks for them where they must not be)
        self.device: dict[str, dict] = {}
        self.reindex()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        service = self

        class Handler(_Handler):
            owner = service

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GraphService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def login_url(self) -> str:
        return f"{self.base}/login"

    @property
    def graph_url(self) -> str:
        return f"{self.base}/v1.0"

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC) + dt.timedelta(seconds=self.offset)

    def reindex(self) -> None:
        """Sort the rows newest first (as Graph returns them [S11][S13]) after changing ``traces``."""
        self.traces.sort(key=lambda r: r["receivedDateTime"], reverse=True)
        self._times = [_when(r["receivedDateTime"]) for r in reversed(self.traces)]  # ascending, for bisect
        self._by_key = {(r["id"], r["recipientAddress"].lower()): r for r in self.traces}

    def fail(self, kind: str, status: int, *, times: int = 1, retry_after: str | None = None,
             body: dict | None = None, stall: float = 0.0) -> None:
        self.faults.append(Fault(kind, status, times, retry_after, body, stall))

    def approve(self, user_code: str) -> None:
        """The admin signs in at the verification page with ``user_code``."""
        for flow in self.device.values():
            if flow["user_code"] == user_code:
                flow["approved"] = True

    def count(self, kind: str) -> int:
        return sum(1 for k, _, status in self.log if k == kind)

    # -- quota (shared by list and details) [S1][S3][S6]
    def spend(self) -> float | None:
        """Count a Graph request, or return the seconds to wait when the quota is used up."""
        limit, period = self.quota[0], self.quota[1] / self.time_scale
        with self._lock:
            now = time.monotonic()
            while self._sent and self._sent[0] <= now - period:
                self._sent.popleft()
            if len(self._sent) >= limit:
                return self._sent[0] + period - now
            self._sent.append(now)
            return None

    def use_quota(self, requests: int) -> None:
        """Another app of the tenant spends ``requests`` of the quota now."""
        with self._lock:
            self._sent.extend([time.monotonic()] * requests)

    def take_fault(self, kind: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.kind in (kind, "any") and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def rows_between(self, low: dt.datetime, high: dt.datetime) -> list[dict]:
        n = len(self._times)
        first, last = bisect_left(self._times, low), bisect_right(self._times, high)
        return self.traces[n - last:n - first]


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


FILTER = re.compile(r"^receivedDateTime ge (\S+) and receivedDateTime le (\S+)(?: and status eq '(\w+)')?$")
DETAILS = re.compile(r"^/v1\.0/admin/exchange/tracing/messageTraces/([^/]+)/getDetailsByRecipient\("
                     r"recipientAddress='(.*)'\)$")
STATUSES = ("gettingStatus", "pending", "failed", "delivered", "expanded", "quarantined", "filteredAsSpam")


class _Handler(BaseHTTPRequestHandler):
    owner: GraphService
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall per answer

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict | bytes, headers: dict[str, str] | None = None, kind: str = "") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.owner.log.append((kind, self.path, status))

    def _graph_error(self, status: int, code: str, message: str, kind: str, headers: dict | None = None) -> None:
        inner = {"date": dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": secrets.token_hex(8),
                 "client-request-id": self.headers.get("client-request-id", "")}
        self._send(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers, kind)

    def _entra_error(self, status: int, error: str, description: str) -> None:
        self._send(status, {"error": error, "error_description": description,
                            "error_codes": [int(re.search(r"AADSTS(\d+)", description).group(1))]}, kind="token")

    # ------------------------------------------------------------ identity platform
    def do_POST(self) -> None:
        owner = self.owner
        length = int(self.headers.get("Content-Length", 0))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        match = re.match(r"^/login/([^/]+)/oauth2/v2\.0/(token|devicecode)$", urlsplit(self.path).path)
        if not match:
            return self._send(404, {"error": "not_found"}, kind="token")
        tenant, what = match.groups()
        if tenant.lower() != owner.tenant:
            return self._entra_error(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found. Check to "
                                                             "make sure you have the correct tenant ID.")
        app = owner.apps.get(form.get("client_id", ""))
        if app is None:
            return self._entra_error(400, "unauthorized_client",
                                     f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not "
                                     f"found in the directory '{tenant}'.")
        if what == "devicecode":
            code = secrets.token_urlsafe(24)
            user_code = secrets.token_hex(4).upper()
            owner.device[code] = {"user_code": user_code, "approved": False, "app": app, "scope": form.get("scope")}
            return self._send(200, {
                "device_code": code, "user_code": user_code, "verification_uri": f"{owner.base}/devicelogin",
                "expires_in": 900, "interval": 1,
                "message": f"To sign in, use a web browser to open the page {owner.base}/devicelogin and enter the "
                           f"code {user_code} to authenticate."}, kind="token")
        fault = owner.take_fault("token")
        if fault:
            return self._send(fault.status, fault.body or {}, kind="token")
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            flow = owner.device.get(form.get("device_code", ""))
            if flow is None:
                return self._entra_error(400, "expired_token", "AADSTS70008: The device code has expired.")
            if not flow["approved"]:
                return self._entra_error(400, "authorization_pending",
                                         "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending.")
            return self._send(200, self._issue(app, delegated=True, scope=flow["scope"]), kind="token")
        if grant != "client_credentials":
            return self._entra_error(400, "unsupported_grant_type", f"AADSTS70003: grant {grant} not supported.")
        if "client_assertion" in form:
            problem = self._check_assertion(app, form)
            if problem:
                return self._entra_error(401, "invalid_client", problem)
        elif app.secret is None or not secrets.compare_digest(form.get("client_secret", ""), app.secret):
            return self._entra_error(401, "invalid_client",
                                     "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                                     "the request is the client secret value, not the client secret ID, for a "
                                     f"secret added to app '{app.client_id}'.")
        return self._send(200, self._issue(app, delegated=False, scope=form.get("scope", "")), kind="token")

    def _check_assertion(self, app: App, form: dict) -> str | None:
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return "AADSTS700027: client_assertion_type is not jwt-bearer."
        if app.certificate is None:
            return "AADSTS700027: Client assertion contains an invalid signature: no certificate registered."
        assertion = form["client_assertion"]
        self.owner.assertions.append(assertion)
        header = jwt.get_unverified_header(assertion)
        sha1 = app.certificate.fingerprint(hashes.SHA1()).hex()
        sha256 = app.certificate.fingerprint(hashes.SHA256()).hex()
        given = header.get("x5t#S256") or header.get("x5t") or ""
        given_hex = base64.urlsafe_b64decode(given + "=" * (-len(given) % 4)).hex() if given else ""
        if given_hex not in (sha1, sha256):
            return "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key was not found.]"
        token_url = f"{self.owner.login_url}/{self.owner.tenant}/oauth2/v2.0/token"
        try:
            claims = jwt.decode(assertion, app.certificate.public_key(), algorithms=["RS256", "PS256"],
                                audience=token_url, options={"require": ["exp", "aud", "iss", "sub"]})
        except jwt.PyJWTError as exc:
            return f"AADSTS700027: Client assertion failed signature validation. [Reason - {type(exc).__name__}]"
        if claims["iss"] != app.client_id or claims["sub"] != app.client_id:
            return "AADSTS700027: Client assertion iss/sub is not the client id."
        return None

    def _issue(self, app: App, *, delegated: bool, scope: str) -> dict:
        token = "tok-" + secrets.token_hex(24)
        self.owner.tokens[token] = {"app": app, "delegated": delegated, "expires": time.time() + 3600}
        reply = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        if delegated:
            uid, utid = "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000c1"
            claims = {"aud": app.client_id, "iss": f"{self.owner.login_url}/{utid}/v2.0", "oid": uid, "tid": utid,
                      "preferred_username": "admin@contoso.onmicrosoft.com", "name": "Exchange Admin",
                      "iat": int(time.time()), "exp": int(time.time()) + 3600}
            reply |= {"scope": scope, "refresh_token": "rt-" + secrets.token_hex(16),
                      "id_token": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
                      "client_info": _b64({"uid": uid, "utid": utid})}
        return reply

    # ------------------------------------------------------------ openid configuration and Graph
    def do_GET(self) -> None:
        owner = self.owner
        parts = urlsplit(self.path)
        match = re.match(r"^/login/([^/]+)/v2\.0/\.well-known/openid-configuration$", parts.path)
        if match:
            tenant = match.group(1)
            if tenant.lower() != owner.tenant:
                return self._entra_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.")
            root = f"{owner.login_url}/{tenant}"
            return self._send(200, {
                "issuer": f"{root}/v2.0", "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode"}, kind="openid")
        if not parts.path.startswith("/v1.0/admin/exchange/tracing/messageTraces"):
            return self._graph_error(404, "UnknownError", "Resource not found", "other")
        kind = "list" if parts.path == "/v1.0/admin/exchange/tracing/messageTraces" else "details"
        if owner.delay:
            time.sleep(owner.delay)
        auth = self.headers.get("Authorization", "")
        grant = owner.tokens.get(auth.removeprefix("Bearer "))
        if grant is None or grant["expires"] < time.time():
            return self._graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.", kind)
        if not owner.service_principal:
            return self._graph_error(401, "Unauthorized", NO_SERVICE_PRINCIPAL, kind)
        if PERMISSION not in grant["app"].roles:
            return self._graph_error(403, "Forbidden", f"Missing role permissions on the request. API requires one "
                                                       f"of '{PERMISSION}'. Roles on the request ''.", kind)
        wait = owner.spend()
        if wait is not None:
            return self._graph_error(429, "TooManyRequests", "Please retry again later.", kind,
                                     {"Retry-After": f"{wait:.3f}"})
        fault = owner.take_fault(kind)
        if fault and fault.stall:
            time.sleep(fault.stall)
            fault = None
        if fault:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            if fault.body is not None:
                return self._send(fault.status, fault.body, headers, kind)
            return self._graph_error(fault.status, {503: "ServiceUnavailable", 504: "GatewayTimeout",
                                                    429: "TooManyRequests"}.get(fault.status, "Error"),
                                     "injected fault", kind, headers)
        return self._list(parts.query) if kind == "list" else self._details(parts.path)

    def _list(self, query: str) -> None:
        owner = self.owner
        params = {k: v[0] for k, v in parse_qs(query).items()}
        unknown = set(params) - {"$filter", "$top", "$skiptoken"}
        if unknown:
            return self._graph_error(400, "BadRequest", f"Query option(s) not supported: {sorted(unknown)}", "list")
        if "$skiptoken" in params:
            token = json.loads(base64.urlsafe_b64decode(params["$skiptoken"] + "=" * (-len(params["$skiptoken"]) % 4)))
            if token["filter"] != params.get("$filter") or str(token["top"]) != params.get("$top"):
                return self._graph_error(400, "BadRequest", "The skip token does not match the query.", "list")
            offset = token["offset"]
        else:
            offset = 0
        try:
            top = int(params.get("$top", "1000"))
        except ValueError:
            top = 0
        if not 1 <= top <= 5000:
            return self._graph_error(400, "BadRequest", "$top must be between 1 and 5000.", "list")
        now = owner.now()
        if "$filter" not in params:
            low, high, status = now - dt.timedelta(hours=48), now, None  # no filter: the last 48 hours [S1]
        else:
            match = FILTER.match(params["$filter"])
            if not match:
                return self._graph_error(400, "BadRequest", "Invalid filter: both receivedDateTime bounds (ge, le) "
                                                            "are required.", "list")
            try:
                low, high = _when(match.group(1)), _when(match.group(2))
            except ValueError:
                return self._graph_error(400, "BadRequest", "Invalid date in the filter.", "list")
            status = match.group(3)
            if status is not None and status not in STATUSES:
                return self._graph_error(400, "BadRequest", f"Invalid status '{status}'.", "list")
            if high - low > dt.timedelta(days=10):
                return self._graph_error(400, "BadRequest", "The time range cannot exceed 10 days.", "list")
            if low < now - dt.timedelta(days=90) or high > now + dt.timedelta(seconds=5) or high < low:
                return self._graph_error(400, "BadRequest", "The time range must be within the last 90 days.",
                                         "list")
        rows = [r for r in owner.rows_between(low, high) if status is None or r["status"] == status]
        page = rows[offset:offset + top]
        body: dict = {"@odata.context": f"{owner.graph_url}/$metadata#admin/exchange/tracing/messageTraces",
                      "value": page}
        if offset + top < len(rows):
            token = base64.urlsafe_b64encode(json.dumps({"filter": params.get("$filter"), "top": str(top),
                                                         "offset": offset + top}).encode()).decode().rstrip("=")
            kept = {k: v for k, v in params.items() if k != "$skiptoken"}
            body["@odata.nextLink"] = (f"{owner.graph_url}/admin/exchange/tracing/messageTraces?"
                                       f"{urlencode({**kept, '$skiptoken': token})}")
        self._send(200, body, kind="list")

    def _details(self, path: str) -> None:
        match = DETAILS.match(unquote(path))
        if not match:
            return self._graph_error(400, "BadRequest", "recipientAddress is required.", "details")
        trace, recipient = match.group(1), match.group(2).replace("''", "'")
        row = self.owner._by_key.get((trace, recipient.lower()))
        if row is None:
            return self._graph_error(404, "NotFound", "No message trace for this id and recipient.", "details")
        self._send(200, {"@odata.context": f"{self.owner.graph_url}/$metadata#Collection(microsoft.graph."
                                           "exchangeMessageTraceDetail)", "value": details_for(row)}, kind="details")

