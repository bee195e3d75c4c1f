"""Microsoft 365 endpoints: bundled snapshot, web-service client (against a real loopback server), matching."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import netaddr
import numpy as np
import pandas as pd
import pytest
from endpoints_server import NEW_VERSION, OLD_VERSION, EndpointsServer, recorded_sets
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.cli.endpoints import main as endpoints_cli
from analysis.core.errors import EndpointsError
from analysis.reference import endpoints as ep
from analysis.reference.endpoints import (
    CidrIndex,
    Endpoints,
    EndpointsFallbackWarning,
    parse_endpoint_records,
    parse_ips,
)

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data" / "endpoints"
SMTP_RANGES = ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17",
               "2a01:111:f400::/48", "2a01:111:f403::/48"]


@pytest.fixture
def server():
    with EndpointsServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test touches the user's cache or honours an outside offline switch; waits are recorded."""
    monkeypatch.setenv("EXO_DEFERRALS_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.delenv("EXO_DEFERRALS_OFFLINE", raising=False)
    waits: list[float] = []
    monkeypatch.setattr(ep, "_sleep", waits.append)
    return waits


def fetch(server: EndpointsServer, cache: Path, **kwargs) -> Endpoints:
    kwargs.setdefault("timeout", 2.0)
    return Endpoints.fetch(base_url=server.base_url, cache_dir=cache, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# the bundled snapshot


def test_bundled_snapshot_version_and_provenance():
    bundled = Endpoints.bundled()
    assert (bundled.instance, bundled.version, bundled.source) == ("Worldwide", "2025013000", "bundled")
    assert bundled.date.isoformat() == "2025-01-30"
    assert bundled.fallback is None and bundled.fetched_at is None
    assert bundled.provenance["derived"] is True and "derived" in bundled.provenance["note"]
    inputs = {i["file"]: i for i in bundled.provenance["inputs"]}
    for name, item in inputs.items():
        assert item["sha256"] == hashlib.sha256((DATA / name).read_bytes()).hexdigest()
    assert inputs["exchange-sets-2025013000-derived.json"]["derived"] is True
    assert inputs["worldwide-2020122300-verbatim.json"]["derived"] is False
    by_file = bundled.provenance["sets"]
    for s in bundled.sets:
        expected = "exchange-sets-2025013000-derived.json" if s.service_area == "Exchange" else \
            "worldwide-2020122300-verbatim.json"
        assert by_file[str(s.id)] == expected
    assert {s.id for s in bundled.sets if s.service_area == "Exchange"} == {1, 2, 8, 9, 10}


def test_snapshot_is_what_the_build_script_produces():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "build_endpoints_snapshot.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_exchange_mail_flow_ranges():
    bundled = Endpoints.bundled()
    assert bundled.exchange_mail_flow_ranges() == [
        "40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "52.238.78.88/32", "104.47.0.0/17",
        "2a01:111:f400::/48", "2a01:111:f403::/48"]
    assert bundled.exchange_mail_flow_ranges(port=25) == SMTP_RANGES
    assert {s.id for s in bundled.sets if s.exo_mail_flow} == {9, 10}


def test_to_frame_has_one_row_per_set():
    frame = Endpoints.bundled().to_frame()
    assert len(frame) == len(Endpoints.bundled().sets)
    assert frame.loc[frame["id"] == 10, "exo_mail_flow"].item()


@pytest.mark.parametrize(("record", "problem"), [
    ({"id": "10", "serviceArea": "Exchange", "category": "Allow"}, "not an integer"),
    ({"id": True, "serviceArea": "Exchange", "category": "Allow"}, "not an integer"),
    ({"id": 10, "serviceArea": "Exchange", "category": "Allow", "ips": ["52.100.0.0/33"]}, "not a CIDR"),
    ({"id": 10, "serviceArea": "Exchange", "category": "Fast"}, "category"),
    ({"id": 10, "serviceArea": "Exchange", "category": "Allow", "tcpPorts": "25;443"}, "port list"),
    ({"id": 10, "serviceArea": "Exchange", "category": "Allow", "required": "yes"}, "true/false"),
])
def test_endpoint_records_are_validated(record, problem):
    with pytest.raises(EndpointsError, match=problem):
        parse_endpoint_records([record])


@pytest.mark.parametrize("version", ["2025013", "20251330000", "abcd013000", None])
def test_versions_are_validated(version):
    with pytest.raises(EndpointsError, match="YYYYMMDDNN"):
        ep.version_date(version)


# ---------------------------------------------------------------------------------------------------------
# matching IPs


def test_match_ips_forms_index_and_dtypes():
    values = pd.Series(
        ["52.101.4.5", " 40.107.55.105:25 ", "[2a01:111:f403:c000::1]:25", "::ffff:104.47.1.2",
         "[IPv6:2A01:111:F403::9]", "13.107.6.152", "8.8.8.8", "garbage", "", None, "01.2.3.4", "fe80::1%eth0"],
        index=pd.Index(list("abcdefghijkl"), name="row"))
    frame, invalid = Endpoints.bundled().match_ips(values, return_invalid_count=True)
    assert frame.index.equals(values.index)
    assert invalid == frame.attrs["invalid"] == 3
    assert frame["ip"].tolist()[:7] == ["52.101.4.5", "40.107.55.105", "2a01:111:f403:c000::1", "104.47.1.2",
                                        "2a01:111:f403::9", "13.107.6.152", "8.8.8.8"]
    assert frame["ip"].iloc[7:].isna().all()
    assert frame["valid"].tolist() == [True] * 7 + [False] * 5
    assert frame["in_m365"].tolist()[:7] == [True, True, True, True, True, True, False]
    assert frame["in_m365"].iloc[7:].isna().all()
    assert frame["endpoint_set"].tolist()[:6] == [10, 10, 10, 10, 10, 1]
    assert frame["exo_mail_flow"].tolist()[:7] == [True, True, True, True, True, False, False]
    assert frame["cidr"].tolist()[:6] == ["52.100.0.0/14", "40.107.0.0/16", "2a01:111:f403::/48", "104.47.0.0/17",
                                          "2a01:111:f403::/48", "13.107.6.152/31"]
    assert frame.loc["f", "service_area"] == "Exchange" and frame.loc["f", "category"] == "Optimize"
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        "ip": "string", "valid": "boolean", "in_m365": "boolean", "endpoint_set": "Int64",
        "service_area": "string", "category": "string", "exo_mail_flow": "boolean", "cidr": "string"}


def test_match_ips_prefers_the_mail_flow_set():
    old = Endpoints(recorded_sets(OLD_VERSION), version=OLD_VERSION)  # 2a01:111:f400::/48 is in sets 1 and 10
    frame = old.match_ips(["2a01:111:f400::25", "52.238.78.88", "40.107.1.1"])
    assert frame["endpoint_set"].tolist() == [10, 9, 10]
    assert frame["exo_mail_flow"].tolist() == [True, True, True]


@pytest.mark.parametrize("values", [
    ["52.100.1.1", None, "x"],
    np.array(["52.100.1.1", None, "x"], dtype=object),
    pd.Series(["52.100.1.1", None, "x"], dtype="category"),
    pd.Series(["52.100.1.1", pd.NA, "x"], dtype=pd.StringDtype("pyarrow")),
    pd.Series(["52.100.1.1", float("nan"), 12345], dtype=object),
])
def test_match_ips_accepts_any_column(values):
    frame = Endpoints.bundled().match_ips(values)
    assert frame["ip"].tolist() == ["52.100.1.1", pd.NA, pd.NA]
    assert frame.attrs["invalid"] == 1


def test_match_ips_empty_and_all_missing():
    bundled = Endpoints.bundled()
    assert len(bundled.match_ips(pd.Series([], dtype="string"))) == 0
    frame = bundled.match_ips(pd.Series([None, None], dtype="string"))
    assert frame["valid"].tolist() == [False, False] and frame.attrs["invalid"] == 0


def test_parse_ips_counts_rows_not_distinct_values():
    parsed = parse_ips(["bad", "bad", "1.2.3.4", "", "bad"])
    assert parsed.invalid_count == 3
    assert parsed.row_version.tolist() == [0, 0, 4, -1, 0]


# ---------------------------------------------------------------------------------------------------------
# property tests: the vectorized lookup equals netaddr's answer


def _networks(version: int):
    bits = 32 if version == 4 else 128
    return st.builds(lambda value, prefix: netaddr.IPNetwork((value, prefix), version=version).cidr,
                     st.integers(0, 2**bits - 1), st.integers(0 if version == 4 else 8, bits))


def _addresses(version: int, networks):
    """Random addresses and the edges of the networks; IPv4-mapped IPv6 is left out (it is read as IPv4)."""
    bits = 32 if version == 4 else 128
    edges = [x for n in networks for x in (n.first - 1, n.first, n.last, n.last + 1) if 0 <= x < 2**bits]
    anywhere = st.integers(0, 2**bits - 1)
    drawn = st.one_of(anywhere, st.sampled_from(edges)) if edges else anywhere
    return drawn.filter(lambda a: version == 4 or a >> 32 != 0xFFFF)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from([4, 6]))
