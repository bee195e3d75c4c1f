"""Deterministic sample generator: the story of docs/sample-story.md as ground truth and as real exports.

``generate_story`` builds the canonical events table (the truth); ``write_formats`` renders it in every
export layout the loader reads; ``write_big`` makes large traces for benchmarks; ``main`` is
``exo-deferrals sample``. Everything is drawn from one seeded numpy Generator and built on whole columns, so
a seed always gives byte-identical files. Layouts, sources and assumptions: data/sample/README.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.core.schema import DIRECTIONS, EVENTS, STATUSES, conform

DEFAULT_SEED = 20261116
DEFAULT_MESSAGES = 2200
ORGANIZATION = "contoso.onmicrosoft.com"
TENANT_ID = "7c3f1e2a-5b8d-4e6f-9a1c-2d4b6e8f0a13"
MARKETING_SENDER = "news@marketing.contoso.com"
IRONPORT_DOMAIN = "tailspintoys.com"
REFUSED_RANGE = "52.100.0.0/14"
DEFAULT_CONNECTOR = "To_DefaultOpportunisticTLS"
PARTNER_CONNECTOR = "Litware partner connector"
EXTENDED_ROW_CAP = 1000  # the EAC caps an Extended report at 1,000 rows
EXTENDED_SAMPLE_ROWS = 300  # the sample's report: the partner's first attempts, as an admin would filter it

_NS = 1_000_000_000
_MIN = 60 * _NS
_HOUR = 60 * _MIN
_DAY = 24 * _HOUR

# Exchange Online outbound mail-flow IPv4 ranges (endpoint set 10): first address, size, share of attempts
_EXO_V4 = (
    ("40.92.0.0", 1 << 17, 0.22),
    ("40.107.0.0", 1 << 16, 0.22),
    ("52.100.0.0", 1 << 18, 0.42),
    ("104.47.0.0", 1 << 15, 0.14),
)
_REFUSED_INDEX = 2  # REFUSED_RANGE in _EXO_V4
_EXO_V6_PREFIX = "2a01:111:f403:"
# Exchange Online transport servers (LED brackets, Data, tracking logs) and the tenant's mailbox servers
_EXO_SERVERS = tuple(
    [f"AM6EUR05FT{n:03d}.eop-eur05.prod.protection.outlook.com" for n in (12, 18, 27, 33, 41, 56)]
    + [f"DB5EUR03FT{n:03d}.eop-EUR03.prod.protection.outlook.com" for n in (9, 22, 38, 47)]
    + [f"VI1EUR04FT{n:03d}.eop-eur04.prod.protection.outlook.com" for n in (14, 29, 51)]
    + [f"AMS0EPF0000{n}.eurprd05.prod.outlook.com" for n in ("01A7", "02C3", "0B11")]
)
_MAILBOX_SERVERS = tuple(
    [f"AM6PR05MB{n}.eurprd05.prod.outlook.com" for n in (5012, 5360, 6127, 7741)]
    + [f"DB9PR02MB{n}.eurprd02.prod.outlook.com" for n in (7435, 8012, 8820, 9196)]
    + [f"VI1PR08MB{n}.eurprd08.prod.outlook.com" for n in (3316, 4470, 5528, 6093)]
)

_FIRST = (
    "anna", "ben", "clara", "david", "eva", "felix", "greta", "hugo", "ines", "jonas", "karin", "lukas",
    "marta", "nils", "olga", "paul", "rosa", "simon", "tanja", "uwe", "vera", "walter", "yasmin", "zoe",
    "adele", "bruno", "chiara", "dario", "elena", "fabio", "giulia", "hanna", "ivan", "julia", "kai",
)
_LAST = (
    "schmidt", "meyer", "rossi", "dubois", "jansen", "novak", "berg", "keller", "lang", "moreau", "fischer",
    "weber", "conti", "larsen", "peeters", "kowalski", "fernandez", "martin", "hoffmann", "bauer", "lindqvist",
    "costa", "nagel", "vogel", "horvat", "brandt", "ricci", "olsen", "schulz", "wolf", "silva",
)

# (prefix, suffix) around a number; covers non-ASCII, quotes, commas and ';' on purpose
_SUBJECTS = (
    ("Invoice ", " for November"), ("Re: Order #", ""), ("Meeting notes – week ", ""),
    ("FW: Shipment ", " delayed"), ("Angebot Nr. ", " für Müller GmbH"), ("Quote ", " – revised"),
    ("Réunion de suivi n°", ""), ("RE: Project Atlas status ", ""), ("見積書の件（", "）"),
    ("Contract draft v", ", please review"), ('Re: "urgent" approval, ticket ', ""),
    ("Q4 budget; line ", ""), ("Onboarding checklist ", ""), ("Ticket ", ": printer on 3rd floor"),
    ("Support case ", " – Rückfrage"), ("Delivery note ", ""), ("Travel request ", " (Zürich)"),
    ("Purchase order ", ""), ("Re: Re: Samples batch ", ""), ("Payroll question ", ""),
)
_HOSTILE_SUBJECTS = (
    "Re: Q4 numbers <script>alert(1)</script>",
    '=HYPERLINK("http://contoso-payments.example/pay","Invoice 4711")',
)
_MARKETING_SUBJECT = "Contoso Winter Sale – 30 % off everything"

# --- reply templates (sources: data/sample/README.md "Reply texts"; search index ids are the project's
# --- code-search ids of the public files quoted) ----------------------------------------------------------
# Cisco IronPort HAT REJECT banner (iinet "irony" appliances, id 49466897185, and several parsers quoting
# "Your access to this mail system has been rejected due to the sending MTA's poor reputation"); the
# partner's mail flow policy answers it with a temporary 421 instead of the default 554.
_IRONPORT_BANNER = (
    " Your access to this mail system from {ip} has been rejected due to the sending MTA's poor reputation."
    " If you believe that this failure is in error, please contact the intended recipient via alternate means."
)
# EXO/Exchange failover wrapper (KB 4051498, Microsoft's 4.4.7 fix page, a real NDR quoting
# '451 4.4.0 Primary target IP address responded with: "451 4.7.3 ... domain." Attempted failover ...')
_FAILOVER = (
    '451 4.4.0 Primary target IP address responded with: "{inner}" Attempted failover to alternate host,'
    " but that did not succeed. Either there are no alternate hosts, or delivery failed to all alternate"
    " hosts. The last endpoint attempted was {ip}:25"
)
# postgrey via Postfix (postgrey logs and telnet transcripts, ids 56881821256, 6616653816)
_GREYLIST = (
    "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, see "
    "http://postgrey.schweikert.ch/help/{domain}.html"
)
# Yahoo (sisimai comment quoting the live reply, id 3588453152)
_TSS04 = (
    "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints"
    " - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
)
# EXO connection errors (Microsoft NDR table; 4.4.317 STARTTLS text from the Tech Community TLS blog;
# [Message=Socket error code 10060] by analogy with the verified 4.4.316 "Socket error code 10061")
_EXO_CONNECT = (
    "{code} [Message={message}] [LastAttemptedServerName={host}] [LastAttemptedIP={ip}:25] [{bracket}]"
)
_STARTTLS = "451 5.7.3 STARTTLS is required to send mail"
_TIMEOUT = "Socket error code 10060"
# Gmail multi-line replies (DMARC: Postfix log of a Gmail reject, id 36022590052; 5.1.1: ids 48138933211,
# 60784616714; over quota: linux-kernel list bounce, id 5969121143)
_GMAIL_DMARC = (
    "550-5.7.26 Unauthenticated email from {domain} is not accepted due to domain's\r\n"
    "550-5.7.26 DMARC policy. Please contact the administrator of {domain} domain\r\n"
    "550-5.7.26 if this was a legitimate mail. Please visit\r\n"
    "550-5.7.26  https://support.google.com/mail/answer/2451690 to learn about the\r\n"
    "550 5.7.26 DMARC initiative. {gid} - gsmtp"
)
_GMAIL_NOUSER = (
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
    "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
    "550-5.1.1 unnecessary spaces. For more information, go to\r\n"
    "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser {gid} - gsmtp"
)
_GMAIL_QUOTA = (
    "452-4.2.2 The email account that you tried to reach is over quota. Please direct\r\n"
    "452-4.2.2 the recipient to\r\n"
    "452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp {gid} - gsmtp"
)
# Postfix virtual(5) reject (id 70086217366); Microsoft NDR table 5.1.10; "550 5.2.1 mailbox disabled, not
# accepting messages" (id 68387375060); 5.3.4 (ids 52274852193, 71474265454)
_POSTFIX_NOUSER = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"
_EXO_NOTFOUND = "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
_DISABLED = "550 5.2.1 Mailbox disabled, not accepting messages"
_TOO_LARGE = "552 5.3.4 Message size exceeds fixed maximum message size"
# Expiry after ~24 h (Microsoft NDR table "4.4.7 Message expired"; real EXO NDR "550 5.4.317 Message expired,
# cannot connect to remote server(451 5.7.3 STARTTLS is required to send mail)"; 5.4.315 by analogy)
_EXPIRED = "550 4.4.7 Message expired"
_EXPIRED_CONNECT = "550 5.4.{sub} Message expired, {what}({message})"
_EXPIRY_REPLIES = {  # behaviour -> (reply, remote reply, smtp code, enhanced code); others: _EXPIRED
    "down": (_EXPIRED_CONNECT.format(sub="315", what="connection timed out", message=_TIMEOUT), None, 550,
             "5.4.315"),
    "starttls": (_EXPIRED_CONNECT.format(sub="317", what="cannot connect to remote server", message=_STARTTLS),
                 _STARTTLS, 451, "5.7.3"),
}


# --- domains ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Mx:
    kind: str  # how the server answers: postfix, exo, google, yahoo, ironport
    hosts: tuple[str, ...]
    ips: tuple[str, ...]
    ips6: tuple[str, ...] = ()


_NAMED_MX = {
    "gmail.com": _Mx("google", ("gmail-smtp-in.l.google.com",), ("142.251.9.26", "142.250.102.27"),
                     ("2a00:1450:400c:c0b::1a", "2a00:1450:4013:c00::1b")),
    "yahoo.com": _Mx("yahoo", ("mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net", "mta7.am0.yahoodns.net"),
                     ("67.195.204.72", "98.136.96.77", "67.195.228.94")),
    "outlook.com": _Mx("exo", ("outlook-com.olc.protection.outlook.com",), ("52.101.68.18", "52.101.73.2")),
    "hotmail.com": _Mx("exo", ("hotmail-com.olc.protection.outlook.com",), ("52.101.42.5",)),
    "gmx.de": _Mx("postfix", ("mx00.gmx.net",), ("212.227.15.9",)),
    IRONPORT_DOMAIN: _Mx("ironport", ("mx1.hc4112-47.iphmx.com", "mx2.hc4112-47.iphmx.com"),
                         ("68.232.140.21", "68.232.140.22")),
    "adventure-works.com": _Mx("postfix", ("mail.adventure-works.com",), ("198.51.100.34",)),
    "fourthcoffee.com": _Mx("postfix", ("mail.fourthcoffee.com",), ("198.51.100.25",)),
    "litware.com": _Mx("postfix", ("mail.litware.com",), ("198.51.100.61",)),
    "wingtiptoys.com": _Mx("postfix", ("mx.wingtiptoys.com",), ("198.51.100.78",)),
    "fabrikam.com": _Mx("postfix", ("mail.fabrikam.com",), ("198.51.100.90",)),
    "woodgrovebank.com": _Mx("exo", ("woodgrovebank-com.mail.protection.outlook.com",), ("52.101.194.15",)),
    "lucernepublishing.com": _Mx("postfix", ("smtp.lucernepublishing.com",), ("198.51.100.112",)),
}
_BIG_PROVIDERS = {"gmail.com": 9.0, "outlook.com": 4.0, "yahoo.com": 2.0, "hotmail.com": 1.5, "gmx.de": 1.5}
_STORY_ONLY = (IRONPORT_DOMAIN, "adventure-works.com", "fourthcoffee.com", "litware.com")
_FICTITIOUS = (
    "northwindtraders.com", "proseware.com", "relecloud.com", "wideworldimporters.com", "alpineskihouse.com",
    "blueyonderairlines.com", "cohowinery.com", "consolidatedmessenger.com", "fineartschool.net",
    "graphicdesigninstitute.com", "humongousinsurance.com", "margiestravel.com", "nodpublishers.com",
    "southridgevideo.com", "treyresearch.net", "adatum.com", "cpandl.com", "lamnahealthcare.com",
)
_ADJ = (
    "alpine", "blue", "cedar", "delta", "ember", "fjord", "granite", "harbor", "iron", "juniper", "kestrel",
    "lumen", "maple", "north", "orbit", "pine", "quartz", "river", "summit", "tundra", "urban", "vector",
)
_NOUN = ("works", "labs", "logistics", "systems", "foods", "media", "energy", "bank", "design", "health",
         "consulting", "freight", "textiles", "robotics")
_TLD = (".com", ".de", ".co.uk", ".nl", ".fr", ".ch", ".net", ".eu", ".it", ".at", ".se")


def _domain_table() -> pd.DataFrame:
    """Every recipient domain with its MX kind, hosts, IPs and base-traffic weight (a few hundred)."""
    names = list(_NAMED_MX) + list(_FICTITIOUS)
    seen = set(names)
    i = 0
    while len(names) < 300:
        name = _ADJ[i % len(_ADJ)] + _NOUN[(i * 5 + i // len(_ADJ)) % len(_NOUN)] + _TLD[(i * 7) % len(_TLD)]
        i += 1
        if name not in seen:
            seen.add(name)
            names.append(name)
    rows = []
    for rank, name in enumerate(names):
        mx = _NAMED_MX.get(name)
        if mx is None:
            # one in four fictitious domains is hosted in Exchange Online, one in seven in Google Workspace
            if rank % 4 == 1:
                mx = _Mx("exo", (f"{name.replace('.', '-')}.mail.protection.outlook.com",),
                         (f"52.101.{rank % 200}.{10 + rank % 40}",))
            elif rank % 7 == 3:
                mx = _Mx("google", ("aspmx.l.google.com",), (f"142.250.{100 + rank % 50}.27",))
            else:
                mx = _Mx("postfix", (("mail.", "mx1.", "smtp.", "mx.")[rank % 4] + name,),
                         (f"{('192.0.2', '198.51.100')[rank % 2]}.{rank % 250 + 3}",))
        weight = _BIG_PROVIDERS.get(name, 0.0 if name in _STORY_ONLY else 1.0 / (rank + 1) ** 0.6)
        rows.append({"domain": name, "kind": mx.kind, "host": mx.hosts[0], "ip": mx.ips[0],
                     "host2": mx.hosts[-1], "ip2": mx.ips[-1], "ip6": mx.ips6[0] if mx.ips6 else "",
                     "weight": weight})
    return pd.DataFrame(rows)


# --- small vectorized helpers -------------------------------------------------------------------------------
_STR = pa.large_string()  # the text type throughout: what pandas' string dtype holds, and fast to take


def _pa(values: object) -> pa.Array | pa.Scalar:
    """Text as a pyarrow large_string array from a column-like value (a str or None: a scalar)."""
    if values is None or isinstance(values, str):
        return pa.scalar(values, _STR)
    if isinstance(values, pd.Series):
        values = values.array
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if arr.type == _STR else arr.cast(_STR)


def _strings(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), _STR)


def _cat(*parts: object) -> pa.Array:
    """Element-wise concatenation of text columns and str literals."""
    return pc.binary_join_element_wise(*[_pa(p) for p in parts], _pa(""))


def _where(mask: object, yes: object, no: object) -> pa.Array:
    """Text chosen row by row; ``mask`` a numpy or pyarrow boolean column, ``yes``/``no`` text or str/None."""
    return pc.if_else(mask if isinstance(mask, pa.Array) else pa.array(mask, pa.bool_()), _pa(yes), _pa(no))


def _repeat(value: str | None, n: int) -> pa.Array:
    return pc.fill_null(pa.nulls(n, _STR), value) if value is not None else pa.nulls(n, _STR)


def _fill(template: str, **values: object) -> pa.Array:
    """``template`` with each ``{name}`` replaced element-wise by the column (or str) ``values[name]``."""
    parts = re.split(r"\{(\w+)\}", template)
    return _cat(*[values[p] if i % 2 else p for i, p in enumerate(parts) if i % 2 or p])


def _col(values: object) -> pd.Series:
    """A STRING column (the schema's string dtype) from anything column-like."""
    return pd.Series(pd.arrays.ArrowStringArray(_pa(values)))


def _hex(rng: np.random.Generator, n: int, chars: int, *, upper: bool = False) -> pa.Array:
    """``n`` random hexadecimal strings of ``chars`` characters."""
    raw = rng.integers(0, 256, size=(n, (chars + 1) // 2), dtype=np.uint8)
    text = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=f"S{(chars + 1) // 2 * 2}")
    arr = pc.utf8_slice_codeunits(pa.array(text).cast(pa.binary()).cast(_STR), 0, chars)
    return pc.utf8_upper(arr) if upper else arr


def _trace_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` MessageTraceId GUIDs; like real ones, the last group starts with a time stamp (``08de``)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 10:12] = (0x08, 0xDE)
    text = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8).reshape(n, 32)
    dashed = np.ascontiguousarray(np.insert(text, [8, 12, 16, 20], ord("-"), axis=1))
    return pa.array(dashed.view("S36").ravel()).cast(pa.binary()).cast(_STR)


def _digits(rng: np.random.Generator, n: int, width: int) -> pa.Array:
    """``n`` random decimal strings of exactly ``width`` digits."""
    low = 10 ** (width - 1)
    return _pa(rng.integers(low, 10 * low, size=n))


def _ipv4(ints: np.ndarray) -> pa.Array:
    """Dotted quads from 32-bit address integers."""
    octets = [(ints >> shift) & 255 for shift in (24, 16, 8, 0)]
    return _cat(octets[0], ".", octets[1], ".", octets[2], ".", octets[3])


def _ip_int(dotted: str) -> int:
    a, b, c, d = (int(x) for x in dotted.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _ns(timestamps: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds."""
    return timestamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64)


_HEX16 = _strings([f"{i:x}" for i in range(1 << 16)])
_NUM = _strings([str(i) for i in range(100)])
_PAD2 = _strings([f"{i:02d}" for i in range(100)])
_AMPM = _strings(["AM", "PM"])
# culture formats of a DateTime: component names, anything else is a literal
_DATE_STYLES: dict[str, tuple[str, ...]] = {
    "en-US": ("M", "/", "D", "/", "Y", " ", "h12", ":", "mm", ":", "ss", " ", "ampm"),
    "en-GB": ("DD", "/", "MM", "/", "Y", " ", "HH", ":", "mm", ":", "ss"),
    "de-DE": ("DD", ".", "MM", ".", "Y", " ", "HH", ":", "mm", ":", "ss"),
    "iso7": ("Y", "-", "MM", "-", "DD", "T", "HH", ":", "mm", ":", "ss", ".", "f7", "Z"),
    "iso3": ("Y", "-", "MM", "-", "DD", "T", "HH", ":", "mm", ":", "ss", ".", "f3", "Z"),
}


def _fmt_time(ns: np.ndarray, style: str, *, offset_hours: int = 0) -> pa.Array:
    """UTC nanoseconds as text in one of ``_DATE_STYLES``; sub-second digits are truncated, as .NET does."""
    values = (ns + offset_hours * _HOUR).view("datetime64[ns]")
    days = values.astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    month = months.astype(np.int64) % 12 + 1
    day = (days - months).astype(np.int64) + 1
    of_day = (values - days).astype(np.int64)
    hour = of_day // _HOUR
    parts = {
        "Y": months.astype(np.int64) // 12 + 1970, "M": _NUM.take(month), "MM": _PAD2.take(month),
        "D": _NUM.take(day), "DD": _PAD2.take(day), "HH": _PAD2.take(hour),
        "h12": _NUM.take((hour + 11) % 12 + 1), "ampm": _AMPM.take(hour // 12),
        "mm": _PAD2.take(of_day // _MIN % 60), "ss": _PAD2.take(of_day // _NS % 60),
        "f7": pc.utf8_lpad(_pa(of_day % _NS // 100), 7, "0"),
        "f3": pc.utf8_lpad(_pa(of_day % _NS // 1_000_000), 3, "0"),
    }
    return _cat(*[parts.get(token, token) for token in _DATE_STYLES[style]])


def _fmt_one(ts: pd.Timestamp, style: str) -> str:
    return _fmt_time(np.array([ts.value], dtype=np.int64), style)[0].as_py()


# --- the story ----------------------------------------------------------------------------------------------
_RETRIED = ("ironport", "greylist", "down", "tss04", "starttls", "quota")  # deferred by the remote side
_FAILED_AT_ONCE = ("dmarc", "nouser_gmail", "nouser_postfix", "notfound_exo", "disabled", "too_large")
_MAILBOX = ("internal", "inbound")  # delivered to a contoso.com mailbox, no SMTP attempt out


@dataclass(frozen=True)
class _Block:
    """A group of messages of the story: how many, when, from whom, to whom, and what happens to them."""

    name: str
    count: int  # messages in the default story
    behaviour: str  # what happens to the block's own recipients (extra cc recipients are delivered)
    domain: str | None = None  # None: the base traffic's domains
    window: tuple[float, float] | None = None  # receive window, hours after start; None: office hours
    locals_: tuple[str, ...] = ()  # fixed recipient local parts, cycled
    recipients: tuple[int, int] = (1, 1)  # own recipients per message, inclusive range
    cc_prob: float = 0.0  # chance of one extra recipient at a base traffic domain
    sender: str = "user"  # user, marketing or external
    fixed: bool = False  # count does not scale with ``messages``
    subjects: tuple[str, ...] = ()
    size: int = 0  # 0: drawn


_BLOCKS = (
    _Block("ironport", 110, "ironport", IRONPORT_DOMAIN, recipients=(1, 2), cc_prob=0.2),
    _Block("greylist", 26, "greylist", "adventure-works.com", recipients=(1, 2)),
    _Block("down", 16, "down", "fourthcoffee.com"),
    _Block("down_early", 3, "down", "fourthcoffee.com", window=(30.5, 35.5), fixed=True),
    _Block("starttls", 4, "starttls", "litware.com", cc_prob=0.2),
    _Block("starttls_late", 1, "starttls", "litware.com", window=(154.0, 154.5), fixed=True),
    _Block("typo_gmail", 4, "nouser_gmail", "gmail.com", locals_=("anna.schmidt.1985", "jonas.weberr"),
           fixed=True),
    _Block("typo_postfix", 3, "nouser_postfix", "fabrikam.com", locals_=("p.mueler",), fixed=True),
    _Block("typo_exo", 4, "notfound_exo", "woodgrovebank.com", locals_=("j.smiht", "accounts-payble"),
           fixed=True),
    _Block("disabled", 6, "disabled", "wingtiptoys.com", locals_=("k.berg", "old-sales"), fixed=True),
    _Block("quota", 2, "quota", "gmail.com", locals_=("m.rossi.archive",), fixed=True),
    _Block("quota_late", 1, "quota", "gmail.com", window=(150.0, 151.0), locals_=("m.rossi.archive",), fixed=True),
    _Block("too_large", 1, "too_large", "lucernepublishing.com", locals_=("studio",), fixed=True,
           size=38_912_114),
    _Block("blast_yahoo", 18, "tss04", "yahoo.com", window=(86.0, 86.4), sender="marketing",
           subjects=(_MARKETING_SUBJECT,)),
    _Block("blast_gmail", 18, "dmarc", "gmail.com", window=(86.0, 86.4), sender="marketing",
           subjects=(_MARKETING_SUBJECT,)),
    _Block("blast_other", 8, "normal", window=(86.0, 86.4), sender="marketing", subjects=(_MARKETING_SUBJECT,)),
    # hostile subjects on messages that expire, so the report's list of affected messages must show them
    _Block("hostile", 2, "starttls", "litware.com", fixed=True, subjects=_HOSTILE_SUBJECTS),
    _Block("internal", 80, "internal", "contoso.com", recipients=(1, 3)),
    _Block("inbound", 80, "inbound", "contoso.com", sender="external"),
)
_OUTAGE = (30.0, 60.0)  # fourthcoffee.com unreachable: hours after start (Tue 06:00 to Wed 12:00 UTC)
_EXPIRY = 24 * _HOUR
# retry intervals in minutes, jittered +-20 %: "the first few deferrals are 15 minutes or less ... to a max
# of 60 minutes"; "messages in deferral will remain in our queues for 1 day" (Microsoft, EOP queued,
# deferred and bounced messages FAQ)
_RETRY_MINUTES = np.array([8, 10, 12, 15, 20, 30, 45] + [60] * 33, dtype=np.float64)
_STUCK_SHARE = 0.1  # IronPort messages whose retries all leave from 52.100.0.0/14 egress pools
_MARKETING = (MARKETING_SENDER, _MAILBOX_SERVERS[0], "203.0.113.200")  # address, mailbox server, client IP


def intended_messages(messages: int = DEFAULT_MESSAGES) -> dict[str, int]:
    """Messages of each block of the story (by block name) in a story of ``messages``: what the generator intends."""
    return {b.name: b.count if b.fixed else max(1, round(b.count * messages / DEFAULT_MESSAGES)) for b in _BLOCKS}


def _users() -> pd.DataFrame:
    """The tenant's 120 senders: address, mailbox server, client IP, and whether the mailbox is on-prem."""
    rows = []
    for i in range(120):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i * 7 + i // len(_FIRST)) % len(_LAST)]
        client = ("203.0.113.40", "203.0.113.41")[i % 2] if i % 20 < 12 else (
            f"203.0.113.{60 + i}" if i % 20 < 17 else f"2001:db8:4a{i % 10}:1c00::{i:x}")
        rows.append({"address": f"{first}.{last}@contoso.com", "server": _MAILBOX_SERVERS[i % 12],
                     "client_ip": client, "onprem": i % 14 == 0})
    return pd.DataFrame(rows)


def _onprem_senders() -> set[str]:
    users = _users()
    return set(users.address[users.onprem])


_Table = dict[str, "np.ndarray | pa.Array"]  # a table as columns: numbers in numpy, text in pyarrow


def _take(table: _Table, index: np.ndarray) -> _Table:
    """Rows ``index`` of every column."""
    rows = pa.array(index, pa.int64())
    return {name: col.take(rows) if isinstance(col, pa.Array) else col[index] for name, col in table.items()}


class _Rows:
    """Some rows of a table, each column taken when first asked for (a column may be ``(values, index)``:
    the values of another table at ``index``)."""

    def __init__(self, table: dict[str, object], index: np.ndarray):
        self.table, self.index = table, index

    def __getitem__(self, name: str) -> np.ndarray | pa.Array:
        column = self.table[name]
        if isinstance(column, tuple):
            values, at = column
            return values.take(pa.array(at[self.index]))
        return column.take(pa.array(self.index)) if isinstance(column, pa.Array) else column[self.index]


class _Story:
    """Draws one story: messages, their recipients, every delivery attempt and its reply."""

    def __init__(self, rng: np.random.Generator, messages: int, start: pd.Timestamp, days: int):
        self.rng = rng
        self.start_ns = int(start.value)
        self.days = days
        self.span = days * _DAY
        domains = _domain_table()
        self.weights = (domains.weight / domains.weight.sum()).to_numpy()
        self.kind = domains.kind.to_numpy().astype(str)
        self.domains = {c: _strings(domains[c]) for c in ("domain", "host", "host2", "ip", "ip2", "ip6")}
        users = _users()
        self.users = {c: _strings(users[c]) for c in ("address", "server", "client_ip")}
        counts = list(intended_messages(messages).values())
        self.blocks = [*_BLOCKS, _Block("base", 0, "normal")]
        self.counts = [*counts, max(0, messages - sum(counts))]

    def _per_block(self, block: np.ndarray, attribute: str) -> np.ndarray:
        return np.array([getattr(b, attribute) for b in self.blocks])[block]

    # -- messages --------------------------------------------------------------------------------------------
    def _receive_times(self, block: np.ndarray) -> np.ndarray:
        """Receive times (ns after start): office hours in Central Europe on weekdays, or the block's window."""
        rng, n = self.rng, len(block)
        weights = np.array(([1.0, 1.0, 1.0, 1.0, 0.9, 0.12, 0.1] * (self.days // 7 + 1))[: self.days])
        day = rng.choice(self.days, size=n, p=weights / weights.sum())
        hour = np.where(rng.random(n) < 0.85, rng.normal(11.0, 2.8, n), rng.uniform(0, 24, n)) % 24
        windows = np.array([b.window or (np.nan, np.nan) for b in self.blocks])[block]
        hours = np.where(np.isnan(windows[:, 0]), day * 24 + hour,
                         windows[:, 0] + rng.random(n) * (windows[:, 1] - windows[:, 0]))
        return np.clip((hours * (_HOUR // 100)).astype(np.int64) * 100, 0, self.span - 2 * _HOUR)

    def _messages(self) -> _Table:
        """One row per message: block, receive time, sender, subject, size, ids, client IP."""
        rng, dom, users = self.rng, self.domains, self.users
        block = np.repeat(np.arange(len(self.blocks)), self.counts)
        n = len(block)
        which = self._per_block(block, "sender")
        user = pa.array(rng.integers(0, len(users["address"]), n))
        ext = pa.array(rng.choice(len(self.weights), size=n, p=self.weights))
        ext_local = rng.integers(0, len(_FIRST) * len(_LAST), n)
        ext_sender = _cat(_strings(_FIRST).take(ext_local % len(_FIRST)), ".",
                          _strings(_LAST).take(ext_local // len(_FIRST)), "@", dom["domain"].take(ext))

        def by_sender(user_value: pa.Array, marketing: str, external: pa.Array) -> pa.Array:
            return _where(which == "user", user_value, _where(which == "marketing", marketing, external))

        server = by_sender(users["server"].take(user), _MARKETING[1], dom["host"].take(ext))
        template = rng.integers(0, len(_SUBJECTS), n)
        subject = _cat(_strings([p for p, _ in _SUBJECTS]).take(template), rng.integers(100, 99_999, n),
                       _strings([s for _, s in _SUBJECTS]).take(template))
        ordinal = np.arange(n) - np.repeat(np.cumsum(self.counts) - self.counts, self.counts)
        for i, b in enumerate(self.blocks):
            if b.subjects:
                subject = _where(block == i, _strings(b.subjects).take(ordinal % len(b.subjects)), subject)
        size = np.clip(np.exp(rng.normal(10.4, 1.0, n)), 1_500, 24_000_000).astype(np.int64)
        size = np.where(which == "marketing", 86_000 + rng.integers(0, 4_000, n), size)
        size = np.where(self._per_block(block, "size") > 0, self._per_block(block, "size"), size)
        outlook_id = _cat("<", pc.utf8_slice_codeunits(server, 0, 13), _hex(rng, n, 28, upper=True), "@", server,
                          ">")
        external_id = _cat("<", _hex(rng, n, 32), "@", dom["domain"].take(ext), ">")
        return {
            "block": block, "ordinal": ordinal, "receive": self._receive_times(block),
            "sender": by_sender(users["address"].take(user), _MARKETING[0], ext_sender), "server": server,
            "client_ip": by_sender(users["client_ip"].take(user), _MARKETING[2], dom["ip"].take(ext)),
            "subject": subject, "size": size, "message_id": _where(which == "external", external_id, outlook_id),
            "trace_id": _trace_ids(rng, n), "submit_delay": rng.integers(200, 1_500, n) * 1_000_000,
        }

    # -- recipients ------------------------------------------------------------------------------------------
    def _pairs(self, msgs: _Table) -> _Table:
        """One row per (message, recipient): address, domain, behaviour, position in the message."""
        rng, dom = self.rng, self.domains
        block = msgs["block"]
        n = len(block)
        recipients = self._per_block(block, "recipients")
        own = rng.integers(recipients[:, 0], recipients[:, 1] + 1)
        is_base = block == len(self.blocks) - 1
        own = np.where(is_base, rng.choice([1, 2, 3, 4, 6], size=n, p=[0.8, 0.12, 0.05, 0.02, 0.01]), own)
        k = own + (rng.random(n) < self._per_block(block, "cc_prob"))
        msg = np.repeat(np.arange(n), k)
        p = len(msg)
        first = np.repeat(np.cumsum(k) - k, k)
        pos = np.arange(p) - first
        index = {d: i for i, d in enumerate(dom["domain"].to_pylist())}
        own_dom = np.array([index.get(b.domain, -1) for b in self.blocks])[block][msg]
        mine = (pos < own[msg]) & ~is_base[msg]  # the block's own recipients
        draw = rng.choice(len(self.weights), size=p, p=self.weights)
        base_dom = np.where((pos > 0) & (rng.random(p) < 0.6), draw[first], draw)  # colleagues at one domain
        d = np.where(mine & (own_dom >= 0), own_dom, base_dom)
        name = (d * 31 + rng.integers(0, 24, p)) % (len(_FIRST) * len(_LAST))
        local = _cat(_strings(_FIRST).take(name % len(_FIRST)), ".", _strings(_LAST).take(name // len(_FIRST)))
        ordinal = msgs["ordinal"][msg] + pos
        for i, b in enumerate(self.blocks):
            if b.locals_:
                local = _where(mine & (block[msg] == i), _strings(b.locals_).take(ordinal % len(b.locals_)), local)
        # contoso.com recipients of internal and inbound mail: a mailbox user other than the sender
        mailbox = mine & (own_dom < 0)
        addresses = self.users["address"]
        user = rng.integers(0, len(addresses), p)
        itself = pc.equal(addresses.take(pa.array(user)), msgs["sender"].take(pa.array(msg))).to_numpy(
            zero_copy_only=False)
        user = np.where(itself, (user + 1) % len(addresses), user)
        pairs = {
            "msg": msg, "pos": pos, "dom": d,
            "recipient": _where(mailbox, addresses.take(pa.array(user)),
                                _cat(local, "@", dom["domain"].take(pa.array(d)))),
            "domain": _where(mailbox, "contoso.com", dom["domain"].take(pa.array(d))),
            "behaviour": np.where(mine, self._per_block(block, "behaviour")[msg], "normal"),
            "mailbox_server": _strings(_MAILBOX_SERVERS).take(pa.array(user % len(_MAILBOX_SERVERS))),
        }
        codes = pc.dictionary_encode(pairs["recipient"]).indices.to_numpy().astype(np.int64)
        _, keep = np.unique(msg * (codes.max() + 1) + codes, return_index=True)  # a recipient once a message
        return _take(pairs, np.sort(keep))

    # -- delivery attempts -----------------------------------------------------------------------------------
    def _attempts(self, msgs: _Table, pairs: _Table) -> tuple[_Table, np.ndarray]:
        """Every SMTP attempt and expiry (one row per recipient) and the final status of every pair.

        The recipients of one message at one domain share their attempts: one SMTP session, as in Exchange.
        """
        rng, dom = self.rng, self.domains
        out = np.flatnonzero(~np.isin(pairs["behaviour"], _MAILBOX))
        key = pairs["msg"][out] * (len(self.weights) + 1) + pairs["dom"][out]
        keys, first = np.unique(key, return_index=True)
        group_of = np.searchsorted(keys, key)
        g_msg, g_beh = pairs["msg"][out][first], pairs["behaviour"][out][first]
        t0 = msgs["receive"][g_msg] + msgs["submit_delay"][g_msg] + rng.integers(500, 6_000, len(keys)) * 1_000_000
        share = np.array([w for *_, w in _EXO_V4])
        status = np.where(np.isin(g_beh, _FAILED_AT_ONCE), "failed", "delivered").astype(object)

        # retried groups: a schedule of attempts, cut at success, expiry (~24 h) or the end of the trace
        retried = np.flatnonzero(np.isin(g_beh, _RETRIED))
        beh, r_n, k_max = g_beh[retried], len(retried), len(_RETRY_MINUTES)
        steps = _RETRY_MINUTES[:-1] * rng.uniform(0.8, 1.2, (r_n, k_max - 1)) * _MIN
        times = t0[retried, None] + np.cumsum(np.hstack([np.zeros((r_n, 1)), steps]), axis=1).astype(np.int64)
        ranges = rng.choice(len(_EXO_V4), size=times.shape, p=share)
        ironport = np.flatnonzero(beh == "ironport")
        stuck = max(2, round(_STUCK_SHARE * len(ironport)))
        ranges[rng.choice(ironport, size=min(len(ironport), stuck), replace=False)] = _REFUSED_INDEX
        accepted = {
            "ironport": ranges != _REFUSED_INDEX,
            "down": (times < _OUTAGE[0] * _HOUR) | (times >= _OUTAGE[1] * _HOUR),
            "greylist": np.arange(k_max) >= 1,
            "tss04": np.arange(k_max) >= rng.choice([1, 2, 3], size=(r_n, 1), p=[0.5, 0.3, 0.2]),
        }
        success = np.full(r_n, k_max)
        for name, ok in accepted.items():
            rows = beh == name
            ok = np.broadcast_to(ok, times.shape)[rows]
            success[rows] = np.where(ok.any(axis=1), ok.argmax(axis=1), k_max)
        expiry = t0[retried] + _EXPIRY + rng.integers(0, 10 * _MIN // 100, r_n) * 100
        step = np.arange(k_max)
        valid = (times < np.minimum(expiry, self.span)[:, None]) & (step <= success[:, None])
        delivered = (success < k_max) & valid[np.arange(r_n), np.minimum(success, k_max - 1)]
        failed = ~delivered & (expiry <= self.span)
        status[retried] = np.where(delivered, "delivered", np.where(failed, "failed", "pending"))
        r, k = np.nonzero(valid)

        single = np.flatnonzero(~np.isin(g_beh, _RETRIED))
        expired = np.flatnonzero(failed)
        group = np.concatenate([retried[r], single, retried[expired]])
        n, n_exp = len(group), len(expired)
        source_range = np.concatenate([ranges[r, k], rng.choice(len(_EXO_V4), size=len(single), p=share),
                                       np.full(n_exp, -1)])
        # which MX took the attempt, over IPv6 or not; an expiry reports the last attempt's
        d = pa.array(pairs["dom"][out][first][group])
        choice = rng.integers(0, 2, n)
        v6 = pc.not_equal(dom["ip6"].take(d), "").to_numpy(zero_copy_only=False) & (rng.random(n) < 0.5)
        last = np.zeros(r_n, dtype=np.int64)
        np.maximum.at(last, r, np.arange(len(r)))
        choice[n - n_exp:], v6[n - n_exp:] = choice[last[expired]], v6[last[expired]]
        first_ip = np.array([_ip_int(a) for a, *_ in _EXO_V4], dtype=np.int64)[np.maximum(source_range, 0)]
        size = np.array([s for _, s, _ in _EXO_V4], dtype=np.int64)[np.maximum(source_range, 0)]
        v4_ip = _ipv4(first_ip + 1 + (rng.random(n) * (size - 2)).astype(np.int64))
        v6_ip = _cat(_EXO_V6_PREFIX, _HEX16.take(rng.integers(0x1000, 0x10000, n)), "::",
                     _HEX16.take(rng.integers(1, 0x1000, n)))
        second = choice == 1
        attempts = {
            "attempt": np.arange(n), "group": group,
            "ts": np.concatenate([times[r, k], t0[single], expiry[expired]]),
            "event": np.concatenate([np.where(k < success[r], "defer", "send"),
                                     np.where(status[single] == "failed", "fail", "send"),
                                     np.full(n_exp, "fail")]).astype(str),
            "exo_ip": _where(source_range >= 0, _where(v6, v6_ip, v4_ip), None),
            "exo_host": _strings(_EXO_SERVERS).take(rng.integers(0, len(_EXO_SERVERS), n)),
            "remote_host": _where(second, dom["host2"].take(d), dom["host"].take(d)),
            "primary_host": _where(second, dom["host"].take(d), dom["host2"].take(d)),
            "remote_ip": _where(v6, dom["ip6"].take(d), _where(second, dom["ip2"].take(d), dom["ip"].take(d))),
            "expired": np.arange(n) >= n - n_exp,
        }
        # one row per recipient of the group
        order = np.argsort(group_of, kind="stable")
        members = np.bincount(group_of, minlength=len(keys))
        reps = members[group]
        offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        per_pair = _take(attempts, np.repeat(np.arange(n), reps))
        per_pair["pair"] = out[order[np.repeat(np.cumsum(members)[group] - reps, reps) + offset]]
        pair_status = np.full(len(pairs["msg"]), "delivered", dtype=object)
        pair_status[out] = status[group_of]
        return per_pair, pair_status.astype(str)

    # -- replies ---------------------------------------------------------------------------------------------
    def _replies(self, rows: dict[str, object]) -> _Table:
        """reply, remote_reply, smtp_code and enhanced_code of every attempt row (``rows``: see _Rows)."""
        case = np.where(rows["event"] == "send", np.char.add("send:", rows["kind"]),
                        np.where(rows["expired"], np.char.add("expired:", rows["behaviour"]),
                                 np.char.add("reply:", rows["behaviour"])))
        names, kind = np.unique(case, return_inverse=True)
        replies = [self._reply(name, _Rows(rows, np.flatnonzero(kind == i))) for i, name in enumerate(names)]
        out: _Table = {column: _by_case(kind, {i: reply[k] for i, reply in enumerate(replies)})
                       for k, column in ((0, "reply"), (1, "remote_reply"), (3, "enhanced_code"))}
        out["smtp_code"] = np.array([reply[2] for reply in replies], dtype=np.int64)[kind]
        return out

    def _reply(self, case: str, g: _Rows) -> tuple[object, object, int, str | None]:
        """(reply, the remote server's own reply or None, smtp code, enhanced code) of one kind of attempt.

        Codes are those of the most specific reply: the remote one when Exchange Online wraps it. Random
        parts (queue ids, session ids) are drawn once per SMTP attempt, shared by its recipients.
        """
        attempts, per_row = np.unique(g["attempt"], return_inverse=True)
        rng, n = self.rng, len(attempts)

        def hexes(chars: int, *, upper: bool = False) -> pa.Array:
            return _hex(rng, n, chars, upper=upper).take(per_row)

        def digits(width: int) -> pa.Array:
            return _digits(rng, n, width).take(per_row)

        kind, what = case.split(":")
        if kind == "expired":
            return _EXPIRY_REPLIES.get(what, (_EXPIRED, None, 550, "4.4.7"))
        gid = _cat(hexes(13), "-", hexes(11), "si", digits(8), hexes(2), ".", digits(2)) if what in (
            "google", "quota", "dmarc", "nouser_gmail") else ""
        if kind == "send":
            if what == "postfix":
                reply, enhanced = _cat("250 2.0.0 Ok: queued as ", hexes(11, upper=True)), "2.0.0"
            elif what == "exo":
                reply, enhanced = _cat("250 2.6.0 ", g["message_id"], " [InternalId=", digits(14),
                                       ", Hostname=AS8PR07MB", digits(4),
                                       ".eurprd07.prod.outlook.com] Queued mail for delivery"), "2.6.0"
            elif what == "google":
                when = (g["ts"] + self.start_ns) // _NS
                reply, enhanced = _cat("250 2.0.0 OK  ", when, " ", gid, " - gsmtp"), "2.0.0"
            elif what == "yahoo":
                reply, enhanced = "250 ok dirdel", None
            else:  # ironport
                reply, enhanced = _cat("250 ok:  Message ", digits(9), " accepted"), None
            return reply, reply, 250, enhanced
        if what == "ironport":
            inner = _fill("421 {host}" + _IRONPORT_BANNER, host=g["primary_host"], ip=g["exo_ip"])
            return _fill(_FAILOVER, inner=inner, ip=g["remote_ip"]), inner, 421, None  # the banner has no x.y.z
        if what in ("down", "starttls"):
            code, message = (("450 4.4.315 Connection timed out", _TIMEOUT) if what == "down" else
                             ("450 4.4.317 Cannot connect to remote server", _STARTTLS))
            bracket = _cat(g["exo_host"], " ", _fmt_time(g["ts"] + self.start_ns, "iso3"), " 08DE",
                           hexes(12, upper=True))
            reply = _fill(_EXO_CONNECT, code=code, message=message, host=g["remote_host"], ip=g["remote_ip"],
                          bracket=bracket)
            return (reply, None, 450, "4.4.315") if what == "down" else (reply, _STARTTLS, 451, "5.7.3")
        # the remote server's own reply, as it came: template, values, smtp code, enhanced code
        template, values, code, enhanced = {
            "greylist": (_GREYLIST, {"rcpt": g["recipient"], "domain": g["domain"]}, 450, "4.2.0"),
            "tss04": (_TSS04, {"ip": g["exo_ip"]}, 421, "4.7.0"),
            "quota": (_GMAIL_QUOTA, {"gid": gid}, 452, "4.2.2"),
            "dmarc": (_GMAIL_DMARC, {"domain": g["sender_domain"], "gid": gid}, 550, "5.7.26"),
            "nouser_gmail": (_GMAIL_NOUSER, {"gid": gid}, 550, "5.1.1"),
            "nouser_postfix": (_POSTFIX_NOUSER, {"rcpt": g["recipient"]}, 550, "5.1.1"),
            "notfound_exo": (_EXO_NOTFOUND, {}, 550, "5.1.10"),
            "disabled": (_DISABLED, {}, 550, "5.2.1"),
            "too_large": (_TOO_LARGE, {}, 552, "5.3.4"),
        }[what]
        text = _fill(template, **values) if values else template
        return text, text, code, enhanced

    # -- the events table ------------------------------------------------------------------------------------
    def events(self) -> pd.DataFrame:
        """The events in canonical columns and dtypes-to-be (generate_story conforms them)."""
        msgs = self._messages()
        pairs = self._pairs(msgs)
        attempts, status = self._attempts(msgs, pairs)
        pm, ap = pairs["msg"], attempts["pair"]
        context = {
            "behaviour": pairs["behaviour"][ap], "kind": self.kind[pairs["dom"][ap]],
            "recipient": (pairs["recipient"], ap), "domain": (pairs["domain"], ap),
            "message_id": (msgs["message_id"], pm[ap]),
            "sender_domain": (pc.replace_substring_regex(msgs["sender"], "^[^@]*@", ""), pm[ap]),
        }
        attempts |= self._replies(attempts | context)
        beh = pairs["behaviour"]
        receive = msgs["receive"][pm]
        submitted = np.flatnonzero(beh != "inbound")
        delivered = np.flatnonzero(np.isin(beh, _MAILBOX))
        server = msgs["server"].take(pa.array(pm))
        inbound_host = _strings(_EXO_SERVERS).take(self.rng.integers(0, len(_EXO_SERVERS), len(beh)))
        n_local = len(beh) + len(submitted) + len(delivered)
        pair = np.concatenate([np.arange(len(beh)), submitted, delivered, ap])
        ts = np.concatenate([receive, receive[submitted] + msgs["submit_delay"][pm[submitted]],
                             receive[delivered] + msgs["submit_delay"][pm[delivered]]
                             + self.rng.integers(1_000, 6_000, len(delivered)) * 1_000_000,
                             attempts["ts"]])
        hop_event = attempts["event"]
        event = np.concatenate([np.repeat([EVENTS.index(e) for e in ("receive", "submit", "deliver")],
                                          [len(beh), len(submitted), len(delivered)]),
                                np.select([hop_event == "defer", hop_event == "send"],
                                          [EVENTS.index("defer"), EVENTS.index("send")], EVENTS.index("fail"))])
        rank = np.array([0, 1, 3, 3, 2, 4])[event]  # receive, submit, defer, send/deliver, fail
        order = np.lexsort((rank, ts, pairs["pos"][pair], pm[pair], receive[pair]))
        p, m = pair[order], pm[pair[order]]
        rows, pairs_at, msgs_at = pa.array(order), pa.array(p), pa.array(m)
        attempt_at = pa.array(order - n_local, mask=order < n_local)

        def hop(column: str) -> pa.Array:
            """An attempt column for every row (null on local events), in row order."""
            return attempts[column].take(attempt_at)

        direction = np.select([beh == "inbound", beh == "internal"], [1, 2], 0)[p]  # codes of DIRECTIONS
        status_code = np.select([status == "pending", status == "failed"], [1, 2], 0)[p]  # codes of STATUSES
        domain = pairs["domain"].take(pairs_at)
        code = np.concatenate([np.zeros(n_local, np.int64), attempts["smtp_code"]])[order]
        exo_host = pa.concat_arrays([_where(beh == "inbound", inbound_host, server), server.take(pa.array(submitted)),
                                     pairs["mailbox_server"].take(pa.array(delivered)), attempts["exo_host"]])
        connector = _where(pc.equal(domain, "litware.com").to_numpy(zero_copy_only=False), PARTNER_CONNECTOR,
                           DEFAULT_CONNECTOR)
        return pd.DataFrame({
            "timestamp": pd.Series((ts[order] + self.start_ns).view("datetime64[ns]")).dt.tz_localize("UTC"),
            "message_id": _col(msgs["message_id"].take(msgs_at)),
            "trace_id": _col(msgs["trace_id"].take(msgs_at)),
            "sender": _col(msgs["sender"].take(msgs_at)),
            "recipient": _col(pairs["recipient"].take(pairs_at)),
            "recipient_domain": _col(domain),
            "subject": _col(msgs["subject"].take(msgs_at)),
            "size_bytes": msgs["size"][m],
            "direction": pd.Categorical.from_codes(direction, categories=DIRECTIONS),
            "event": pd.Categorical.from_codes(event[order], categories=EVENTS),
            "status": pd.Categorical.from_codes(status_code, categories=STATUSES),
            "reply": _col(hop("reply")),
            "remote_reply": _col(hop("remote_reply")),
            "smtp_code": pd.arrays.IntegerArray(code.astype(np.int16), mask=code == 0),
            "enhanced_code": _col(hop("enhanced_code")),
            "remote_host": _col(hop("remote_host")),
            "remote_ip": _col(hop("remote_ip")),
            "exo_host": _col(exo_host.take(rows)),
            "exo_ip": _col(hop("exo_ip")),
            "client_ip": _col(msgs["client_ip"].take(msgs_at)),
            "connector": _col(_where(direction == 0, connector, None)),
            # provenance: none in the truth (given here only because building all-NA columns is slow)
            "source_format": pd.Categorical.from_codes(np.full(len(order), -1), categories=[]),
            "source_file": pd.Categorical.from_codes(np.full(len(order), -1), categories=[]),
            "source_row": pd.arrays.IntegerArray(np.zeros(len(order), np.int64), mask=np.ones(len(order), bool)),
        })


def generate_story(seed: int = DEFAULT_SEED, *, messages: int = DEFAULT_MESSAGES, start: str = "2026-11-16",
                   days: int = 7) -> pd.DataFrame:
    """The ground-truth events table of docs/sample-story.md: canonical schema, one row per event.

    ``messages`` scales the base traffic and most story elements; the story's dates (the outage, the
    Thursday mail blast) are fixed offsets from ``start`` and assume ``days >= 7``.
    """
    return conform(_Story(np.random.default_rng(seed), messages, pd.Timestamp(start, tz="UTC"), days).events())


# --- writing the exports ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """How a file is encoded, delimited and quoted: the one writer every CSV-like export goes through."""

    encoding: str  # ascii (non-ASCII -> "?"), utf-8, utf-8-sig or utf-16 (little-endian with BOM)
    delimiter: str = ","
    quote_all: bool = True  # every field quoted, as Export-Csv does; else only fields that need it
    eol: str = "\r\n"
    preamble: tuple[str, ...] = ()  # lines before the header (#TYPE, #Software, ...)
    header: bool = True


_BOMS = {"utf-8-sig": b"\xef\xbb\xbf", "utf-16": b"\xff\xfe"}


def _quoted(values: pa.Array) -> pa.Array:
    """Text with its double quotes doubled, as CSV needs inside a quoted field."""
    return pc.replace_substring(values, '"', '""') if pc.any(pc.match_substring(values, '"')).as_py() else values


def _write_csv(frame: pd.DataFrame, path: Path, layout: _Layout, *, append: bool = False) -> None:
    """Write ``frame`` in ``layout``; ``append`` adds rows only (no BOM, preamble or header).

    Lines are built on whole columns and written straight from the resulting text buffer.
    """
    names = [str(name) for name in frame.columns]
    columns = [_text(frame, name) for name in frame.columns]
    if layout.encoding == "ascii":  # like Windows PowerShell 5.1: each non-ASCII character becomes "?"
        columns = [col if pc.all(pc.string_is_ascii(col)).as_py() is not False else
                   pc.replace_substring_regex(col, r"[^\x00-\x7F]", "?") for col in columns]
    delimiter, eol = layout.delimiter, layout.eol
    if layout.quote_all:
        header = '"' + f'"{delimiter}"'.join(name.replace('"', '""') for name in names) + '"'
        lines = _cat('"', pc.binary_join_element_wise(*map(_quoted, columns), _pa(f'"{delimiter}"')), '"' + eol)
    else:
        special = f'[{re.escape(delimiter)}"\r\n]'

        def field(values: pa.Array) -> pa.Array:
            return _where(pc.match_substring_regex(values, special), _cat('"', _quoted(values), '"'), values)

        header = delimiter.join(f'"{n}"' if re.search(special, n) else n for n in names)
        lines = _cat(pc.binary_join_element_wise(*map(field, columns), _pa(delimiter)), eol)
    head = b"" if append else "".join(
        line + eol for line in [*layout.preamble, *([header] if layout.header else [])]).encode("utf-8")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:lines.offset + len(lines) + 1]
    body = memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]] if len(lines) else memoryview(b"")
    with path.open("ab" if append else "wb") as out:
        if layout.encoding == "utf-16":
            out.write(b"" if append else _BOMS["utf-16"])
            out.write((head + bytes(body)).decode("utf-8").encode("utf-16-le"))
        else:
            out.write(b"" if append else _BOMS.get(layout.encoding, b"") + head)
            out.write(body)


def _trace_window(events: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The whole UTC days the trace covers: the query window the exports echo."""
    return events.timestamp.min().floor("D"), events.timestamp.max().ceil("D")


def _pair_ids(events: pd.DataFrame) -> np.ndarray:
    """0, 1, 2... per (message, recipient); ``events`` holds each pair's events together (truth order)."""
    if len(events) == 0:
        return np.zeros(0, dtype=np.int64)
    message, recipient = _pa(events.message_id), _pa(events.recipient)
    new = pc.or_(pc.not_equal(message[1:], message[:-1]), pc.not_equal(recipient[1:], recipient[:-1]))
    return np.concatenate([[0], np.cumsum(new.to_numpy(zero_copy_only=False))])


def _pairs_where(events: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """All events of the (message, recipient) pairs that have a row in ``mask``."""
    pair = _pair_ids(events)
    return events[np.isin(pair, pair[mask])]


def _text(events: pd.DataFrame, column: str) -> pa.Array:
    """A column as text, NA as ""."""
    return pc.fill_null(_pa(events[column]), "")


def _frame(columns: dict[str, object], n: int) -> pd.DataFrame:
    """A frame of STRING columns; str values are repeated ``n`` times."""
    return pd.DataFrame({name: _col(_repeat(v, n) if isinstance(v, str) else v)
                         for name, v in columns.items()})


def _by_case(case: np.ndarray, build: dict[object, object]) -> pa.Array:
    """One text column put together case by case: ``build[case]`` is the text of that case's rows (an array
    in row order, a str or None for all of them) or a function of the rows that computes it."""
    where, parts = [], []
    for name in sorted(set(case.tolist())):
        rows = np.flatnonzero(case == name)
        value = build[name](rows) if callable(build[name]) else build[name]
        where.append(rows)
        parts.append(_repeat(value, len(rows)) if value is None or isinstance(value, str) else value)
    back = np.empty(len(case), dtype=np.int64)
    if where:
        back[np.concatenate(where)] = np.arange(len(case))
    return pa.concat_arrays(parts).take(pa.array(back)) if parts else pa.nulls(0, _STR)


_TITLE = {"receive": "Receive", "submit": "Submit", "defer": "Defer", "send": "Send", "deliver": "Deliver",
          "fail": "Fail"}
_STATUS = {"delivered": "Delivered", "pending": "Pending", "failed": "Failed"}
_EXO_GENERATED = r"^\d{3} [45]\.4\.31\d"  # EXO's own 4.4.31x / 5.4.31x errors: the host is in the brackets


# -- summary family: Get-MessageTrace(V2) and the new EAC export, one row per message+recipient -------------
@dataclass(frozen=True)
class _Summary:
    columns: tuple[tuple[str, str], ...]  # (header, field)
    date_style: str
    days: tuple[int, int] = (0, 1 << 30)  # received on these days after the trace start, in the file's zone
    offset_hours: int = 0  # the file's time zone


def _summary_slice(events: pd.DataFrame, spec: _Summary) -> pd.DataFrame:
    start, _ = _trace_window(events)
    day = (_ns(events.timestamp) + spec.offset_hours * _HOUR - start.value) // _DAY
    return _pairs_where(events, (events.event == "receive").to_numpy() & (day >= spec.days[0]) & (day < spec.days[1]))


def _summary_rows(events: pd.DataFrame, spec: _Summary) -> pd.DataFrame:
    """Newest first, as the cmdlets return them; status is the final one, ToIP the last MX tried."""
    start, end = _trace_window(events)
    pair = _pair_ids(events)
    tried = np.flatnonzero(events.remote_ip.notna().to_numpy())
    last_tried = np.full(pair.max() + 1 if len(pair) else 0, -1)
    np.maximum.at(last_tried, pair[tried], tried)
    rec = np.flatnonzero((events.event == "receive").to_numpy())
    rec = rec[np.argsort(-_ns(events.timestamp.iloc[rec]), kind="stable")]
    ev = events.iloc[rec]
    to_ip = _text(events, "remote_ip").take(pa.array(np.maximum(last_tried[pair[rec]], 0)))
    fields = {
        "received": _fmt_time(_ns(ev.timestamp), spec.date_style, offset_hours=spec.offset_hours),
        "sender": _text(ev, "sender"), "recipient": _text(ev, "recipient"), "subject": _text(ev, "subject"),
        "status": _pa(ev.status.astype(str).map(_STATUS)),
        "to_ip": _where((ev.direction == "outbound").to_numpy() & (last_tried[pair[rec]] >= 0), to_ip, ""),
        "from_ip": _where((ev.direction == "inbound").to_numpy(), _text(ev, "client_ip"), ""),
        "size": _text(ev, "size_bytes"), "message_id": _text(ev, "message_id"),
        "trace_id": _text(ev, "trace_id"), "organization": ORGANIZATION,
        "computer": "outlook.office365.com", "runspace": "3f8e0c21-6d4b-4a9e-9c71-5e2b8d0f4a67",
        "show_computer": "False", "start": _fmt_one(start, spec.date_style), "end": _fmt_one(end, spec.date_style),
        "index": _pa(np.arange(len(ev))),
    }
    return _frame({header: fields[field] for header, field in spec.columns}, len(ev))


# -- Get-MessageTraceDetail: one row per event of the chosen message+recipients -----------------------------
def _detail_slice(events: pd.DataFrame, *, every_pair: bool = False) -> pd.DataFrame:
    """Pairs with a deferral or failure, plus delivered outbound ones whose trace id ends in "00"."""
    if every_pair:
        return events
    chosen = events.event.isin(["defer", "fail"]) | (
        (events.direction == "outbound") & events.trace_id.str.endswith("00"))
    return _pairs_where(events, chosen.to_numpy())


def _reason(events: pd.DataFrame, rows: np.ndarray, pair: np.ndarray) -> pa.Array:
    """``[{LED=...};{MSG=};{FQDN=...};{IP=...};{LRT=...}]`` of the Defer/Fail events at ``rows``.

    ``events`` holds each pair's events together, in time order (``pair``: their _pair_ids). FQDN/IP are
    empty for EXO's own connection errors; LRT is the attempt's time, for a failure the last deferral's
    (empty when it failed at once).
    """
    previous = np.maximum(rows - 1, 0)
    after_defer = (pair[previous] == pair[rows]) & (rows > 0) & (events.event.to_numpy()[previous] == "defer")
    is_defer = events.event.to_numpy()[rows] == "defer"
    ns = _ns(events.timestamp)
    lrt = _where(is_defer | after_defer, _fmt_time(np.where(is_defer, ns[rows], ns[previous]), "en-US"), "")
    ev = events.iloc[rows]
    own = ~ev.reply.fillna("").str.contains(_EXO_GENERATED, regex=True).to_numpy(dtype=bool)
    return _cat("[{LED=", _text(ev, "reply"), "};{MSG=};{FQDN=", _where(own, _text(ev, "remote_host"), ""),
                "};{IP=", _where(own, _text(ev, "remote_ip"), ""), "};{LRT=", lrt, "}]")


def _detail_rows(events: pd.DataFrame) -> pd.DataFrame:
    """Message+recipients newest first (as a script walking the summary would ask), events oldest first."""
    start, end = _trace_window(events)
    first_seen = pd.Series(_ns(events.timestamp)).groupby(_pair_ids(events)).transform("min").to_numpy()
    ev = events.iloc[np.lexsort((np.arange(len(events)), -first_seen))].reset_index(drop=True)
    pair = _pair_ids(ev)
    text = {c: _text(ev, c) for c in ("remote_host", "remote_ip", "exo_host", "connector", "client_ip", "sender")}

    def at(rows: np.ndarray, column: str) -> pa.Array:
        return text[column].take(pa.array(rows))

    def reason(rows: np.ndarray) -> pa.Array:
        return _cat("Reason: ", _reason(ev, rows, pair), ". OutboundProxyTargetIP: ", at(rows, "remote_ip"),
                    ". OutboundProxyTargetHostName: ", at(rows, "remote_host"))

    def hop(rows: np.ndarray) -> pa.Array:
        return _cat('<root><MEP Name="Connector" String="', at(rows, "connector"),
                    '"/><MEP Name="ServerHostName" String="', at(rows, "exo_host"), '"/></root>')

    def server(rows: np.ndarray) -> pa.Array:
        return _cat('<root><MEP Name="ServerHostName" String="', at(rows, "exo_host"), '"/></root>')

    event = ev.event.astype(str).to_numpy()
    detail = _by_case(event, {
        "receive": lambda rows: _cat("Message received by: ", at(rows, "exo_host")),
        "submit": "The message was submitted.",
        "deliver": "The message was successfully delivered.",
        "send": lambda rows: _cat("Message sent to ", at(rows, "remote_host"), " at ", at(rows, "remote_ip"),
                                  " using TLS1.2 with AES256"),
        "defer": reason, "fail": reason,
    })
    data = _by_case(event, {
        "receive": lambda rows: _cat('<root><MEP Name="ServerHostName" String="', at(rows, "exo_host"),
                                     '"/><MEP Name="ClientIP" String="', at(rows, "client_ip"),
                                     '"/><MEP Name="ReturnPath" String="', at(rows, "sender"), '"/></root>'),
        "submit": server, "deliver": server, "send": hop, "defer": hop, "fail": hop,
    })
    return _frame({
        "Organization": ORGANIZATION, "MessageId": _text(ev, "message_id"),
        "Date": _fmt_time(_ns(ev.timestamp), "en-US"), "Event": _pa(pd.Series(event).map(_TITLE)),
        "Action": "", "Detail": detail, "Data": data, "StartDate": _fmt_one(start, "en-US"),
        "EndDate": _fmt_one(end, "en-US"), "MessageTraceId": _text(ev, "trace_id"),
        "SenderAddress": _text(ev, "sender"), "RecipientAddress": _text(ev, "recipient"),
    }, len(ev))


# -- EAC historical search summaries: one row per message ---------------------------------------------------
_ENHANCED = ("origin_timestamp_utc", "sender_address", "recipient_status", "message_subject", "total_bytes",
             "message_id", "network_message_id", "original_client_ip", "directionality", "connector_id",
             "delivery_priority")
_SUMMARY = _ENHANCED[:8]  # [I] the Summary report: the Enhanced header without its last three columns
_WATCHED = (IRONPORT_DOMAIN, "adventure-works.com", "fourthcoffee.com", "litware.com")


def _messages_where(events: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    return events[events.message_id.isin(set(events.message_id[mask]))]


def _message_rows(events: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """recipient_status = ``addr##Receive[, Defer][, Send|Fail|Deliver]`` per recipient, ``;``-joined."""
    pair = _pair_ids(events)
    event = events.event.astype(str).to_numpy()
    deferred = np.zeros(pair.max() + 1, dtype=bool)
    deferred[pair[event == "defer"]] = True
    last_step = np.full(pair.max() + 1, "", dtype=object)
    final = np.isin(event, ["send", "fail", "deliver"])
    last_step[pair[final]] = ", " + pd.Series(event[final]).map(_TITLE).to_numpy(dtype=object)
    receive = event == "receive"
    rec = events[receive]
    steps = "Receive" + np.where(deferred[pair[receive]], ", Defer", "") + last_step[pair[receive]]
    status = (rec.recipient.astype(str) + "##" + steps).groupby(rec.message_id.astype(str), sort=False).agg(";".join)
    first = rec.drop_duplicates("message_id")
    fields = {
        "origin_timestamp_utc": _fmt_time(_ns(first.timestamp), "iso7"), "sender_address": _text(first, "sender"),
        "recipient_status": _pa(first.message_id.astype(str).map(status)),
        "message_subject": pc.utf8_slice_codeunits(_text(first, "subject"), 0, 256),
        "total_bytes": _text(first, "size_bytes"), "message_id": _text(first, "message_id"),
        "network_message_id": _text(first, "trace_id"), "original_client_ip": _text(first, "client_ip"),
        "directionality": _pa(np.where(first.direction == "inbound", "Incoming", "Originating").astype(object)),
        "connector_id": _text(first, "connector"), "delivery_priority": "Normal",
    }
    return _frame({name: fields[name] for name in columns}, len(first))


# -- tracking-log family: Exchange Server message tracking logs and the EAC Extended report ------------------
_TRACKING_FIELDS = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname", "source-context",
    "connector-id", "source", "event-id", "internal-message-id", "message-id", "network-message-id",
    "recipient-address", "recipient-status", "total-bytes", "recipient-count", "related-recipient-address",
    "reference", "message-subject", "sender-address", "return-path", "message-info", "directionality",
    "tenant-id", "original-client-ip", "original-server-ip", "custom-data", "transport-traffic-type", "log-id",
    "schema-version",
)
_FIELDS_2013 = _TRACKING_FIELDS[:27]
_FIELDS_2010 = tuple(f for f in _FIELDS_2013 if f != "network-message-id")


@dataclass(frozen=True)
class _Tracking:
    fields: tuple[str, ...]
    on_prem: bool  # a log file: ms timestamps, LED-form statuses, single-line replies, no tenant id
    version: str = ""


def _tracking_rows(events: pd.DataFrame, spec: _Tracking, received: pd.Series) -> pd.DataFrame:
    """One line per event in time order; recipients of one event (same message, time, hosts) share it.

    ``events`` must hold each message+recipient's events together and in time order (any truth subset does);
    ``received`` maps every message id to its receive time (ns), which may lie before the slice.
    """
    # Defer/Fail statuses in the LED form (remote host in {FQDN=}/{IP=} or [LastAttempted...]), on one line;
    # a log file keeps every reply on one line
    status = _text(events, "reply")
    flat = events.assign(reply=_col(pc.replace_substring(status, "\r\n", " ")).to_numpy())
    pair = _pair_ids(events)
    status = _by_case(np.where(events.event.isin(["defer", "fail"]), "led", "reply"), {
        "led": lambda rows: _reason(flat, rows, pair),
        "reply": lambda rows: _text(flat if spec.on_prem else events, "reply").take(pa.array(rows))})
    order = np.argsort(_ns(events.timestamp), kind="stable")
    ev, status = events.iloc[order].reset_index(drop=True), status.take(order)
    n = len(ev)
    event = ev.event.astype(str).to_numpy()
    is_hop = np.isin(event, ["defer", "send", "fail"])
    sent = pa.array(event == "send")  # on DEFER / FAIL the server fields name the local server, as Exchange writes
    inbound = (ev.direction == "inbound").to_numpy()
    hop, incoming = pa.array(is_hop), pa.array(inbound)
    ts = _ns(ev.timestamp)
    received = ev.message_id.map(received).to_numpy(dtype=np.int64)
    session = pc.utf8_upper(pc.utf8_slice_codeunits(pc.replace_substring(_text(ev, "trace_id"), "-", ""), 8, 20))
    values = {
        "date-time": _fmt_time(ts, "iso3" if spec.on_prem else "iso7"),
        "client-ip": _where(hop, _text(ev, "exo_ip"), _where(incoming, _text(ev, "client_ip"), "")),
        "client-hostname": _where(event == "deliver", "", _text(ev, "exo_host")),
        "server-ip": _where(sent, _text(ev, "remote_ip"), _where(hop, _text(ev, "exo_ip"), "")),
        "server-hostname": _where(sent, _text(ev, "remote_host"), _text(ev, "exo_host")),
        "source-context": _cat("08DE", session, ";", _fmt_time(ts, "iso3"), ";ClientSubmitTime:",
                               _fmt_time(received, "iso3")),
        "connector-id": _where(hop, _text(ev, "connector"), ""),
        "source": _pa(np.where(is_hop | (inbound & (event == "receive")), "SMTP", "STOREDRIVER").astype(object)),
        "event-id": pc.utf8_upper(_pa(event.astype(object))),
        "internal-message-id": _pa(pd.factorize(ev.message_id)[0].astype(np.int64) * 7 + 2_680_019_400_000),
        "message-id": _text(ev, "message_id"), "network-message-id": _text(ev, "trace_id"),
        "recipient-address": _text(ev, "recipient"), "recipient-status": status,
        "total-bytes": _text(ev, "size_bytes"), "recipient-count": "1", "related-recipient-address": "",
        "reference": "", "message-subject": _text(ev, "subject"), "sender-address": _text(ev, "sender"),
        "return-path": _text(ev, "sender"), "message-info": _fmt_time(received, "iso3"),
        "directionality": _where(incoming, "Incoming", "Originating"),
        "tenant-id": "" if spec.on_prem else TENANT_ID, "original-client-ip": _text(ev, "client_ip"),
        "original-server-ip": "", "custom-data": "S:DeliveryPriority=Normal", "transport-traffic-type": "Email",
        "log-id": "", "schema-version": spec.version,
    }
    table = _frame({name: values[name] for name in spec.fields}, n)
    line = pc.dictionary_encode(_cat(values["message-id"], "|", values["event-id"], "|", values["date-time"], "|",
                                     values["client-ip"], "|", values["server-ip"])).indices.to_numpy()
    joined = table.groupby(line, sort=False)[["recipient-address", "recipient-status"]].agg(";".join)
    table = table[~pd.Series(line).duplicated().to_numpy()].reset_index(drop=True)
    table["recipient-address"] = _col(joined["recipient-address"].to_numpy(dtype=object))
    table["recipient-status"] = _col(joined["recipient-status"].str.replace(r"^;+$", "", regex=True)
                                     .to_numpy(dtype=object))
    table["recipient-count"] = _col(joined["recipient-address"].str.count(";").to_numpy() + 1)
    if not spec.on_prem:
        table.columns = ["date_time_utc" if c == "date-time" else c.replace("-", "_") for c in table.columns]
    return table


# -- the partner's IronPort allow-list -----------------------------------------------------------------------
_HAT_ENTRIES = (
    "40.92.0.0/15", "40.107.0.0/16", "104.47.0.0/17", "2a01:111:f400::/48", "2a01:111:f403::/48",
    # stale: old Microsoft (FOPE-era) entries from earlier Exchange Online IP lists
    "65.55.88.0/24", "94.245.120.64-127", ".messaging.microsoft.com",
    # over-broad: "simplifies" the old 157.55.234.0/24 and 157.56.110.0/23 to a whole /8
    "157.0.0.0/8",
)


def _allowlist_text() -> str:
    """The partner appliance's Host Access Table export: every current EXO range except 52.100.0.0/14."""
    members = "".join(f"    {entry}\n" for entry in _HAT_ENTRIES)
    return (
        "$ACCEPTED\n    ACCEPT\n\n"
        "$BLOCKED\n    REJECT {}\n\n"
        '$TRUSTED\n    ACCEPT {\n        spam_check = "off"\n        virus_check = "on"\n'
        "        max_rcpts_per_hour = -1\n        max_msgs_per_session = 5000\n    }\n\n"
        "$UNLISTED_DEFER\n    REJECT {\n        smtp_banner_code = 421\n"
        '        smtp_banner_text = "Your access to this mail system from $RemoteIP has been rejected due to the'
        " sending MTA's poor reputation. If you believe that this failure is in error, please contact the"
        ' intended recipient via alternate means."\n    }\n\n'
        f"PARTNER_MICROSOFT365:\n{members}"
        "    $TRUSTED (Exchange Online outbound for partner contoso.com - reviewed 2016-04-11)\n\n"
        "BLOCKED_LIST:\n    $BLOCKED (Spammers are rejected)\n\n"
        "ALL\n    $UNLISTED_DEFER (Everyone else: only listed partners may send)\n"
    )


# -- the files -----------------------------------------------------------------------------------------------
FORMATS = ("messagetrace", "messagetrace_v2_de", "messagetrace_v2_gb", "detail", "eac_enhanced_summary",
           "eac_summary", "eac_extended", "new_eac", "msgtrk", "msgtrk2013", "msgtrk2010", "allowlist")
BIG_FORMATS = ("messagetrace", "messagetrace_v2_de", "messagetrace_v2_gb", "new_eac", "detail")
ALLOWLIST_FILE = "partner_allowlist_ironport.txt"
_V2 = (("Received", "received"), ("SenderAddress", "sender"), ("RecipientAddress", "recipient"),
       ("Subject", "subject"), ("Status", "status"), ("ToIP", "to_ip"), ("FromIP", "from_ip"), ("Size", "size"),
       ("MessageId", "message_id"), ("MessageTraceId", "trace_id"), ("Organization", "organization"))
_PS51 = _Summary((("PSComputerName", "computer"), ("RunspaceId", "runspace"),
                  ("PSShowComputerName", "show_computer"), ("Organization", "organization"),
                  ("MessageId", "message_id"), ("Received", "received"), ("SenderAddress", "sender"),
                  ("RecipientAddress", "recipient"), ("Subject", "subject"), ("Status", "status"),
                  ("ToIP", "to_ip"), ("FromIP", "from_ip"), ("Size", "size"), ("MessageTraceId", "trace_id"),
                  ("StartDate", "start"), ("EndDate", "end"), ("Index", "index")), "en-US")
_V2_DE = _Summary(_V2, "de-DE", days=(0, 3))
_V2_GB = _Summary(_V2, "en-GB", days=(2, 7))
_NEW_EAC = _Summary((("Date (UTC+01:00)", "received"), ("Sender", "sender"), ("Recipient", "recipient"),
                     ("Subject", "subject"), ("Status", "status"), ("Message ID", "message_id"),
                     ("Message trace ID", "trace_id"), ("Message size", "size"), ("From IP", "from_ip"),
                     ("To IP", "to_ip")), "en-US", days=(4, 7), offset_hours=1)
_PS_TYPE = "#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace"
_LOGS = (  # key, file name (None: MSGTRKyyyymmdd-1.LOG), days after the trace start, fields, version, events
    ("msgtrk", None, (0, 1), _TRACKING_FIELDS, "15.02.1544.004", None),
    ("msgtrk", None, (1, 2), _TRACKING_FIELDS, "15.02.1544.004", None),
    ("msgtrk2013", "MSGTRK2013.LOG", (2, 4), _FIELDS_2013, "15.00.1104.000", 250),
    ("msgtrk2010", "MSGTRK2010.LOG", (4, 7), _FIELDS_2010, "14.0.0.0", 250),
)


@dataclass(frozen=True)
class _File:
    """One export file: which truth rows it is rendered from, how to render them and how to encode them."""

    name: str
    key: str
    select: Callable[[], pd.DataFrame]
    render: Callable[[pd.DataFrame], pd.DataFrame]
    layout: Callable[[pd.DataFrame], _Layout]  # of the selected rows (a log's #Date is its first event)


def _first_by_time(events: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """The ``limit`` earliest events, kept in truth order."""
    if limit is None:
        return events
    keep = np.argsort(_ns(events.timestamp), kind="stable")[:limit]
    return events.iloc[np.sort(keep)]


def _log_layout(fields: tuple[str, ...], version: str) -> Callable[[pd.DataFrame], _Layout]:
    def layout(rows: pd.DataFrame) -> _Layout:
        first = rows.timestamp.min() if len(rows) else pd.Timestamp(0, tz="UTC")
        return _Layout("utf-8-sig", quote_all=False, header=False, preamble=(
            "#Software: Microsoft Exchange Server", f"#Version: {version}", "#Log-type: Message Tracking Log",
            f"#Date: {_fmt_one(first, 'iso3')}", "#Fields: " + ",".join(fields)))

    return layout


def _files(events: pd.DataFrame, *, every_detail: bool = False) -> list[_File]:
    """Every export file of ``events`` (``every_detail``: the Detail export holds every message+recipient)."""
    start, _ = _trace_window(events)

    def tracking(spec: _Tracking) -> Callable[[pd.DataFrame], pd.DataFrame]:
        def render(rows: pd.DataFrame) -> pd.DataFrame:
            first = events[events.event == "receive"].drop_duplicates("message_id")
            return _tracking_rows(rows, spec, pd.Series(_ns(first.timestamp), index=first.message_id.to_numpy()))

        return render

    def summary(name: str, key: str, spec: _Summary, layout: _Layout) -> _File:
        return _File(name, key, lambda: _summary_slice(events, spec), lambda rows: _summary_rows(rows, spec),
                     lambda _: layout)

    def messages(name: str, key: str, mask: Callable[[], pd.Series], columns: tuple[str, ...]) -> _File:
        return _File(name, key, lambda: _messages_where(events, mask()), lambda rows: _message_rows(rows, columns),
                     lambda _: _Layout("utf-16"))

    def log(name: str, key: str, days: tuple[int, int], fields: tuple[str, ...], version: str,
            limit: int | None) -> _File:
        def select() -> pd.DataFrame:
            onprem = events[events.sender.isin(_onprem_senders())]
            day = (_ns(onprem.timestamp) - start.value) // _DAY
            return _first_by_time(onprem[(day >= days[0]) & (day < days[1])], limit)

        return _File(name, key, select, tracking(_Tracking(fields, True, version)), _log_layout(fields, version))

    return [
        summary("messagetrace_ps51_en-US.csv", "messagetrace", _PS51, _Layout("ascii", preamble=(_PS_TYPE,))),
        summary("messagetrace_v2_de-DE.csv", "messagetrace_v2_de", _V2_DE, _Layout("utf-8-sig", delimiter=";")),
        summary("messagetrace_v2_en-GB_ps7.csv", "messagetrace_v2_gb", _V2_GB, _Layout("utf-8", eol="\n")),
        _File("messagetrace_detail.csv", "detail", lambda: _detail_slice(events, every_pair=every_detail),
              _detail_rows, lambda _: _Layout("utf-8")),
        messages("eac_enhanced_summary.csv", "eac_enhanced_summary",
                 lambda: events.recipient_domain.isin(_WATCHED) & (events.direction == "outbound"), _ENHANCED),
        messages("eac_summary.csv", "eac_summary", lambda: events.sender == MARKETING_SENDER, _SUMMARY),
        _File("eac_extended_tailspintoys.csv", "eac_extended",
              lambda: _first_by_time(events[events.recipient_domain == IRONPORT_DOMAIN], EXTENDED_SAMPLE_ROWS),
              tracking(_Tracking(_FIELDS_2013, False)), lambda _: _Layout("utf-16")),
        summary("new_eac_messagetrace.csv", "new_eac", _NEW_EAC, _Layout("utf-8-sig", quote_all=False)),
        *[log(name or f"MSGTRK{start + pd.Timedelta(days=days[0]):%Y%m%d}-1.LOG", key, days, fields, version, limit)
          for key, name, days, fields, version, limit in _LOGS],
    ]


def file_slice(events: pd.DataFrame, name: str) -> pd.DataFrame:
    """The truth rows (events) the export file ``name`` is rendered from, for tests that compare.

    Summary exports show one row per message+recipient of these events; the others one row per event
    (tracking logs join the recipients of one event on one line).
    """
    for f in _files(events):
        if f.name == name:
            return f.select()
    raise KeyError(f"no export file named {name!r}")


def file_rows(events: pd.DataFrame) -> dict[str, int]:
    """Data rows (lines after the header) of each export file that :func:`write_formats` writes of ``events``."""
    return {f.name: len(f.render(f.select())) for f in _files(events)}


def write_formats(events: pd.DataFrame, folder: str | Path, *, formats: Sequence[str] | None = None
                  ) -> dict[str, Path]:
    """Write ``events`` in every export layout (or only ``formats``, keys of FORMATS) into ``folder``.

    Returns file name -> path of every file written.
    """
    chosen = tuple(formats or FORMATS)
    unknown = sorted(set(chosen) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; expected some of {', '.join(FORMATS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for f in _files(events):
        if f.key in chosen:
            rows = f.select()
            _write_csv(f.render(rows), folder / f.name, f.layout(rows))
            written[f.name] = folder / f.name
    if "allowlist" in chosen:
        (folder / ALLOWLIST_FILE).write_bytes(_allowlist_text().encode("ascii"))
        written[ALLOWLIST_FILE] = folder / ALLOWLIST_FILE
    return written


# --- big traces for benchmarks ------------------------------------------------------------------------------
_CHUNK_MESSAGES = 200_000


def _first_pairs(events: pd.DataFrame, rows: int, *, per_pair: bool) -> pd.DataFrame:
    """The events of the first message+recipients that give at least ``rows`` rows (one per pair or event)."""
    pair = _pair_ids(events)
    if per_pair:
        return events[pair < rows]
    return events if rows >= len(events) else events[pair <= pair[rows - 1]]


def write_big(folder: str | Path, rows: int, *, seed: int = DEFAULT_SEED,
              formats: Sequence[str] = ("messagetrace", "detail")) -> dict[str, int]:
    """Write at least ``rows`` data rows of each of ``formats`` (keys of BIG_FORMATS) into ``folder``.

    Stories of the default week with up to ``_CHUNK_MESSAGES`` messages (seeds ``seed``, ``seed + 1``, ...)
    are appended until every file has enough rows, so memory stays bounded; the Detail export holds every
    message+recipient.
    Returns file name -> data rows written.
    """
    wrong = sorted(set(formats) - set(BIG_FORMATS))
    if wrong:
        raise ValueError(f"big traces support {', '.join(BIG_FORMATS)}, not {', '.join(wrong)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count: dict[str, int] = {}
    chunk = 0
    while len(count) < len(formats) or min(count.values()) < rows:
        messages = min(_CHUNK_MESSAGES, max(rows, 5_000))  # every chunk has more pairs and events than rows
        story = _Story(np.random.default_rng(seed + chunk), messages, pd.Timestamp("2026-11-16", tz="UTC"), 7)
        for f in _files(story.events(), every_detail=True):
            if f.key in formats and count.get(f.name, 0) < rows:
                selected = _first_pairs(f.select(), rows - count.get(f.name, 0), per_pair=f.key != "detail")
                frame = f.render(selected)
                if "Index" in frame:
                    frame["Index"] = _col(np.arange(len(frame)) + count.get(f.name, 0))
                _write_csv(frame, folder / f.name, f.layout(selected), append=f.name in count)
                count[f.name] = count.get(f.name, 0) + len(frame)
        chunk += 1
    return count


# --- command line -------------------------------------------------------------------------------------------
