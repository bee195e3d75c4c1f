"""Build the bundled Microsoft 365 endpoints snapshot and the recorded web-service answers used by tests.

Inputs (verbatim copies of docs/reference/endpoints/, kept in tests/data/endpoints/):

* ``worldwide-2020122300-verbatim.json`` - a saved 2020-12 ``/endpoints/Worldwide`` answer (all areas);
* ``exchange-sets-2025013000-derived.json`` - the Exchange sets of version 2025013000, reconstructed by
  hand from Microsoft's generated docs table (DERIVED, not a web-service answer).

Outputs:

* ``analysis/reference/data/endpoints/worldwide.json`` - the snapshot: the 2025013000 Exchange sets plus every
  other service area from the 2020 answer, in the web-service record schema, with ``version``,
  ``derived`` and ``provenance`` (sha256 of each input, which set came from which file);
* ``tests/data/endpoints/version-worldwide-2025013000.json`` - a ``/version/Worldwide`` answer;
* ``tests/data/endpoints/changes-worldwide-2020122300.json`` - a ``/changes/Worldwide/2020122300``
  answer computed as the difference between the 2020 answer and the snapshot (derived: Microsoft's
  real answer lists every intermediate version).

Run ``python tools/build_endpoints_snapshot.py`` to (re)write them, ``--check`` to verify that the
committed files are what the inputs produce (exit 1 if not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "tests" / "data" / "endpoints"
OLD_FILE = "worldwide-2020122300-verbatim.json"
NEW_FILE = "exchange-sets-2025013000-derived.json"
OLD_VERSION = "2020122300"
SNAPSHOT = ROOT / "analysis" / "reference" / "data" / "endpoints" / "worldwide.json"
VERSION_ANSWER = INPUTS / "version-worldwide-2025013000.json"
CHANGES_ANSWER = INPUTS / f"changes-worldwide-{OLD_VERSION}.json"


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build(inputs: Path = INPUTS) -> dict[Path, str]:
    """The text of every output file, keyed by path."""
    old_bytes = (inputs / OLD_FILE).read_bytes()
    new_bytes = (inputs / NEW_FILE).read_bytes()
    old_sets: list[dict[str, Any]] = json.loads(old_bytes)
    new_doc = json.loads(new_bytes)
    version = new_doc["version"]
    exchange = new_doc["endpoints"]
    if any(record["serviceArea"] != "Exchange" for record in exchange):
        raise SystemExit(f"{NEW_FILE}: expected Exchange sets only")
    others = [record for record in old_sets if record["serviceArea"] != "Exchange"]
    sets = sorted(exchange + others, key=lambda record: record["id"])
    snapshot = {
        "schema": "exo-deferrals endpoints snapshot 1",
        "instance": "Worldwide",
        "version": version,
        "derived": True,
        "note": (
            f"Exchange sets of version {version} (derived from Microsoft's generated docs, not a web-service "
            f"answer); all other service areas from the verbatim web-service answer of version "
            f"{OLD_VERSION}. Records follow the /endpoints schema."
        ),
        "provenance": {
            "built_by": "tools/build_endpoints_snapshot.py",
            "inputs": [
                {"file": NEW_FILE, "sha256": hashlib.sha256(new_bytes).hexdigest(), "version": version,
                 "derived": True, "service_areas": ["Exchange"], "origin": new_doc.get("_comment", "")},
                {"file": OLD_FILE, "sha256": hashlib.sha256(old_bytes).hexdigest(), "version": OLD_VERSION,
                 "derived": False, "service_areas": sorted({r["serviceArea"] for r in others}),
                 "origin": "verbatim /endpoints/Worldwide answer of the Microsoft 365 IP and URL web "
                           "service, version 2020122300 (Exchange sets replaced, other areas kept)"},
            ],
            "sets": {str(r["id"]): NEW_FILE if r["serviceArea"] == "Exchange" else OLD_FILE for r in sets},
        },
        "endpoints": sets,
    }
    return {
        SNAPSHOT: _dump(snapshot),
        VERSION_ANSWER: _dump({"instance": "Worldwide", "latest": version}),
        CHANGES_ANSWER: _dump(_changes(old_sets, sets, version)),
    }


def _changes(old: list[dict[str, Any]], new: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    """The /changes records that take the ``old`` sets to the ``new`` ones (one record per set)."""
    before = {r["id"]: r for r in old}
    after = {r["id"]: r for r in new}
    records = []
    for set_id in sorted(before.keys() | after.keys()):
        was, now = before.get(set_id, {}), after.get(set_id, {})
        added = {k: sorted(set(now.get(k, [])) - set(was.get(k, []))) for k in ("ips", "urls")}
        removed = {k: sorted(set(was.get(k, [])) - set(now.get(k, []))) for k in ("ips", "urls")}
        fields = ("tcpPorts", "udpPorts", "expressRoute", "category", "required", "notes")
        changed = [k for k in fields if was and now and was.get(k) != now.get(k)]
        if not any(added.values()) and not any(removed.values()) and not changed:
            continue
        record: dict[str, Any] = {
            "id": len(records) + 1,
            "endpointSetId": set_id,
            "disposition": "Add" if not was else "Remove" if not now else "Change",
            "impact": _impact(added, removed),
            "version": version,
        }
        if changed:
            record["previous"] = {k: was.get(k) for k in changed}
            record["current"] = {k: now.get(k) for k in changed}
        if any(added.values()):
            record["add"] = {"effectiveDate": version[:8], **{k: v for k, v in added.items() if v}}
        if any(removed.values()):
            record["remove"] = {k: v for k, v in removed.items() if v}
        records.append(record)
    return records


def _impact(added: dict[str, list[str]], removed: dict[str, list[str]]) -> str:
    if added["ips"] and added["urls"]:
        return "AddedIpAndUrl"
    if added["ips"]:
        return "AddedIp"
    if added["urls"]:
        return "AddedUrl"
    if removed["ips"] or removed["urls"]:
        return "RemovedIpOrUrl"
    return "OtherNonPriorityChanges"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the committed outputs, write nothing")
    args = parser.parse_args(argv)
    outputs = build()
    stale = [path for path, text in outputs.items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"{'wrote' if path in stale else 'unchanged'}: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
