"""The evaluation report: its data (EvaluationReport, ModelResult), its Markdown, its charts and
`write_report`, the one place a report's files (report.md, report.json, one PNG per metric) are
written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tvrec.jobs.evaluation.confidence import ConfidenceCheck, confidence_chart, confidence_lines
from tvrec.jobs.evaluation.forecast_report import forecast_chart, forecast_lines, timing_lines
from tvrec.jobs.evaluation.metrics import BandMetrics, Metrics


@dataclass
class ModelResult:
    name: str
    metrics: Metrics
    fit_seconds: float | None  # None for a precomputed table
    score_seconds: float | None = None
    params: dict[str, Any] = field(default_factory=dict)  # e.g. EASE's tuned lambda
    cold: Metrics | None = None  # the cold-start slice: ranking among cold shows only
    few_shot: Metrics | None = None  # users held out of training, served from 5 events
    by_history: list[BandMetrics] | None = None  # the test users by their history length

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.name,
            **self.metrics.to_json(),
            "fit_seconds": self.fit_seconds,
            "score_seconds": self.score_seconds,
            "params": self.params,
            "cold_start": self.cold.to_json() if self.cold else None,
            "few_shot": self.few_shot.to_json() if self.few_shot else None,
            "by_history": [b.to_json() for b in self.by_history] if self.by_history else None,
        }


@dataclass
class EvaluationReport:
    dataset: str
    split: dict[str, Any]
    results: list[ModelResult]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # a forecasting model's MASE per method and horizon, and its release-timing table
    forecast: pl.DataFrame | None = None
    timing: pl.DataFrame | None = None
    # a fusing model without each member and each member alone (see `ablation_table`)
    ablation: pl.DataFrame | None = None
    # a model's published confidence against the held-out hits (see `confidence_check`)
    confidence: dict[str, ConfidenceCheck] = field(default_factory=dict)

    def result(self, name: str) -> ModelResult:
        return next(r for r in self.results if r.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "models": [r.to_json() for r in self.results],
            "files": [str(p) for p in self.files],
            "notes": self.notes,
            "forecast": None if self.forecast is None else self.forecast.to_dicts(),
            "release_timing": None if self.timing is None else self.timing.to_dicts(),
            "ablation": None if self.ablation is None else self.ablation.to_dicts(),
            "confidence": {name: check.to_json() for name, check in self.confidence.items()},
        }


def _fmt_seconds(s: float | None) -> str:
    return "—" if s is None else f"{s:.1f}"


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def markdown(report: EvaluationReport) -> str:
    """The report as Markdown: the split, then one table row per model."""
    sp = report.split
    k = report.results[0].metrics.k if report.results else 10
    lines = [
        f"# Offline evaluation: {report.dataset}",
        "",
        f"- split: **{sp['kind']}**"
        + (f", cutoff {sp['cutoff']}" if sp["cutoff"] else f", seed {sp['seed']}"),
        f"- train pairs: {sp['train_pairs']:,} ({sp['train_users']:,} users, "
        f"{sp['catalogue']:,} shows = the ranked catalogue)",
        f"- test pairs: {sp['test_pairs']:,}; test users: {sp['test_users']:,}",
        f"- full ranking over the catalogue, k = {k}, each user's train shows excluded; "
        "NDCG interval: bootstrap 95% over users (1,000 resamples)",
        "",
        f"| model | HR@{k} | Recall@{k} | NDCG@{k} (95% CI) | coverage | fit s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report.results:
        m = r.metrics
        lines.append(
            f"| {r.name} | {m.hr:.3f} | {m.recall:.3f} | {m.ndcg:.3f} "
            f"({m.ndcg_ci[0]:.3f}–{m.ndcg_ci[1]:.3f}) | {m.coverage:.3f} "
            f"| {_fmt_seconds(r.fit_seconds)} |"
        )
    lines += _history_lines(report, k) + _cold_lines(report, k) + _few_shot_lines(report, k)
    lines += _ablation_lines(report, k)
    lines += confidence_lines(report.confidence, k)
    lines += forecast_lines(report.forecast) + timing_lines(report.timing)
    params = [f"- {r.name}: {_fmt_params(r.params)}" for r in report.results if r.params]
    lines += ["", "Parameters:", "", *params] if params else []
    lines += ["", *[f"> note: {n}" for n in report.notes]]
    return "\n".join(lines).rstrip() + "\n"


def _history_lines(report: EvaluationReport, k: int) -> list[str]:
    """The by-history slice: one row per model, HR and NDCG per band of history length."""
    rows = [(r.name, history) for r in report.results if (history := r.by_history)]
    if not rows:
        return []
    bands = rows[0][1]  # every model is scored on the same test users: the same band sizes
    head = " | ".join(f"HR@{k} {b.label} (n={b.users:,}) | NDCG@{k} {b.label}" for b in bands)
    lines = [
        "",
        "By history length: the scores above over the test users grouped by their number of "
        'training pairs (events) in this split; n = users in the band, "–" = no users.',
        "",
        f"| model | {head} |",
        "| --- |" + " ---: |" * (2 * len(bands)),
    ]
    for name, scored in rows:
        cells = " | ".join(f"{_fmt_share(b.hr)} | {_fmt_share(b.ndcg)}" for b in scored)
        lines.append(f"| {name} | {cells} |")
    return lines


def _fmt_share(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _cold_lines(report: EvaluationReport, k: int) -> list[str]:
    cold = [r for r in report.results if r.cold is not None]
    if not cold:
        return []
    n_users = cold[0].cold.users if cold[0].cold else 0
    lines = [
        "",
        f"Cold-start slice: test pairs of shows with no training event ({n_users:,} users). "
        "tvrec's models rank the catalogue's new shows only (no training event, on air by the "
        "end of the test period); a collaborative peer ranks only shows it saw in training, so "
        "it scores zero here.",
    ]
    return lines + _slice_table([(r.name, r.cold) for r in cold], k)


def _slice_table(rows: list[tuple[str, Metrics | None]], k: int) -> list[str]:
    """A slice's table: one row per model with HR, recall and NDCG (interval)."""
    lines = [
        "",
        f"| model | HR@{k} | Recall@{k} | NDCG@{k} (95% CI) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, m in rows:
        assert m is not None
        lines.append(
            f"| {name} | {m.hr:.3f} | {m.recall:.3f} | {m.ndcg:.3f} "
            f"({m.ndcg_ci[0]:.3f}–{m.ndcg_ci[1]:.3f}) |"
        )
    return lines


def _few_shot_lines(report: EvaluationReport, k: int) -> list[str]:
    few = report.split.get("few_shot")
    if not few:
        return []
    scored = [r for r in report.results if r.few_shot is not None]
    missing = [r.name for r in report.results if r.few_shot is None]
    lines = [
        "",
        f"Few-shot slice: {few['users']:,} users held out of training entirely; each model "
        f"gets their first {few['k']} events at serving time (peers fold them in: item-kNN and "
        f"EASE score from those shows, ALS solves the user's factors) and is scored on the "
        f"rest ({few['query_pairs']:,} pairs).",
    ]
    lines += _slice_table([(r.name, r.few_shot) for r in scored], k)
    if missing:
        lines += ["", f"Not scored (cannot fold a new user in): {', '.join(missing)}."]
    return lines


def _ablation_lines(report: EvaluationReport, k: int) -> list[str]:
    if report.ablation is None:
        return []
    lines = [
        "",
        "Ablation: the fused model on the same test users and the same retrieved candidates, "
        "with each member hidden in turn (the weights renormalise over the rest, as when a "
        "member fails to load; the fusion is trained with members hidden at random, not "
        "refitted without it), and each member's own score alone.",
        "",
        f"| model | variant | NDCG@{k} (95% CI) | HR@{k} | change |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in report.ablation.iter_rows(named=True):
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['ndcg']:.3f} ({r['ndcg_lo']:.3f}–"
            f"{r['ndcg_hi']:.3f}) | {r['hr']:.3f} | {r['delta']:+.3f} |"
        )
    return lines


def _ablation_chart(table: pl.DataFrame, title: str, path: Path) -> None:
    """One horizontal bar per variant with its interval; a line at the full fusion's NDCG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{m.removeprefix('tvrec (').rstrip(')')}: {v}" for m, v in
              zip(table["model"], table["variant"], strict=True)]  # fmt: skip
    ndcg = table["ndcg"].to_numpy()
    err = np.vstack([ndcg - table["ndcg_lo"].to_numpy(), table["ndcg_hi"].to_numpy() - ndcg])
    full = table.filter(pl.col("variant") == "all members")["ndcg"].to_list()
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(labels) + 1.4))
    y = np.arange(len(labels))[::-1]
    colours = ["#4c72b0" if v.startswith("without") or v == "all members" else "#dd8452"
               for v in table["variant"]]  # fmt: skip
    ax.barh(y, ndcg, xerr=err.clip(min=0), color=colours, capsize=2)
    for value in full:
        ax.axvline(value, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("NDCG (blue: fusion, orange: one member alone)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bar_chart(report: EvaluationReport, metric: str, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in report.results]
    values = np.array([getattr(r.metrics, metric) for r in report.results])
    tops, yerr = values, None
    if metric == "ndcg":  # asymmetric error bars from the bootstrap interval
        lo = np.array([r.metrics.ndcg_ci[0] for r in report.results])
        tops = np.array([r.metrics.ndcg_ci[1] for r in report.results])
        yerr = np.vstack([values - lo, tops - values]).clip(min=0)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 3.6))
    ax.bar(names, values, yerr=yerr, capsize=4, color="#4c72b0")
    for x, (v, top) in enumerate(zip(values, tops, strict=True)):
        ax.annotate(
            f"{v:.3f}", (x, top), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8
        )
    ax.set_ylabel(label)
    ax.set_title(f"{label} — {report.dataset} ({report.split['kind']} split)")
    ax.set_ylim(0, max(1e-9, float(tops.max(initial=0))) * 1.2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cold_chart(report: EvaluationReport, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r.name, r.cold.recall) for r in report.results if r.cold is not None]
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2.5, 3.6))
    ax.bar([n for n, _ in rows], [v for _, v in rows], color="#dd8452")
    for x, (_, v) in enumerate(rows):
        ax.annotate(
            f"{v:.3f}", (x, v), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8
        )
    ax.set_ylabel(label)
    ax.set_title(f"{label} — {report.dataset}")
    ax.set_ylim(0, max(0.05, max(v for _, v in rows) * 1.2))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# Metrics attribute -> axis label ({k} is the cut-off)
CHARTS = {
    "hr": "HR@{k}",
    "recall": "Recall@{k}",
    "ndcg": "NDCG@{k}",
    "coverage": "catalogue coverage",
}


def write_report(report: EvaluationReport, out_dir: Path) -> list[Path]:
    """report.md, report.json and one PNG per metric in out_dir; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    md.write_text(markdown(report), encoding="utf-8")
    js = out_dir / "report.json"
    files = [md, js]
    k = report.results[0].metrics.k if report.results else 10
    for metric, label in CHARTS.items():
        path = out_dir / f"{metric}.png"
        _bar_chart(report, metric, label.format(k=k), path)
        files.append(path)
    if any(r.cold is not None for r in report.results):
        path = out_dir / "cold_start_recall.png"
        _cold_chart(report, f"Recall@{k} on cold-start shows", path)
        files.append(path)
    if report.ablation is not None and report.ablation.height:
        path = out_dir / "ablation.png"
        _ablation_chart(report.ablation, f"NDCG@{k}: ablation — {report.dataset}", path)
        files.append(path)
    if report.confidence:
        path = out_dir / "confidence.png"
        confidence_chart(report.confidence, f"Hit rate by confidence — {report.dataset}", path)
        files.append(path)
    if report.forecast is not None and report.forecast.height:
        path = out_dir / "forecast_mase.png"
        forecast_chart(report.forecast, f"Forecast MASE — {report.dataset}", path)
        files.append(path)
    report.files = files
    js.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
    return files


def pipeline_notes(
    build_seconds: float | None, cold_candidates: int, chance: Metrics | None
) -> list[str]:
    """The notes `evaluate` adds about tvrec's own pipeline: the shared feature build's time and,
    when there is a cold slice, the chance reference of a random order of the cold candidates."""
    notes = [
        f"tvrec fit s = training + nightly precompute; the lake and feature build they share "
        f"took {build_seconds or 0:.0f} s more"
    ]
    if chance is not None:
        notes.append(
            f"cold-start slice: tvrec ranks the {cold_candidates:,} catalogue shows with no "
            f"training event that are on air by the end of the test period; a random order of "
            f"them scores HR@{chance.k} {chance.hr:.3f}, Recall@{chance.k} {chance.recall:.3f}, "
            f"NDCG@{chance.k} {chance.ndcg:.3f} (mean of 20 orders)"
        )
    return notes


__all__ = [
    "CHARTS",
    "EvaluationReport",
    "ModelResult",
    "markdown",
    "pipeline_notes",
    "write_report",
]