def test_lookup_equals_netaddr(data, version):
    networks = data.draw(st.lists(_networks(version), min_size=0, max_size=25))
    addresses = data.draw(st.lists(_addresses(version, networks), min_size=1, max_size=60))
    index = CidrIndex((n, i) for i, n in enumerate(networks))
    starts, ends, _ = index._tables[version]
    assert (starts <= ends).all() and (starts[1:] > ends[:-1]).all()  # sorted, disjoint segments
    texts = [str(ipaddress.IPv6Address(a) if version == 6 else ipaddress.IPv4Address(a)) for a in addresses]
    parsed = parse_ips(texts)
    answers = index.lookup(parsed)[parsed.codes]
    whole = netaddr.IPSet(networks)
    for text, address, answer in zip(texts, addresses, answers, strict=True):
        ip = netaddr.IPAddress(address, version)
        containing = [n for n in networks if ip in n]
        assert (answer >= 0) == (ip in whole), text
        if containing:
            best = max(containing, key=lambda n: n.prefixlen)
            cidr, labels = index.answers[answer]
            assert cidr == str(best)
            assert labels == {i for i, n in enumerate(networks) if ip in n}


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(0, 2**32 - 1).map(lambda a: ipaddress.IPv4Address(a)),
                 st.integers(0, 2**128 - 1).map(lambda a: ipaddress.IPv6Address(a))))
