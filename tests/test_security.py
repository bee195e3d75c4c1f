"""Text from a trace is data, never code: no dangerous calls in the package, formula-safe tables, escaped HTML."""

from __future__ import annotations

import ast
import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from badinput_helpers import BAD_DIR, make_corpus

from analysis import FileReport, LoadReport, load_trace
from analysis.io.write import guard_formulas, to_safe_csv, write_table

PACKAGE = Path(__file__).resolve().parents[1] / "analysis"
# calls that run, unpickle or shell out to text they are given
DANGEROUS = {"eval", "exec", "compile", "__import__", "pickle.load", "pickle.loads", "marshal.load", "marshal.loads",
             "shelve.open", "yaml.load", "yaml.unsafe_load", "yaml.full_load", "os.system", "os.popen",
             "pandas.read_pickle", "dill.loads", "jsonpickle.decode"}


def dangerous_calls(source: str) -> list[str]:
    """``line: call`` for every dangerous call in ``source``, import aliases resolved, plus any ``shell=True``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is not None:
            head, _, rest = name.partition(".")
            name = ".".join(filter(None, [aliases.get(head, head), rest])).removeprefix("builtins.")
            if name in DANGEROUS:
                found.append(f"{node.lineno}: {name}")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and not keyword.value.value):
                found.append(f"{node.lineno}: shell={ast.unparse(keyword.value)}")
    return found


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)):
        return f"{base}.{node.attr}"
    return None


@pytest.mark.parametrize("source", [
    "eval(text)", "exec(code)", "import pickle\npickle.loads(blob)", "import pickle as p\np.load(f)",
    "from marshal import loads\nloads(b)", "import os\nos.system(cmd)",
    "import subprocess\nsubprocess.run(c, shell=True)", "import subprocess as sp\nsp.Popen(c, shell=flag)",
    "import yaml\nyaml.load(s)", "import pandas as pd\npd.read_pickle(p)", "import builtins\nbuiltins.exec(x)",
])
def test_the_scanner_finds_dangerous_calls(source: str):
    assert dangerous_calls(source)


@pytest.mark.parametrize("source", [
    "import ast\nast.literal_eval(s)", "model.eval()", "import subprocess\nsubprocess.run(['git', 'log'], shell=False)",
    "import yaml\nyaml.safe_load(s)", "import json\njson.loads(s)", "import re\nre.compile(p)",
])
def test_the_scanner_lets_safe_calls_pass(source: str):
    assert dangerous_calls(source) == []


def test_no_dangerous_call_anywhere_in_the_package():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) >= 10
    found = {str(p.relative_to(PACKAGE)): dangerous_calls(p.read_text("utf-8")) for p in sources}
    assert {path: calls for path, calls in found.items() if calls} == {}


# ---------------------------------------------------------------- formula injection

DTYPES = {"object": object, "string[pyarrow]": pd.StringDtype("pyarrow"), "string[python]": pd.StringDtype("python"),
          "category": "category"}
PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # what Excel and LibreOffice read as the start of a formula
RISKY = [f"{prefix}cmd|' /C calc'!A0" for prefix in PREFIXES]
SAFE = ["Quarterly report", "a=b", "x+1", "mail@example.com", ""]


def _frame(dtype: object) -> pd.DataFrame:
    values = [*RISKY, *SAFE, None]
    return pd.DataFrame({"text": pd.Series(values, dtype=dtype), "size": range(-len(values) // 2, len(values) // 2)})


def _assert_guarded(cells: list[object]) -> None:
    """Every risky value comes back behind one apostrophe, every safe one unchanged, the empty cell empty."""
    assert cells[:len(RISKY)] == ["'" + v for v in RISKY]
    assert cells[len(RISKY):len(RISKY) + len(SAFE)] == SAFE


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_guard_formulas_prefixes_every_risky_cell(dtype: object):
    frame = _frame(dtype)
    guarded = guard_formulas(frame)
    _assert_guarded(list(guarded["text"].iloc[:-1]))
    assert pd.isna(guarded["text"].iloc[-1])
    assert guarded["size"].tolist() == frame["size"].tolist()
    assert frame["text"].astype(object).iloc[0] == RISKY[0]  # the caller's frame is left alone


def _csv_cells(text: str) -> list[str]:
    return [row[0] for row in csv.reader(io.StringIO(text, newline=""))][1:]


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("risky", RISKY, ids=[repr(p) for p in PREFIXES])
def test_safe_csv_and_write_table_csv_hold_no_formula(dtype: object, risky: str, tmp_path: Path):
    frame = pd.DataFrame({"text": pd.Series([risky, *SAFE, None], dtype=dtype)})
    text = to_safe_csv(frame)
    assert text is not None
    assert _csv_cells(text) == ["'" + risky, *SAFE, ""]
    assert write_table(frame, tmp_path / "events.csv").read_bytes().decode("utf-8") == text


def test_a_carriage_return_inside_a_cell_does_not_start_a_formula_row():
    cells = _csv_cells(to_safe_csv(pd.DataFrame({"text": ["Hello\r=cmd|' /C calc'!A0"]})) or "")
    assert [c for c in cells if c.startswith(PREFIXES)] == []


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_parquet_is_guarded_too(dtype: object, tmp_path: Path):
    back = pd.read_parquet(write_table(_frame(dtype), tmp_path / "events.parquet"))
    _assert_guarded(list(back["text"].iloc[:-1]))
    assert back["size"].tolist() == _frame(dtype)["size"].tolist()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_loaded_formula_subjects_are_written_guarded(suffix: str, tmp_path: Path):
    events = load_trace(BAD_DIR / "cases" / "formula_values.csv")
    assert events["subject"].str.startswith(("=", "+", "@")).all()
    path = write_table(events, tmp_path / f"events{suffix}")
    back = pd.read_csv(path, dtype=str) if suffix == ".csv" else pd.read_parquet(path)
    assert back["subject"].tolist() == ["'" + s for s in events["subject"]]


def test_categorical_columns_stay_categorical_and_column_names_are_guarded(tmp_path: Path):
    frame = pd.DataFrame({"=cause": pd.Categorical(["=HYPERLINK(x)", "greylisting", "=HYPERLINK(x)"])})
    guarded = guard_formulas(frame)
    assert isinstance(guarded["'=cause"].dtype, pd.CategoricalDtype)
    assert guarded["'=cause"].tolist() == ["'=HYPERLINK(x)", "greylisting", "'=HYPERLINK(x)"]
    back = pd.read_parquet(write_table(frame, tmp_path / "t.parquet"))
    assert isinstance(back["'=cause"].dtype, pd.CategoricalDtype)
    assert _csv_cells(to_safe_csv(frame) or "") == ["'=HYPERLINK(x)", "greylisting", "'=HYPERLINK(x)"]


# ---------------------------------------------------------------- HTML of the load report

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(1)>"


def test_load_report_html_escapes_paths_values_reasons_and_errors(tmp_path: Path):
    folder = tmp_path / "<b>exports"
    folder.mkdir()
    rows = [make_corpus.ps51_row(0), make_corpus.ps51_row(1, received=HOSTILE), make_corpus.ps51_row(2, status=HOSTILE)]
    (folder / "trace<i>.csv").write_text(make_corpus.ps51_text(rows), "ascii")
    (folder / f"{HOSTILE.replace('/', '|')}.csv").write_text("<b>not</b>,<i>an</i>,<u>export</u>\n", "ascii")
    _, report = load_trace(folder, with_report=True)
    loaded, skipped = sorted(report.files, key=lambda f: f.skipped is not None)
    assert HOSTILE[:40] in loaded.rejects[0][1] and any(HOSTILE in w for w in loaded.warnings)
    assert skipped.skipped and "<b>not</b>" in skipped.skipped
    page = report._repr_html_()
    for raw in ("<script", "<img", "<b>", "<i>", "<u>"):
        assert raw not in page
    for escaped in ("&lt;script&gt;", "&lt;img src=x onerror=alert(1)&gt;", "&lt;b&gt;exports", "trace&lt;i&gt;.csv",
                    "&lt;b&gt;not&lt;/b&gt;"):
        assert escaped in page


def test_hand_built_report_html_escapes_every_field():
    report = LoadReport([FileReport(path=HOSTILE, format_label=HOSTILE, encoding=HOSTILE, warnings=[HOSTILE],
                                    rejects=[(1, HOSTILE)], rows_rejected=1, error=HOSTILE)])
    page = report._repr_html_()
    assert "<script" not in page and "<img" not in page
    assert page.count("&lt;script&gt;") >= 3
