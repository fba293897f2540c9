"""`fusednn bench --compare FILE`: this run's rows beside an earlier run's.

An earlier run is a results JSON file: one suite's (e.g. conv-cpu-2026-12-02.json) or
the summary-<date>.json a whole `fusednn bench` run writes. Results are matched by
series (the file name without its date: conv-cpu, recurrent-cpu-1thread, pooling-h200)
and, within a series, by the fields that name a row (shape, pass, cell, N, ...). For
each matched row: fusednn's time then and now, the ratio torch / fusednn then and now,
and their ratio (above 1: fusednn gained on torch), which takes out what the machine or
torch changed when both runs are on different machines or versions.
"""
from __future__ import annotations

import json
import pathlib
import re

from . import common

# The fields that name a row, in the order they are shown.
IDENTITY = ("dtype", "cell", "mode", "op", "shape", "name", "pass", "N", "U", "F", "T")
# torch time / fusednn time, under the names the suites (and older results) use.
RATIO_KEYS = ("torch_over_fusednn", "fusednn_vs_torch", "ratio")
_DATE = re.compile(r"-\d{4}-\d{2}-\d{2}")


class CompareError(Exception):
    """The earlier file cannot be compared with; the message says why."""


def series(name: str) -> str:
    """A results name without its date: conv-cpu-2026-12-02-1threads -> conv-cpu-1threads."""
    return _DATE.sub("", name, count=1)


def rows_of(payload: dict) -> list:
    return payload.get("results") or payload.get("rows") or []


def load(path) -> dict:
    """{series: rows} of a suite's results file or of a run's summary JSON."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise CompareError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise CompareError(f"{path} is not a JSON results file ({e})") from None
    if not isinstance(data, dict):
        raise CompareError(f"{path} is not a results file: expected a JSON object, got "
                           f"{type(data).__name__}")
    runs = data["runs"] if "runs" in data else [{"name": path.stem, "payload": data}]
    found = {series(run["name"]): rows_of(run["payload"]) for run in runs}
    found = {key: rows for key, rows in found.items() if rows}
    if not found:
        raise CompareError(f"{path} holds no benchmark rows (expected a suite's results "
                           "JSON or a summary-<date>.json of fusednn bench)")
    return found


def row_key(row: dict) -> str:
    parts = []
    for field in IDENTITY:
        if field in row:
            value = row[field]
            parts.append(f"{field}={value}" if field in ("N", "U", "F", "T") else str(value))
    return ", ".join(parts)


def torch_ratio(row: dict):
    return next((row[key] for key in RATIO_KEYS if row.get(key)), None)


def compare(before: dict, now: dict) -> tuple:
    """(matched rows, how many rows of each side found no partner)."""
    matched, unmatched = [], 0
    for name, rows in now.items():
        earlier = {row_key(row): row for row in before.get(name, []) if "fusednn_ms" in row}
        for row in rows:
            old = earlier.pop(row_key(row), None)
            if old is None or "fusednn_ms" not in row:
                unmatched += 1
                continue
            entry = {"series": name, "row": row_key(row), "fusednn_ms_before": old["fusednn_ms"],
                     "fusednn_ms_now": row["fusednn_ms"],
                     "fusednn_speedup": old["fusednn_ms"] / row["fusednn_ms"],
                     "fusednn_fraction_before": old.get("fusednn_fraction"),
                     "fusednn_fraction_now": row.get("fusednn_fraction")}
            ratio_before, ratio_now = torch_ratio(old), torch_ratio(row)
            if ratio_before and ratio_now:
                entry.update(torch_ratio_before=ratio_before, torch_ratio_now=ratio_now,
                             ratio_of_ratios=ratio_now / ratio_before)
            matched.append(entry)
        unmatched += len(earlier)
    unmatched += sum(len(rows) for name, rows in before.items() if name not in now)
    return matched, unmatched


def markdown(matched: list, unmatched: int, before_label: str) -> str:
    header = ["series", "row", "fusednn ms before", "now", "before / now",
              "of limit before", "now", "torch / fusednn before", "now", "ratio of ratios"]
    table = [[m["series"], m["row"], f"{m['fusednn_ms_before']:.3f}",
              f"{m['fusednn_ms_now']:.3f}", f"{m['fusednn_speedup']:.2f}",
              common.percent(m["fusednn_fraction_before"]),
              common.percent(m["fusednn_fraction_now"]),
              f"{m['torch_ratio_before']:.2f}" if "torch_ratio_before" in m else "",
              f"{m['torch_ratio_now']:.2f}" if "torch_ratio_now" in m else "",
              f"{m['ratio_of_ratios']:.2f}" if "ratio_of_ratios" in m else ""]
             for m in matched]
    return (f"# This run against {before_label}\n\n{len(matched)} rows matched, {unmatched} "
            "without a partner on the other side. before / now above 1: fusednn is faster "
            "now; ratio of ratios = (torch / fusednn now) / (torch / fusednn before), above "
            "1: fusednn gained on torch.\n\n"
            + common.markdown_table(header, table, "llrrrrrrrr"))