def test_parse_ips_normalizes_like_ipaddress(address):
    parsed = parse_ips([address.exploded, str(address)])
    expected = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else address
    assert parsed.normalized.to_pylist() == [str(expected)] * len(parsed.normalized)
    assert (parsed.version == expected.version).all()


def test_cidr_index_contains_by_row():
    index = CidrIndex([("52.100.0.0/14", "x"), ("2a01:111:f403::/48", "y")])
    assert index.contains(["52.101.0.1", "52.104.0.0", None, "2a01:111:f403::1", "zz"]).tolist() == [
        True, False, False, True, False]
    assert index.contains([]).tolist() == []


# ---------------------------------------------------------------------------------------------------------
# matching host names


def test_match_hosts_wildcards():
    hosts = pd.Series(["mail-am6eur05on2041.outbound.protection.outlook.com",
                       "tailspintoys-com.mail.protection.outlook.com", "contoso.mx.microsoft",
                       "protection.outlook.com", "mx1.hc4112-47.iphmx.com.",
                       "OUTLOOK.OFFICE365.COM", "autodiscover.contoso.onmicrosoft.com",
                       "xbroadcast.officeapps.live.com", "", None, "not a host!"], index=range(100, 111))
    frame = Endpoints.bundled().match_hosts(hosts)
    assert frame.index.equals(hosts.index)
    assert frame["endpoint_set"].tolist()[:4] == [9, 10, 10, 8]
    assert frame["url"].tolist()[:4] == ["*.protection.outlook.com", "*.mail.protection.outlook.com",
                                         "*.mx.microsoft", "*.outlook.com"]
    assert frame["exo_mail_flow"].tolist()[:5] == [True, True, True, False, False]
    assert frame.loc[104, "host"] == "mx1.hc4112-47.iphmx.com" and not frame.loc[104, "in_m365"]
    assert frame.loc[105, "host"] == "outlook.office365.com" and frame.loc[105, "endpoint_set"] == 1
    assert frame.loc[106, "url"] == "autodiscover.*.onmicrosoft.com"
    assert frame.loc[107, "url"] == "*broadcast.officeapps.live.com"
    assert frame["valid"].tolist()[-3:] == [False, False, False]
    assert frame.attrs["invalid"] == 1


