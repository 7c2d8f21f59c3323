"""One table of every evaluation: each run on each test set, the model beside the mean-hand baseline and the paper.

Written as TSV (for scripts) and as a small HTML page (for the report). Empty cells: the test set has no such
ground truth, or the paper gives no such figure.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from hand3d.atomic import atomic_write

__all__ = ["COLUMNS", "benchmark_rows", "headline_metrics", "summary_rows", "write_summary"]

# column -> (path in the scores, format)
METRICS = {
    "2D AUC 0-30 px": (("pck_2d_image_px", "auc"), "{:.3f}"),
    "2D mean error px": (("pck_2d_image_px", "mean_error"), "{:.1f}"),
    "3D AUC 20-50 mm (STB protocol)": (("pck_3d", "auc"), "{:.3f}"),
    "MPJPE mm (root-relative)": (("mpjpe_mm",), "{:.1f}"),
    "PA-MPJPE mm": (("freihand", "pa_mpjpe_mm"), "{:.1f}"),
}
COLUMNS = ["run", "test set", "samples", "metric", "model", "mean-hand baseline", "paper"]


def _lookup(scores: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(scores, dict) or key not in scores:
            return None
        scores = scores[key]
    return scores


def _format(value, pattern: str) -> str:
    return "" if value is None else pattern.format(value)


def _row(path: str, test_set: str, samples, metric: str, model: str, baseline: str = "", paper: str = "") -> dict:
    """A table row of formatted values; the run is the folder above the test set's
    (``results/eval/<run>/<test set>/<file>``)."""
    return {
        "run": Path(path).parent.parent.name,
        "test set": test_set,
        "samples": str(samples),
        "metric": metric,
        "model": model,
        "mean-hand baseline": baseline,
        "paper": paper,
    }


def headline_metrics(record: dict) -> list[tuple[str, str, str, str]]:
    """(metric, model, mean-hand baseline, paper), formatted, for each :data:`METRICS` entry a ``metrics.json``
    record has (empty: no such figure)."""
    paper = record.get("paper") or {}
    lines = []
    for name, (keys, pattern) in METRICS.items():
        value = _lookup(record["scores"]["model"], keys)
        if value is None:
            continue
        paper_value = paper.get("auc") if paper.get("metric") == keys[0] and keys[-1] == "auc" else None
        baseline = _lookup(record["scores"]["mean_hand"], keys)
        lines.append((name, *(_format(v, pattern) for v in (value, baseline, paper_value))))
    return lines


def summary_rows(metric_files: list[str]) -> list[dict[str, str]]:
    """One row per (run, test set, metric) present in the ``metrics.json`` files."""
    rows = []
    for path in metric_files:
        record = json.loads(Path(path).read_text())
        for metric, *values in headline_metrics(record):
            rows.append(_row(path, record["dataset"], record["samples"], metric, *values))
    return rows


BENCHMARK = {
    "FreiHAND PA-MPJPE mm": ("pa_mpjpe_mm", "{:.1f}"),
    "FreiHAND PA-MPVPE mm": ("pa_mpvpe_mm", "{:.1f}"),
    "FreiHAND F@5 mm": ("f_at_5mm", "{:.3f}"),
    "FreiHAND F@15 mm": ("f_at_15mm", "{:.3f}"),
}


def benchmark_rows(benchmark_files: list[str]) -> list[dict[str, str]]:
    """One row per FreiHAND benchmark score (``benchmark.json``), beside the paper's (as the FreiHAND paper gives)."""
    rows = []
    for path in benchmark_files:
        record = json.loads(Path(path).read_text())
        scores, paper = record["scores"], record.get("paper", {})
        for name, (key, pattern) in BENCHMARK.items():
            if key in scores:
                test_set, count = "freihand (benchmark)", scores["count"]
                values = (_format(scores[key], pattern), "", _format(paper.get(key), pattern))
                rows.append(_row(path, test_set, count, name, *values))
    return rows


def _html(rows: list[dict[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in COLUMNS) + "</tr>\n" for r in rows)
    style = "table{border-collapse:collapse;font:13px sans-serif}td,th{border:1px solid #ccc;padding:3px 8px}"
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
        f"<table><tr>{head}</tr>\n{body}</table></body></html>\n"
    )


def write_summary(
    metric_files: list[str], out_tsv: str, out_html: str, benchmark_files: list[str] = ()
) -> list[dict[str, str]]:
    rows = summary_rows(metric_files) + benchmark_rows(list(benchmark_files))

    def write_tsv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS, delimiter="\t")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(out_tsv, write_tsv)
    atomic_write(out_html, lambda tmp: Path(tmp).write_text(_html(rows)))
    return rows
