"""The command line's contract (README "Command line"): every mistake of issue 18 ends in one exact line on standard
error and its exit code, never a traceback; outputs are checked before any work.

Reply texts come from ``tests/data/replies_corpus.csv`` (real replies, each with its public source). The UTF-16
files are what Windows PowerShell 5.1's ``>`` writes: UTF-16LE with a BOM and CRLF line ends ("Unicode" is
Out-File's default encoding there: https://learn.microsoft.com/en-us/powershell/module/microsoft.powershell.core/
about/about_redirection, CC BY 4.0); the allow-list fixture is ``tests/data/allowlists/plain.txt``.
"""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import __version__
from analysis.cli import COMMANDS, main
from analysis.cli.common import EXIT_CODES
from analysis.reference.causes import classify_replies

DATA = Path(__file__).parent / "data"
SAMPLE = Path(__file__).parent.parent / "data" / "sample"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2048  # a PNG signature, then 512 KB of bytes


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The installed command in a new process (what a user's shell runs)."""
    return subprocess.run([sys.executable, "-m", "analysis.cli", *argv], input=stdin, capture_output=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def replies() -> list[str]:
    """Single-line replies of the corpus, the non-ASCII ones (’ “ ”, all in cp1252) among them."""
    with (DATA / "replies_corpus.csv").open(encoding="utf-8", newline="") as f:
        texts = [row["reply"] for row in csv.DictReader(f) if "\n" not in row["reply"] and "\r" not in row["reply"]]
    chosen = texts[:40] + [t for t in texts if not t.isascii() and _cp1252(t)]
    assert sum(not t.isascii() for t in chosen) >= 3
    return chosen


def _cp1252(text: str) -> bool:
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------- the command itself

def test_no_arguments_prints_usage_on_stderr_with_exit_2(capsys):
    code, out, err = run(capsys)
    assert (code, out) == (2, "")
    assert err.startswith("usage: exo-deferrals COMMAND [options]\n")
    assert all(name in err for name in COMMANDS) and "exit codes:" in err


def test_version(capsys):
    assert run(capsys, "--version") == (0, f"exo-deferrals {__version__}\n", "")
    assert cli("--version").stdout.decode() == f"exo-deferrals {__version__}\n"


def test_unknown_command(capsys):
    code, out, err = run(capsys, "lod")
    assert (code, out) == (2, "")
    assert err == ("exo-deferrals: unknown command 'lod' (expected one of " + ", ".join(COMMANDS)
                   + "; see `exo-deferrals --help`)\n")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_is_plain_text_with_the_exit_codes(command):
    done = cli(command, "--help")
    text = done.stdout.decode()
    assert done.returncode == 0 and text.startswith(f"usage: exo-deferrals {command}")
    assert not any(markup in text for markup in ("``", ":func:", ":class:", ":meth:", ":mod:", ".. "))
    assert all(f"  {code}  {meaning}" in text for code, meaning in EXIT_CODES.items())


def test_a_bad_option_is_one_line_with_exit_2(capsys):
    assert run(capsys, "load", "--nope", str(DATA)) == (
        2, "", "exo-deferrals load: unrecognized arguments: --nope (see `exo-deferrals load --help`)\n")


# ---------------------------------------------------------------- load

def test_load_refuses_an_output_it_cannot_write_before_loading(capsys, sample_dir, tmp_path):
    target = tmp_path / "events.xlsx"
    code, out, err = run(capsys, "load", str(sample_dir), "-o", str(target))
    assert (code, out) == (2, "")  # nothing loaded, nothing printed
    assert err == f"exo-deferrals load: {target}: cannot write .xlsx (expected a .csv or .parquet file name)\n"
    folder = tmp_path / "already-a-folder.csv"
    folder.mkdir()
    assert run(capsys, "load", str(sample_dir), "-o", str(folder))[2] == (
        f"exo-deferrals load: {folder}: is a folder (expected a .csv or .parquet file name)\n")


def test_load_exit_codes(capsys, tmp_path):
    empty = tmp_path / "emptydir"
    empty.mkdir()
    assert run(capsys, "load", str(empty)) == (
        3, "", f"exo-deferrals load: {empty}: no files found (expected a file, a folder or a glob pattern)\n")
    missing = tmp_path / "nothing.csv"
    assert run(capsys, "load", str(missing)) == (
        3, "", f"exo-deferrals load: {missing}: no such file or folder (expected an export file, a folder or a "
               "glob)\n")
    pattern = str(tmp_path / "trace-*.csv")
    assert run(capsys, "load", pattern) == (
        3, "", f"exo-deferrals load: {pattern}: the pattern matches no file (expected export files)\n")
    good, empty_file = SAMPLE / "messagetrace_v2_de-DE.csv", DATA / "bad" / "cases" / "empty.csv"
    code, out, err = run(capsys, "load", str(good), str(empty_file))
    assert (code, err) == (1, "") and "empty.csv" in out and "0 bytes" in out and "events loaded" in out
    code, out, err = run(capsys, "load", str(empty_file))
    assert code == 3 and "0 bytes" in out
    assert err == f"exo-deferrals load: nothing could be loaded from {empty_file} (the load report above says why)\n"


def test_load_writes_csv_with_crlf(capsys, sample_dir, tmp_path):
    target = tmp_path / "out" / "events.csv"
    code, out, _ = run(capsys, "load", str(sample_dir / "messagetrace_v2_de-DE.csv"), "-o", str(target))
    assert code == 0 and f"events written to {target}" in out
    raw = target.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") > 1


# ---------------------------------------------------------------- classify

def _classified(raw: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, lineterminator="\n")


@pytest.mark.parametrize("encoding", ["utf-16 (PowerShell 5.1 >)", "utf-16-le no BOM", "cp1252", "utf-8"])
def test_classify_sniffs_the_encoding_like_the_loader(replies, tmp_path, encoding):
    text = "\r\n".join(replies) + "\r\n"
    raw = {"utf-16 (PowerShell 5.1 >)": b"\xff\xfe" + text.encode("utf-16-le"),
           "utf-16-le no BOM": text.encode("utf-16-le"), "cp1252": text.encode("cp1252"),
           "utf-8": text.encode("utf-8")}[encoding]
    path = tmp_path / "replies.txt"
    path.write_bytes(raw)
    done = cli("classify", str(path))
    assert done.returncode == 0 and done.stderr == b""
    table = _classified(done.stdout.replace(b"\r\n", b"\n"))
    assert table["reply"].str.replace("^'", "", regex=True).tolist() == replies  # decoded exactly, no NUL
    assert table["cause"].tolist() == classify_replies(replies)["cause"].astype(str).tolist()
    assert "unknown" not in set(table["cause"][:5])


def test_classify_csv_rows_end_in_crlf_and_a_lone_cr_ends_a_line_as_in_the_loader(tmp_path):
    done = cli("classify", stdin=b"451 4.7.1 Greylisted\r=cmd|' /C calc'!A0\n550 5.1.1 User unknown\n")
    rows = done.stdout.split(b"\r\n")
    assert done.returncode == 0 and len(rows) == 5 and rows[-1] == b""  # header, 3 replies, the final CRLF
    assert all(b"\n" not in row and b"\r" not in row for row in rows)
    assert rows[2].startswith(b"'=cmd")  # a formula is never a formula in a spreadsheet
    out = tmp_path / "causes.csv"
    assert cli("classify", "-o", str(out), stdin=b"550 5.1.1 User unknown\n").returncode == 0
    assert out.read_bytes().endswith(b"\r\n") and out.read_bytes().count(b"\n") == 2


def test_classify_refuses_a_binary_file(capsys, tmp_path):
    png = tmp_path / "logo.png"
    png.write_bytes(PNG_BYTES)
    assert run(capsys, "classify", str(png)) == (
        3, "", f"exo-deferrals classify: {png}: this is a PNG image, not a text export (expected a text file)\n")
    missing = tmp_path / "absent.txt"
    assert run(capsys, "classify", str(missing)) == (
        3, "", f"exo-deferrals classify: {missing}: cannot read: No such file or directory\n")


# ---------------------------------------------------------------- audit-allowlist

def test_audit_allowlist_refuses_a_binary_file_and_writes_nothing(capsys, tmp_path):
    png = tmp_path / "allowlist.png"
    png.write_bytes(PNG_BYTES)
    corrected = tmp_path / "corrected.txt"
    assert run(capsys, "audit-allowlist", str(png), "--offline", "-o", str(corrected)) == (
        3, "", f"exo-deferrals audit-allowlist: {png}: this is a PNG image, not a text export (expected a text "
               "file)\n")
    assert not corrected.exists()


def test_audit_allowlist_reads_utf16_and_an_invalid_ip_is_an_invalid_line(capsys, tmp_path):
    lines = [*(DATA / "allowlists" / "plain.txt").read_text(encoding="utf-8").splitlines(), "300.1.2.3"]
    path = tmp_path / "allowlist.txt"
    path.write_bytes(b"\xff\xfe" + "\r\n".join(lines).encode("utf-16-le"))
    code, out, err = run(capsys, "audit-allowlist", str(path), "--offline")
    assert code == 1 and err == ""
    assert f"  line {len(lines)}: '300.1.2.3' - not an IP address, CIDR, range or host name: '300.1.2.3'" in out
    assert "Host-name entries" not in out or "300.1.2.3 -" not in out.split("Host-name entries")[1]


def test_audit_allowlist_output_semantics(capsys, tmp_path):
    source = str(DATA / "allowlists" / "plain.txt")
    code, out, err = run(capsys, "audit-allowlist", source, "--offline")
    assert out.startswith("Allow-list audit of") and err == ""  # the audit only
    assert code == (1 if "MISSING Exchange Online ranges" in out else 0)  # missing ranges: a finding
    _, out, err = run(capsys, "audit-allowlist", source, "--offline", "--format", "csv")
    assert out.startswith("network,comment") and err.startswith("Allow-list audit of")  # the list on stdout
    target = tmp_path / "fixed.txt"
    _, out, err = run(capsys, "audit-allowlist", source, "--offline", "-o", str(target))
    assert out.startswith("Allow-list audit of") and f"written to {target}" in out and target.is_file()
    assert run(capsys, "audit-allowlist", source, "--offline", "-o", str(tmp_path))[0] == 2  # a folder


# ---------------------------------------------------------------- endpoints

def test_endpoints_changes_since_offline_refuses_before_printing(capsys):
    assert run(capsys, "endpoints", "--changes-since", "2025010100", "--offline") == (
        2, "", "exo-deferrals endpoints: --changes-since needs the network (expected no --offline)\n")


def test_endpoints_into_a_closed_pipe_ends_quietly():
    """``exo-deferrals endpoints | head -2``: the reader has gone before anything is written."""
    process = subprocess.Popen([sys.executable, "-m", "analysis.cli", "endpoints", "--offline"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read()
    assert (process.wait(timeout=120), err) == (0, b"")


# ---------------------------------------------------------------- sample

@pytest.mark.parametrize(("value", "message"), [
    ("-5", "-5: expected a whole number of at least 1"), ("0", "0: expected a whole number of at least 1"),
    ("many", "'many' is not a whole number")])
def test_sample_validates_its_numbers(capsys, tmp_path, value, message):
    assert run(capsys, "sample", "--out", str(tmp_path / "s"), "--rows", value) == (
        2, "", f"exo-deferrals sample: argument --rows: {message} (see `exo-deferrals sample --help`)\n")
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- ingest, report

NEEDS_DASK = 'needs the optional package \'dask\': pip install "exo-deferrals[dask]"\n'


def without_dask(*argv: str) -> tuple[int, bytes, str]:
    """(exit code, standard output, standard error) of the command in a new process where dask and distributed
    cannot be imported: the kit installed without its [dask] extra."""
    code = ("import sys; sys.modules['dask'] = sys.modules['distributed'] = None; from analysis.cli import main; "
            f"sys.exit(main({list(argv)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr.decode()


def test_ingest_without_dask_names_the_extra_and_leaves_nothing(tmp_path, sample_dir):
    store = tmp_path / "store"
    assert without_dask("ingest", str(sample_dir), "--store", str(store)) == (
        4, b"", f"exo-deferrals ingest: {NEEDS_DASK}")
    assert not store.exists()


def test_report_refuses_clearly_before_any_work(capsys, tmp_path, sample_dir):
    out = tmp_path / "out"
    assert run(capsys, "report", str(sample_dir), "-o", str(out / "r.pdf")) == (
        2, "", f"exo-deferrals report: {out / 'r.pdf'}: cannot write .pdf (expected a .html or .htm file name)\n")
    missing = tmp_path / "missing.csv"
    assert run(capsys, "report", str(missing), "-o", str(out / "r.html")) == (
        3, "", f"exo-deferrals report: {missing}: no such file or folder (expected an export file, a folder or a "
               "glob)\n")
    assert run(capsys, "report", str(sample_dir), "-o", str(out / "r.html"), "--allowlist", str(missing)) == (
        3, "", f"exo-deferrals report: --allowlist {missing}: no such file\n")
    assert not out.exists()


def test_load_reads_a_store_made_by_ingest(capsys, tmp_path, sample_dir):
    pytest.importorskip("dask.dataframe")
    store, source = tmp_path / "store", str(sample_dir / "messagetrace_v2_de-DE.csv")
    code, out, _ = run(capsys, "ingest", source, "--store", str(store))
    added = int(out.split(", ")[1].split(" of ")[0])
    assert code == 0 and added > 1000
    code, out, err = run(capsys, "load", str(store))
    assert (code, err) == (0, "") and f"{added} events loaded" in out and "messagetrace_v2_de-DE.csv" in out
    target = tmp_path / "events.parquet"
    assert run(capsys, "load", str(store), "-o", str(target))[0] == 0
    assert len(pd.read_parquet(target)) == added
    assert run(capsys, "load", str(store), "--dayfirst", "yes") == (
        2, "", f"exo-deferrals load: {store}: a store was read with the options of its ingest (expected no "
               "--dayfirst, --date-format or --tz-offset)\n")


def test_report_on_a_store_refuses_clearly_before_any_work(capsys, tmp_path, sample_store, sample_dir):
    import dask

    out = tmp_path / "out"
    export = str(sample_dir / "messagetrace_v2_de-DE.csv")
    assert run(capsys, "report", str(sample_store), export, "-o", str(out / "r.html")) == (
        2, "", f"exo-deferrals report: {sample_store}: a store made by `exo-deferrals ingest` cannot be mixed with "
               "other inputs (expected one store, or export files)\n")
    assert run(capsys, "report", export, "-o", str(out / "r.html"), "--scheduler", "local") == (
        2, "", "exo-deferrals report: --scheduler local: computes on a store (expected one store made by "
               "`exo-deferrals ingest` as TRACE)\n")
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        nobody = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        assert run(capsys, "report", str(sample_store), "-o", str(out / "r.html"), "--scheduler", nobody) == (
            4, "", f"exo-deferrals report: cannot reach the Dask scheduler {nobody} (Timed out trying to connect to "
                   f"{nobody} after 2 s; expected the address of a running scheduler, or 'local')\n")
    assert not out.exists()


def test_report_on_a_store_without_dask_names_the_extra(tmp_path, sample_store):
    out = tmp_path / "r.html"
    assert without_dask("report", str(sample_store), "-o", str(out)) == (4, b"", f"exo-deferrals report: {NEEDS_DASK}")
    assert not out.exists() and not (tmp_path / "r_charts").exists()