def test_wildcards_do_not_match_the_apex_or_cross_labels():
    bundled = Endpoints.bundled()
    assert not bundled.match_hosts(["mx.microsoft"])["in_m365"].item()
    assert bundled.match_hosts(["a.b.c.mx.microsoft"])["endpoint_set"].item() == 10
    assert not bundled.match_hosts(["x.broadcast.officeapps.live.com.evil.example"])["in_m365"].item()


# ---------------------------------------------------------------------------------------------------------
# the web service, against a real HTTP server on 127.0.0.1


def test_fetch_live_then_cache_only_when_version_unchanged(server, tmp_path):
    live = fetch(server, tmp_path)
    assert (live.source, live.version, live.fallback) == ("live", NEW_VERSION, None)
    assert live.fetched_at is not None and live.checked_at is not None
    assert server.paths() == ["/version/Worldwide", "/endpoints/Worldwide"]
    again = fetch(server, tmp_path)
    assert (again.source, again.version, again.fallback) == ("cache", NEW_VERSION, None)
    assert server.paths("/endpoints/") == ["/endpoints/Worldwide"]  # no second download
    assert [s.to_record() for s in again.sets] == [s.to_record() for s in live.sets]
    server.latest["Worldwide"] = OLD_VERSION  # Microsoft publishes another version
    changed = fetch(server, tmp_path)
    assert (changed.source, changed.version) == ("live", OLD_VERSION)
    assert server.paths("/endpoints/") == ["/endpoints/Worldwide"] * 2
    assert len(changed.sets) == len(recorded_sets(OLD_VERSION))


def test_client_request_id_is_persisted_and_sent(server, tmp_path):
    fetch(server, tmp_path)
    fetch(server, tmp_path / "other")
    stored = (tmp_path / "client-request-id").read_text().strip()
    assert uuid.UUID(stored)
    sent = [r.query["ClientRequestId"] for r in server.requests]
    assert sent[0] == sent[1] == [stored]  # /version and /endpoints of the first cache dir
    assert sent[-1] != [stored]  # another cache directory, another GUID
    fetch(server, tmp_path)
    assert server.requests[-1].query["ClientRequestId"] == [stored]
    chosen = str(uuid.uuid4())
    fetch(server, tmp_path, client_request_id=chosen)
    assert server.requests[-1].query["ClientRequestId"] == [chosen]


def test_default_cache_dir_comes_from_the_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DEFERRALS_CACHE", str(tmp_path / "env-cache"))
    Endpoints.fetch(base_url=server.base_url)
    assert (tmp_path / "env-cache" / "endpoints-Worldwide.json").exists()


