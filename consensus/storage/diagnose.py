"""Read-only look at a log store directory, for an operator facing a CorruptLogError.

``python -m colonymesh.consensus.storage.diagnose DIR [--json]`` lists the
segments (index range, terms, bytes, where the intact records end and why),
the hard state slots and the snapshot, without modifying anything — unlike
``LogStore.open``, which truncates torn tails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from colonymesh.consensus.storage.fsutil import read_file
from colonymesh.consensus.storage.hardstate import SLOT_BYTES, decode_slot
from colonymesh.consensus.storage.records import (
    SEGMENT_HEADER_BYTES,
    RecordError,
    decode_segment_header,
    find_intact_record,
    scan_records,
)
from colonymesh.consensus.storage.segments import parse_segment_name
from colonymesh.consensus.storage.snapshots import decode_snapshot


def describe_segment(path: Path, first_index: int) -> dict[str, Any]:
    buf = read_file(path)
    out: dict[str, Any] = {"file": path.name, "bytes": len(buf), "first_index": first_index}
    try:
        declared = decode_segment_header(buf)
    except RecordError as exc:
        out["header_error"] = exc.reason
        return out
    if declared != first_index:
        out["header_error"] = f"header says first index {declared}"
    scan = scan_records(buf, SEGMENT_HEADER_BYTES, first_index)
    out["records"] = len(scan.offsets)
    out["last_index"] = first_index + len(scan.offsets) - 1
    out["terms"] = sorted(set(scan.terms))
    out["intact_bytes"] = scan.end
    if scan.error is not None:
        offset, reason = scan.error
        due = first_index + len(scan.offsets)
        out["problem"] = {
            "offset": offset,
            "reason": reason,
            "intact_record_follows_at": find_intact_record(buf, offset + 1, due),
        }
    return out


def describe(directory: Path) -> dict[str, Any]:
    segments = sorted(
        (first, name)
        for name in os.listdir(directory)
        if (first := parse_segment_name(name)) is not None
    )
    report: dict[str, Any] = {
        "directory": str(directory),
        "segments": [describe_segment(directory / n, f) for f, n in segments],
    }
    hs_path = directory / "hardstate"
    if hs_path.exists():
        buf = read_file(hs_path)
        slots: list[dict[str, Any]] = []
        for slot in (0, 1):
            try:
                state, seq = decode_slot(buf[slot * SLOT_BYTES : (slot + 1) * SLOT_BYTES])
                slots.append(
                    {
                        "slot": slot,
                        "seq": seq,
                        "term": state.term,
                        "voted_for": state.voted_for,
                        "commit": state.commit,
                    }
                )
            except RecordError as exc:
                slots.append({"slot": slot, "error": exc.reason})
        report["hard_state_slots"] = slots
    snap_path = directory / "snapshot"
    if snap_path.exists():
        try:
            meta = decode_snapshot(read_file(snap_path)).meta
            report["snapshot"] = {
                "index": meta.index,
                "term": meta.term,
                "voters": list(meta.conf.voters),
                "learners": list(meta.conf.learners),
            }
        except RecordError as exc:
            report["snapshot"] = {"error": exc.reason}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"error: {args.directory} is not a directory", file=sys.stderr)
        return 2
    report = describe(args.directory)
    if args.json:
        print(json.dumps(report))
        return 0
    for seg in report["segments"]:
        line = f"{seg['file']}: {seg['bytes']} bytes"
        if "header_error" in seg:
            line += f", bad header ({seg['header_error']})"
        if "records" in seg:
            line += f", entries {seg['first_index']}..{seg['last_index']}, terms {seg['terms']}"
        if "problem" in seg:
            p = seg["problem"]
            line += f"\n  problem at offset {p['offset']}: {p['reason']}"
            if p["intact_record_follows_at"] is not None:
                line += f" (intact record follows at {p['intact_record_follows_at']})"
        print(line)
    for slot in report.get("hard_state_slots", []):
        print(f"hardstate slot {slot}")
    if "snapshot" in report:
        print(f"snapshot {report['snapshot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
