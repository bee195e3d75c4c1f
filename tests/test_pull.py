"""``exo-deferrals pull`` against a loopback identity platform + Graph (tests/graph_service.py), over real HTTPS.

The real CLI runs in a subprocess and signs in through the real ``msal``; the service checks what Graph and Entra
check (filters, windows, paging, the shared quota, secrets and assertion signatures). The quota window is scaled
down 100 times (300 s -> 3 s, ``--quota 100/3`` on the client) so that throttling takes seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from analysis.pull.client import RequestBudget
from analysis.pull.run import parse_statuses, split_windows

sys.path.insert(0, str(Path(__file__).parent))
from graph_service import App, GraphService, make_client_certificate, make_traces

CLI = [sys.executable, "-m", "analysis.cli", "pull"]
SECRET = "S3cr3t~value-that-must-never-leak.0123456789"
SCALE = 100.0
FILTER = re.compile(r"receivedDateTime ge (\S+) and receivedDateTime le (\S+)")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MSAL_")}
    environment |= {"PULL_SECRET": SECRET, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    return environment


def service(tmp_path: Path, traces: list[dict], **options: object) -> GraphService:
    apps = {"app-1": App("app-1", secret=SECRET)}
    return GraphService(tmp_path, traces, apps=apps, time_scale=SCALE, **options)


def args(svc: GraphService, out: Path, *extra: str, auth: tuple[str, ...] = ("--client-secret-env", "PULL_SECRET"),
         client: str = "app-1") -> list[str]:
    return [*CLI, "--tenant", svc.tenant, "--client-id", client, *auth, "--out", str(out),
            "--graph-url", svc.graph_url, "--login-url", svc.login_url, "--ca-bundle", str(svc.ca),
            "--quota", f"100/{300 / SCALE}", *extra]


def run(command: list[str], env: dict[str, str], outputs: list[str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if outputs is not None:
        outputs += [done.stdout, done.stderr]
    assert "Traceback" not in done.stderr, done.stderr
    return done


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def list_filters(svc: GraphService) -> list[tuple[dt.datetime, dt.datetime]]:
    """The time bounds of every list request the service answered."""
    bounds = []
    for kind, path, _ in svc.log:
        if kind == "list":
            query = parse_qs(urlsplit(path).query)
            low, high = FILTER.match(query["$filter"][0]).groups()
            bounds.append((dt.datetime.fromisoformat(low.replace("Z", "+00:00")),
                           dt.datetime.fromisoformat(high.replace("Z", "+00:00"))))
    return bounds


def assert_no_secrets(svc: GraphService, folders: list[Path], outputs: list[str]) -> None:
    """No client secret and no access token in any file of ``folders`` or in any captured output."""
    needles = [SECRET, *svc.tokens, *svc.assertions, *svc.device]
    assert len(needles) > 1, "the service issued no token: nothing was checked"
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                leaked = [n[:6] for n in needles if n.encode() in data]
                assert not leaked, f"{path} holds a secret or token"
    for text in outputs:
        assert not [n for n in needles if n in text]


def test_budget_never_exceeds_the_quota_in_any_rolling_window():
    clock = [1000.0]
    budget = RequestBudget(100, 300.0, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    sent = []
    for _ in range(350):
        budget.acquire()
        sent.append(clock[0])
        clock[0] += 0.01
    for index, moment in enumerate(sent):  # requests in [moment, moment + 300 s)
        assert sum(1 for t in sent[index:] if t < moment + 300.0) <= 100
    assert 3 * 300 <= sent[-1] - sent[0] < 3 * 300 * 1.01 + 5  # 350 requests need three full windows of waiting


def test_windows_and_statuses_follow_the_documented_rules():
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    windows = split_windows(start, start + dt.timedelta(days=25))
    assert [(b - a).days for a, b in windows] == [10, 10, 5]
    assert all(windows[i][1] == windows[i + 1][0] for i in range(2))
    assert parse_statuses("Pending, FAILED,filteredasspam") == ("pending", "failed", "filteredAsSpam")


def test_secret_pull_of_12000_traces_in_three_windows_loads_like_an_export(tmp_path, env):
    from analysis import load_trace

    now = dt.datetime.now(dt.UTC)
    traces = make_traces(12_000, days=25, now=now)
    outputs: list[str] = []
    out = tmp_path / "pulled"
    with service(tmp_path, traces) as svc:
        done = run(args(svc, out, "--start", (now - dt.timedelta(days=25)).isoformat(), "--end", now.isoformat(),
                        "--page-size", "1000", "--max-requests", "180"), env, outputs)
        assert done.returncode == 1, done.stderr  # done, but not every detail that matters was fetched
        bounds = list_filters(svc)
        assert all(low <= high <= low + dt.timedelta(days=10) for low, high in bounds)
        windows = sorted(set(bounds))
        assert len(windows) == 3 and windows[0][0] <= now - dt.timedelta(days=25) + dt.timedelta(seconds=1)
        pages = sum(-(-len(svc.rows_between(low, high)) // 1000) for low, high in windows)
        answered = {kind: sum(1 for k, _, s in svc.log if k == kind and s == 200) for kind in ("list", "details")}
        assert answered["list"] == pages  # every nextLink followed once, nothing listed twice
        assert svc.count("list") + svc.count("details") == 180  # attempts, a 429 retried included
        assert not [s for k, _, s in svc.log if k in ("list", "details") and s != 200 and s != 429]
    rows = lines(out / "messageTraces.jsonl")
    assert len(rows) == 12_000 == len({(r["id"], r["recipientAddress"]) for r in rows})
    details = lines(out / "details.jsonl")
    fetched = {(d["id"], d["recipientAddress"]) for d in details}
    assert len(fetched) == answered["details"]
    status_of = {(t["id"], t["recipientAddress"]): t["status"] for t in traces}
    assert {status_of[k] for k in fetched} <= {"failed", "pending"}
    # most informative first: a round over the recipient domains, failed before pending within each round
    domains = {k[1].split("@")[1] for k in status_of if status_of[k] in ("failed", "pending")}
    assert len({k[1].split("@")[1] for k in fetched}) == len(domains)
    failed_domains = {k[1].split("@")[1] for k in status_of if status_of[k] == "failed"}
    first_per_domain = {}
    for d in details:
        first_per_domain.setdefault(d["recipientAddress"].split("@")[1], status_of[(d["id"], d["recipientAddress"])])
    assert {d for d, s in first_per_domain.items() if s == "failed"} == failed_domains
    report = json.loads((out / "_pull_report.json").read_text())
    wanted = {k for k, s in status_of.items() if s in ("failed", "pending")}
    assert {(m["traceId"], m["recipientAddress"]) for m in report["not_fetched"]} == wanted - fetched
    assert all("--max-requests 180" in m["reason"] for m in report["not_fetched"])

    events, load = load_trace(out, with_report=True)
    summary = events[events["source_format"] == "graph_messagetrace"]
    assert len(summary) == 12_000
    expected = {"filteredAsSpam": "filtered_as_spam", "gettingStatus": "getting_status"}
    counts = summary["status"].astype(str).value_counts().to_dict()
    want = {}
    for t in traces:
        want[expected.get(t["status"], t["status"])] = want.get(expected.get(t["status"], t["status"]), 0) + 1
    assert counts == want
    defers = events[(events["source_format"] == "graph_messagetrace_detail") & (events["event"] == "defer")]
    assert len(defers) == 2 * len(fetched)  # two Defer events per pending or failed recipient
    assert set(defers["smtp_code"].dropna().astype(int)) <= {450, 451} and defers["enhanced_code"].notna().all()
    listed = next(f for f in load.files if f.path.endswith("messageTraces.jsonl"))
    assert f"details not fetched for {len(wanted - fetched)} recipients" in " ".join(listed.warnings)
    assert listed.balanced
    assert_no_secrets(svc, [out], outputs)


def test_a_killed_pull_resumes_without_duplicates_or_refetching(tmp_path, env):
    now = dt.datetime.now(dt.UTC)
    traces = make_traces(4_000, days=12, now=now, seed=3)
    out = tmp_path / "pulled"
    with service(tmp_path, traces, delay=0.03) as svc:
        command = args(svc, out, "--start", (now - dt.timedelta(days=12)).isoformat(), "--end", now.isoformat(),
                       "--page-size", "250", "--max-requests", "60")
        for phase, enough in (("list", 5), ("details", 30)):  # kill while listing, then while fetching details
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while svc.count(phase) < enough and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            process.send_signal(signal.SIGKILL)
            process.wait()
        done = run(command, env)
        pages = sum(-(-len(svc.rows_between(*w)) // 250) for w in set(list_filters(svc)))
        # one page (the one in flight at the kill) may be asked twice; nothing else is
        assert pages <= svc.count("list") <= pages + 1
        asked = [p for k, p, _ in svc.log if k == "details"]
        assert len(asked) - len(set(asked)) <= 2  # at most the answer in flight at each kill
    assert done.returncode == 1, done.stderr
    rows = lines(out / "messageTraces.jsonl")
    assert len(rows) == 4_000 == len({(r["id"], r["recipientAddress"]) for r in rows})
    details = lines(out / "details.jsonl")
    events = [(d["id"], d["recipientAddress"], d["dateTime"], d["event"]) for d in details]
    assert len(events) == len(set(events))
    by_key: dict = {}
    for d in details:
        by_key.setdefault((d["id"], d["recipientAddress"]), []).append(d)
    assert all(len(v) == v[0]["_of"] for v in by_key.values())  # every answer whole


def test_an_overlapping_later_pull_adds_only_what_changed(tmp_path, env):
    now = dt.datetime.now(dt.UTC)
    traces = make_traces(1_000, days=5, now=now, seed=11)
    recent = [t for t in traces if _age(t, now) < dt.timedelta(hours=5)][:5]
    old = [t for t in traces if _age(t, now) > dt.timedelta(days=2)][:5]
    for row in recent + old:
        row["status"] = "pending"
    out = tmp_path / "pulled"
    with service(tmp_path, traces) as svc:
        first = run(args(svc, out, "--last", "5d", "--max-requests", "1000", "--reread-hours", "6"), env)
        assert first.returncode == 0, first.stderr
        listed_at = dt.datetime.now(dt.UTC)
        for row in recent + old:  # delivered at last
            row["status"] = "delivered"
        late = make_traces(7, days=0.1, now=now, seed=99)  # rows that arrive late [S13]
        for row in late:
            row["id"], row["status"] = "late-" + row["id"], "pending"
        traces += late
        svc.reindex()
        del svc.log[:]
        done = run(args(svc, out, "--start", (now - dt.timedelta(days=3)).isoformat(), "--end",
                        dt.datetime.now(dt.UTC).isoformat(), "--max-requests", "1000", "--reread-hours", "6"), env)
        assert done.returncode == 0, done.stderr
        bounds = list_filters(svc)  # only the hours not yet settled are listed again
        assert bounds and min(low for low, _ in bounds) >= listed_at - dt.timedelta(hours=6, minutes=1)
    rows = lines(out / "messageTraces.jsonl")
    assert len(rows) == 1_000 + 7 + 5  # the new rows and the 5 recent status changes, nothing else
    changed = [r for r in rows[1_000:] if not r["id"].startswith("late-")]
    assert {(r["id"], r["status"]) for r in changed} == {(t["id"], "delivered") for t in recent}
    report = json.loads((out / "_pull_report.json").read_text())
    assert (report["rows_new"], report["rows_changed"]) == (7, 5)
    assert report["details_fetched"] == 12  # the late rows and the deferred-then-delivered recipients
    assert report["detail_requests"] == 12 and report["not_fetched"] == []
    from analysis import load_trace

    events = load_trace(out)
    summary = events[events["source_format"] == "graph_messagetrace"].set_index(["trace_id", "recipient"])
    assert len(summary) == 1_007  # the superseded pending rows are not loaded twice
    assert {summary.loc[(t["id"], t["recipientAddress"]), "status"] for t in recent} == {"delivered"}


def _age(row: dict, now: dt.datetime) -> dt.timedelta:
    return now - dt.datetime.fromisoformat(row["receivedDateTime"].replace("Z", "+00:00"))


@pytest.mark.parametrize("variant", ["public_certificate", "thumbprint"])
def test_certificate_sign_in_is_checked_by_signature(tmp_path, env, variant):
    now = dt.datetime.now(dt.UTC)
    cert = make_client_certificate(tmp_path)
    other = make_client_certificate(tmp_path, "other")
    outputs: list[str] = []
    with service(tmp_path, make_traces(50, days=1, now=now)) as svc:
        svc.apps["app-2"] = App("app-2", certificate=cert.certificate)
        auth = (("--certificate", str(cert.pem)) if variant == "public_certificate" else
                ("--certificate", str(cert.key_only), "--certificate-thumbprint", cert.thumbprint))
        done = run(args(svc, tmp_path / "out", "--last", "1d", "--no-token-cache", auth=auth, client="app-2"), env,
                   outputs)
        assert done.returncode == 0, done.stderr
        assert len(lines(tmp_path / "out" / "messageTraces.jsonl")) == 50
        assert not (tmp_path / "cache").exists()  # --no-token-cache
        wrong = run(args(svc, tmp_path / "out2", "--last", "1d", auth=("--certificate", str(other.pem)),
                         client="app-2"), env)
        assert wrong.returncode == 3 and "AADSTS700027" in wrong.stderr and "upload this certificate" in wrong.stderr
        assert svc.assertions  # signed assertions were sent and checked
    assert_no_secrets(svc, [tmp_path / "out", tmp_path / "out2"], [*outputs, wrong.stdout, wrong.stderr])


def test_device_code_sign_in_and_an_owner_only_token_cache(tmp_path, env):
    now = dt.datetime.now(dt.UTC)
    outputs: list[str] = []
    with service(tmp_path, make_traces(40, days=1, now=now)) as svc:
        svc.apps["public-app"] = App("public-app")
        command = args(svc, tmp_path / "out", "--last", "1d", auth=("--device-code",), client="public-app")
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        prompt = ""
        while "enter the code" not in prompt:
            line = process.stderr.readline()
            assert line, "the CLI ended without showing a device code"
            prompt += line
        svc.approve(re.search(r"enter the code (\w+)", prompt).group(1))  # the admin signs in in a browser
        stdout, stderr = process.communicate(timeout=60)
        outputs += [prompt, stdout, stderr]
        assert process.returncode == 0, stderr
        caches = list((tmp_path / "cache").rglob("*.json"))
        assert len(caches) == 1 and stat.S_IMODE(caches[0].stat().st_mode) == 0o600
        flows = len(svc.device)
        again = run(command, env, outputs)  # the cached token is used: no second device flow
        assert again.returncode == 0 and len(svc.device) == flows
    assert_no_secrets(svc, [tmp_path / "out"], outputs)


@pytest.mark.parametrize("case", ["no_service_principal", "forbidden", "wrong_secret", "wrong_tenant",
                                  "unset_secret", "beyond_90_days", "throttled_beyond_budget"])
def test_known_failures_are_one_plain_line(tmp_path, env, case):
    now = dt.datetime.now(dt.UTC)
    with service(tmp_path, make_traces(30, days=1, now=now)) as svc:
        extra, expect, code = ["--last", "1d"], "", 3
        if case == "no_service_principal":
            svc.service_principal = False
            expect = "New-MgServicePrincipal -AppId 8bd644d1-64a1-4d4b-ae52-2e0cbf64e373"
        elif case == "forbidden":
            svc.apps["app-1"].roles = ()
            expect = "Grant admin consent"
        elif case == "wrong_secret":
            env["PULL_SECRET"] = "not-the-secret"
            expect = "AADSTS7000215"
        elif case == "wrong_tenant":
            svc.tenant = "fabrikam.onmicrosoft.com"
            expect = "knows no tenant 'contoso.onmicrosoft.com': this --tenant does not exist"
        elif case == "unset_secret":
            del env["PULL_SECRET"]
            expect = "PULL_SECRET"
        elif case == "beyond_90_days":
            extra = ["--start", (now - dt.timedelta(days=95)).isoformat(), "--end", (now - dt.timedelta(days=88))
                     .isoformat()]
            expect = "beyond the 90 days"
        elif case == "throttled_beyond_budget":
            svc.time_scale = 1.0  # another app spent the whole quota: Graph asks for about 300 s
            svc.use_quota(100)
            extra += ["--max-wait", "5"]
            expect, code = "Run the same command again after", 1
        command = args(svc, tmp_path / "out", *extra)
        if case == "wrong_tenant":
            command[command.index("--tenant") + 1] = "contoso.onmicrosoft.com"
        done = run(command, env)
    assert done.returncode == code, done.stderr
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and expect in message[0], done.stderr
    if case == "no_service_principal":
        assert "several hours" in message[0]
    if case == "beyond_90_days":
        assert not [k for k, _, _ in svc.log if k in ("list", "details")]  # refused before asking Graph
    assert SECRET not in done.stderr + done.stdout


def test_retry_after_fractional_and_back_off_on_503_504_and_time_outs(tmp_path, env):
    now = dt.datetime.now(dt.UTC)
    with service(tmp_path, make_traces(30, days=1, now=now)) as svc:
        svc.fail("list", 429, retry_after="0.75")
        svc.fail("list", 503, retry_after="0.2")
        svc.fail("details", 504)
        svc.fail("details", 0, stall=1.5)  # longer than --timeout: the client gives up on it and asks again
        started = time.monotonic()
        done = run(args(svc, tmp_path / "out", "--last", "1d", "--backoff", "0.1", "--timeout", "0.7"), env)
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    statuses = [s for k, _, s in svc.log if k in ("list", "details")]
    assert statuses[:3] == [429, 503, 200] and 504 in statuses
    assert elapsed >= 0.95  # 0.75 s and 0.2 s asked for, obeyed
    report = json.loads((tmp_path / "out" / "_pull_report.json").read_text())
    assert report["retries"] == 4 and report["waited_seconds"] >= 0.95
    assert len(lines(tmp_path / "out" / "messageTraces.jsonl")) == 30


def test_a_pulled_folder_is_read_by_report_and_ingest_like_any_export(tmp_path, env):
    """Issue 16, point 1: what `pull` writes is what `report` and `ingest` read (not only `load_trace`)."""
    pytest.importorskip("dask.dataframe")
    from analysis import load_trace
    from analysis.backends.store import open_store
    from analysis.report.notebook import render_report
    from analysis.store.ingest import ingest

    now = dt.datetime.now(dt.UTC)
    traces = make_traces(400, days=2, now=now, domains=6)
    out = tmp_path / "pulled"
    with service(tmp_path, traces) as svc:
        done = run(args(svc, out, "--last", "2d", "--max-requests", "120"), env)
        assert done.returncode in (0, 1), done.stderr  # 1: done, some details left for a later pull
    events = load_trace(out)
    failed = {t["recipientAddress"] for t in traces if t["status"] == "failed"}
    assert failed and failed <= set(events["recipient"].dropna())

    result = render_report([out], tmp_path / "report" / "report.html")
    assert not result.load_errors and result.events == len(events)
    page = result.html.read_text(encoding="utf-8")
    assert "Microsoft Graph" in page or "graph" in page.lower()
    assert any(address.split("@")[1] in page for address in failed)
    assert str(out) not in page  # inputs named by format and date, never by path

    store = tmp_path / "store"
    report = ingest([out], store)
    assert [f.status for f in report.files if f.path.endswith(".jsonl")] == ["ingested"] * 2
    stored = open_store(store).compute()
    assert len(stored) == len(events)
    assert set(stored["recipient"].dropna()) == set(events["recipient"].dropna())


def test_status_option_asks_graph_for_those_statuses_only(tmp_path, env):
    """`--status failed,pending`: one filtered query per status (only `eq` is documented), and only those rows."""
    now = dt.datetime.now(dt.UTC)
    traces = make_traces(600, days=3, now=now, domains=5)
    out = tmp_path / "pulled"
    with service(tmp_path, traces) as svc:
        done = run(args(svc, out, "--last", "3d", "--status", "failed,pending", "--details", "none"), env)
        assert done.returncode == 1 and "not fetched: --details none" in done.stdout, done.stderr  # 1: partial
        filters = [parse_qs(urlsplit(path).query)["$filter"][0] for kind, path, status in svc.log
                   if kind == "list" and status == 200]
    assert {f.rsplit(" and ", 1)[1] for f in filters} == {"status eq 'failed'", "status eq 'pending'"}
    rows = lines(out / "messageTraces.jsonl")
    wanted = {(t["id"], t["recipientAddress"]) for t in traces if t["status"] in ("failed", "pending")}
    assert {(r["id"], r["recipientAddress"]) for r in rows} == wanted and len(rows) == len(wanted)