def test_429_retry_after_is_honoured(server, tmp_path, _isolated):
    server.fail("/endpoints/", status=429, headers={"Retry-After": "2"})
    live = fetch(server, tmp_path)
    assert live.source == "live"
    assert _isolated == [2.0]
    assert server.paths("/endpoints/") == ["/endpoints/Worldwide"] * 2


def test_500_then_success_backs_off_exponentially(server, tmp_path, _isolated):
    server.fail("/version/", status=500, times=2)
    live = fetch(server, tmp_path, backoff=0.25)
    assert live.source == "live"
    assert _isolated == [0.25, 0.5]


def test_attempts_are_bounded_then_the_snapshot_is_used_loudly(server, tmp_path, _isolated):
    server.fail("/version/", status=503, times=100)
    with pytest.warns(EndpointsFallbackWarning, match=r"NOT live.*bundled.*2025013000.*2025-01-30.*HTTP 503"):
        result = fetch(server, tmp_path, retries=3)
    assert result.source == "bundled" and "HTTP 503" in result.fallback
    assert len(server.paths("/version/")) == 3 and len(_isolated) == 2


def test_retry_after_longer_than_allowed_gives_up_at_once(server, tmp_path, _isolated):
    server.fail("/version/", status=429, headers={"Retry-After": "3600"})
    with pytest.warns(EndpointsFallbackWarning, match="3600 s"):
        result = fetch(server, tmp_path)
    assert result.source == "bundled" and _isolated == []


def test_slow_answer_times_out_and_falls_back_to_the_cache(server, tmp_path):
    fetch(server, tmp_path)  # fills the cache
    server.fail("/version/", delay=3.0)
    with pytest.warns(EndpointsFallbackWarning, match=r"NOT live.*cache copy of version 2025013000.*timed out"):
        result = fetch(server, tmp_path, timeout=0.3)
    assert (result.source, result.version) == ("cache", NEW_VERSION)
    assert "timed out" in result.fallback


@pytest.mark.parametrize(("fault", "message"), [
    ({"body": b'[{"id": 1, "serviceArea": "Exch'}, "not complete JSON"),
    ({"truncate": True}, "cut short"),
    ({"body": json.dumps([{"id": "one", "serviceArea": "Exchange", "category": "Allow"}]).encode()},
     "failed validation"),
    ({"body": json.dumps({"endpoints": []}).encode()}, "expected a JSON list"),
])
def test_broken_answers_fall_back(server, tmp_path, fault, message):
    server.fail("/endpoints/", **fault)
    with pytest.warns(EndpointsFallbackWarning, match=message):
        result = fetch(server, tmp_path)
    assert result.source == "bundled"
    assert not (tmp_path / "endpoints-Worldwide.json").exists()  # nothing invalid was cached


def test_wrong_version_answer_falls_back(server, tmp_path):
    server.fail("/version/", body=b'{"instance": "Worldwide", "latest": "soon"}')
    with pytest.warns(EndpointsFallbackWarning, match="YYYYMMDDNN"):
        assert fetch(server, tmp_path).source == "bundled"


def test_corrupt_cache_is_ignored_and_refetched(server, tmp_path):
    (tmp_path / "endpoints-Worldwide.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unusable endpoints cache"):
        result = fetch(server, tmp_path)
    assert result.source == "live"
    assert json.loads((tmp_path / "endpoints-Worldwide.json").read_text())["version"] == NEW_VERSION


@pytest.mark.parametrize("switch", ["argument", "environment"])
def test_offline_never_touches_the_network(server, tmp_path, monkeypatch, switch):
    if switch == "environment":
        monkeypatch.setenv("EXO_DEFERRALS_OFFLINE", "1")
    with pytest.warns(EndpointsFallbackWarning, match="offline"):
        result = fetch(server, tmp_path, offline=switch == "argument")
    assert result.source == "bundled" and server.requests == []
    assert not (tmp_path / "client-request-id").exists()


@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.1:8080", "ftp://endpoints.office.com",
                                 "endpoints.office.com"])
def test_plain_http_is_refused_off_loopback(url, tmp_path):
    with pytest.raises(EndpointsError, match="https"):
        Endpoints.fetch(base_url=url, cache_dir=tmp_path)


def test_redirect_to_plain_http_is_refused(server, tmp_path):
    server.redirects["/version/Worldwide"] = "http://example.com/version/Worldwide"
    with pytest.warns(EndpointsFallbackWarning, match="https"):
        assert fetch(server, tmp_path).source == "bundled"


def test_localhost_name_is_loopback(server, tmp_path):
    port = server.base_url.rsplit(":", 1)[1]
    assert Endpoints.fetch(base_url=f"http://localhost:{port}", cache_dir=tmp_path).source == "live"


def test_instances(server, tmp_path):
    with pytest.raises(EndpointsError, match="unknown instance"):
        fetch(server, tmp_path, instance="Germany")
    china = fetch(server, tmp_path, instance="china")
    assert (china.instance, china.source) == ("China", "live")
    server.fail("/version/", status=500, times=10)
    with pytest.warns(EndpointsFallbackWarning, match="cache copy"):
        assert fetch(server, tmp_path, instance="China", retries=1).source == "cache"
    with pytest.raises(EndpointsError, match="no cached or bundled endpoints for instance USGovDoD"):
        fetch(server, tmp_path, instance="USGovDoD", retries=1)


def test_changes_since(server, tmp_path):
    live = fetch(server, tmp_path)
    changes = live.changes_since(OLD_VERSION)
    assert server.paths("/changes/") == [f"/changes/Worldwide/{OLD_VERSION}"]
    added = changes[(changes["action"] == "add") & (changes["endpoint_set"] == 10)]
    assert added["value"].tolist() == ["*.mx.microsoft"]
    removed = changes[changes["disposition"] == "Remove"]
    assert set(removed["endpoint_set"]) == {3, 5, 6, 154}
    assert changes["effective_date"].dropna().unique().tolist() == ["20250130"]
    assert live.changes_since().empty  # nothing since the current version


def test_changes_since_needs_the_network(tmp_path):
    offline = Endpoints.bundled()
    with pytest.raises(EndpointsError, match="network access is off"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Endpoints.fetch(cache_dir=tmp_path, offline=True).changes_since(OLD_VERSION)
    with pytest.raises(EndpointsError, match="YYYYMMDDNN"):
        offline.changes_since("yesterday")


# ---------------------------------------------------------------------------------------------------------
# command line


def test_cli_update_and_changes(server, tmp_path, capsys):
    assert endpoints_cli(["--base-url", server.base_url, "--cache-dir", str(tmp_path), "--update",
                    "--changes-since", OLD_VERSION]) == 0
    out = capsys.readouterr().out
    assert "version:   2025013000 (published 2025-01-30)" in out and "source:    live" in out
    assert "52.100.0.0/14" in out and "*.mx.microsoft" in out
    assert endpoints_cli(["--cache-dir", str(tmp_path)]) == 0  # no network: shows the cache
    out = capsys.readouterr().out
    assert "source:    cache (not checked online; use --update)" in out and server.paths("/endpoints/") == [
        "/endpoints/Worldwide"]


def test_cli_update_failure_is_loud(server, tmp_path, capsys):
    server.fail("/version/", status=500, times=10)
    assert endpoints_cli(["--base-url", server.base_url, "--cache-dir", str(tmp_path), "--update"]) == 1
    captured = capsys.readouterr()
    assert "NOT live" in captured.err and "source:    bundled" in captured.out


def test_cli_refuses_plain_http(capsys):
    assert endpoints_cli(["--base-url", "http://example.com", "--update"]) == 2
    assert "https" in capsys.readouterr().err


def test_the_test_session_cannot_reach_beyond_loopback():
    """conftest guards sockets: a test that tried Microsoft's real service would fail here, not hang in CI."""
    import socket
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="only connect to loopback"):
        sock.connect(("203.0.113.7", 443))
