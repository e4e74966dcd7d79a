"""Offline evaluation: split a dataset like an outside benchmark does and score models on it.

- `split(ds)`: timed data is cut at the 90% quantile of event time (train before, test at/after);
  untimed data is split 80/20 per event at random (numpy default_rng(seed)). Either way test
  users must appear in train, test pairs exclude shows the user saw in train, and duplicate
  (user, show) events collapse to one pair.
- `evaluate_topk(topk, split)`: HR@k, Recall@k, NDCG@k (with a bootstrap 95% interval over
  users) and catalogue coverage of any model's top-k table, so peers and tvrec's own published
  recommendations are scored by the same code.
- `run_peer_evaluation(ds, extra, out_dir)`: fits the peers of `tvrec.models.peers`, scores them
  and any extra models, and writes `report.md`, `report.json` and one bar chart per metric.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from tvrec.models.peers import Peer, default_peers
from tvrec.pipelines.contract import Dataset

SplitKind = Literal["temporal", "random"]
# The columns of a split's train and test frames.
PAIR_COLUMNS = ("user_id", "show_id", "weight", "event_timestamp")
TopK = pl.DataFrame | Mapping[str, list[str]]
# An extra model's answer: its top-k table, or (top-k table, top-k over the cold shows only).
Answer = pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]
ExtraModel = Answer | Callable[["Split"], Answer]


@dataclass(frozen=True)
class SplitConfig:
    """How `split` cuts events: time quantile (timed data) or random share (untimed data)."""

    test_quantile: float = 0.9  # timed: test = events at/after this quantile of event time
    train_share: float = 0.8  # untimed: each event goes to train with this probability
    seed: int = 42


@dataclass(frozen=True)
class MetricConfig:
    k: int = 10
    bootstrap: int = 1_000  # resamples of test users for the NDCG interval
    bootstrap_seed: int = 0
    ci: float = 0.95


@dataclass
class Split:
    """Train and test (user, show) pairs, one row per pair (columns PAIR_COLUMNS).

    `cutoff` is the time boundary of a temporal split (None for a random one); `catalogue` is
    every show seen in train, the items a model ranks.
    """

    train: pl.DataFrame
    test: pl.DataFrame
    kind: SplitKind
    cutoff: datetime | None = None
    seed: int = 42

    @property
    def catalogue(self) -> list[str]:
        return self.train["show_id"].unique().sort().to_list()

    @property
    def test_users(self) -> list[str]:
        return self.test["user_id"].unique().sort().to_list()

    @property
    def cold_shows(self) -> list[str]:
        """Test shows with no training event at all: item cold start."""
        seen = self.train["show_id"].unique().implode()
        return self.test.filter(~pl.col("show_id").is_in(seen))["show_id"].unique().sort().to_list()

    def cold_slice(self) -> Split:
        """The same split with only test pairs of cold shows (and their users)."""
        cold = self.test.filter(pl.col("show_id").is_in(pl.Series(self.cold_shows).implode()))
        return Split(self.train, cold, self.kind, self.cutoff, self.seed)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "seed": self.seed if self.kind == "random" else None,
            "train_pairs": self.train.height,
            "test_pairs": self.test.height,
            "test_users": self.test["user_id"].n_unique(),
            "train_users": self.train["user_id"].n_unique(),
            "catalogue": self.train["show_id"].n_unique(),
        }


# ---- splitting -----------------------------------------------------------------------------
def _collapse(events: pl.DataFrame) -> pl.DataFrame:
    """One row per (user, show): the first time it happened and its largest weight."""
    return (
        events.group_by("user_id", "show_id")
        .agg(pl.col("weight").max(), pl.col("event_timestamp").min())
        .sort("event_timestamp", "user_id", "show_id")
        .select(PAIR_COLUMNS)
    )


def _filter_test(train: pl.DataFrame, test: pl.DataFrame) -> pl.DataFrame:
    """Test pairs of users known to train, minus shows the user already saw in train."""
    test = test.filter(pl.col("user_id").is_in(train["user_id"].unique().implode()))
    return test.join(train.select("user_id", "show_id"), on=["user_id", "show_id"], how="anti")


def time_quantile(timestamps: pl.Series, q: float) -> datetime:
    """The q-quantile of event times (linear interpolation, floored to the microsecond)."""
    micros = timestamps.dt.epoch("us").to_numpy()
    cut = math.floor(float(np.quantile(micros, q)))
    return pl.Series([cut]).cast(pl.Datetime("us", "UTC"))[0]


def cut_events(events: pl.DataFrame, kind: SplitKind, test_share: float, seed: int = 42) -> Split:
    """Split raw events (PAIR_COLUMNS at least) into collapsed, filtered train/test pairs.

    temporal: cutoff at the (1 - test_share) quantile of event time, train strictly before;
    random: each event goes to test with probability test_share (numpy default_rng(seed)).
    """
    events = events.select(PAIR_COLUMNS)
    cutoff: datetime | None = None
    if kind == "temporal":
        cutoff = time_quantile(events["event_timestamp"], 1.0 - test_share)
        in_train = events["event_timestamp"] < cutoff
    else:
        # one uniform draw per event, in the events' given (canonical) order
        draws = np.random.default_rng(seed).random(events.height)
        in_train = pl.Series(draws >= test_share)
    train = _collapse(events.filter(in_train))
    test = _filter_test(train, _collapse(events.filter(~in_train)))
    return Split(train=train, test=test, kind=kind, cutoff=cutoff, seed=seed)


def split(ds: Dataset, seed: int = 42, config: SplitConfig | None = None) -> Split:
    """The benchmark split of `ds`: temporal when its events are timed, random otherwise."""
    cfg = config or SplitConfig(seed=seed)
    if ds.timed and ds.events["event_timestamp"].n_unique() > 1:
        return cut_events(ds.events, "temporal", 1.0 - cfg.test_quantile, cfg.seed)
    return cut_events(ds.events, "random", 1.0 - cfg.train_share, cfg.seed)


# ---- metrics -------------------------------------------------------------------------------
@dataclass
class Metrics:
    """Top-k accuracy over the test users (each user weighs the same)."""

    k: int
    users: int
    hr: float
    recall: float
    ndcg: float
    ndcg_ci: tuple[float, float]
    coverage: float
    recommended_shows: int
    catalogue: int

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "users": self.users,
            f"hr@{self.k}": self.hr,
            f"recall@{self.k}": self.recall,
            f"ndcg@{self.k}": self.ndcg,
            f"ndcg@{self.k}_ci95": list(self.ndcg_ci),
            "coverage": self.coverage,
            "recommended_shows": self.recommended_shows,
            "catalogue": self.catalogue,
        }


def topk_frame(topk: TopK) -> pl.DataFrame:
    """A {user: [show, ...]} dict or a (user_id, rank, show_id, ...) frame as a frame."""
    if isinstance(topk, pl.DataFrame):
        return topk.select(
            pl.col("user_id").cast(pl.String),
            pl.col("rank").cast(pl.Int64),
            pl.col("show_id").cast(pl.String),
        )
    rows = [(u, r, s) for u, shows in topk.items() for r, s in enumerate(shows, start=1)]
    return pl.DataFrame(
        rows, schema={"user_id": pl.String, "rank": pl.Int64, "show_id": pl.String}, orient="row"
    )


def _positions(topk: pl.DataFrame, split: Split, k: int) -> pl.DataFrame:
    """Each test user's first k distinct unseen shows, with 1-based positions (user, show, pos)."""
    train_pairs = split.train.select("user_id", "show_id")
    return (
        topk.filter(pl.col("user_id").is_in(split.test["user_id"].unique().implode()))
        .join(train_pairs, on=["user_id", "show_id"], how="anti")
        .sort("user_id", "rank", maintain_order=True)
        .unique(subset=["user_id", "show_id"], keep="first", maintain_order=True)
        .with_columns(pos=pl.int_range(1, pl.len() + 1).over("user_id"))
        .filter(pl.col("pos") <= k)
        .select("user_id", "show_id", "pos")
    )


def per_user_scores(recs: pl.DataFrame, split: Split, k: int = 10) -> pl.DataFrame:
    """One row per test user: n_test, hits, recall and ndcg at k (zero for users without recs).

    `recs` holds (user_id, show_id, pos) rows as `_positions` returns them.
    """
    truth = split.test.select("user_id", "show_id", hit=pl.lit(1))
    gains = (
        recs.join(truth, on=["user_id", "show_id"], how="inner")
        .group_by("user_id")
        .agg(hits=pl.len(), dcg=(1.0 / (pl.col("pos") + 1).log(2)).sum())
    )
    # ideal DCG: all min(k, n_test) relevant shows at the top
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    idcg_table = np.concatenate([[0.0], np.cumsum(discounts)])
    users = split.test.group_by("user_id").agg(n_test=pl.len())
    out = users.join(gains, on="user_id", how="left").with_columns(
        pl.col("hits").fill_null(0), pl.col("dcg").fill_null(0.0)
    )
    denom = out["n_test"].clip(upper_bound=k)
    idcg = pl.Series(idcg_table[denom.to_numpy()])
    return out.with_columns(recall=pl.col("hits") / denom, ndcg=pl.col("dcg") / idcg).sort(
        "user_id"
    )


def bootstrap_ci(
    values: np.ndarray, resamples: int = 1_000, seed: int = 0, ci: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of `values` over `resamples` resamples with replacement."""
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(resamples, values.size))  # (resamples, users)
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return (float(lo), float(hi))


def evaluate_topk(topk: TopK, split: Split, config: MetricConfig | None = None) -> Metrics:
    """Score a top-k table against `split.test` (train shows are dropped from each list first)."""
    cfg = config or MetricConfig()
    recs = _positions(topk_frame(topk), split, cfg.k)
    users = per_user_scores(recs, split, cfg.k)
    catalogue = split.train["show_id"].n_unique()
    ndcg = users["ndcg"].to_numpy()
    n = users.height
    return Metrics(
        k=cfg.k,
        users=n,
        hr=float((users["hits"] > 0).mean()) if n else 0.0,
        recall=float(users["recall"].mean()) if n else 0.0,
        ndcg=float(ndcg.mean()) if n else 0.0,
        ndcg_ci=bootstrap_ci(ndcg, cfg.bootstrap, cfg.bootstrap_seed, cfg.ci),
        coverage=recs["show_id"].n_unique() / catalogue if catalogue else 0.0,
        recommended_shows=recs["show_id"].n_unique(),
        catalogue=catalogue,
    )


# ---- the peer report -----------------------------------------------------------------------
@dataclass
class ModelResult:
    name: str
    metrics: Metrics
    fit_seconds: float | None  # None for a precomputed table
    score_seconds: float | None = None
    params: dict[str, Any] = field(default_factory=dict)  # e.g. EASE's tuned lambda
    cold: Metrics | None = None  # the cold-start slice: ranking among cold shows only

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.name,
            **self.metrics.to_json(),
            "fit_seconds": self.fit_seconds,
            "score_seconds": self.score_seconds,
            "params": self.params,
            "cold_start": self.cold.to_json() if self.cold else None,
        }


@dataclass
class EvaluationReport:
    dataset: str
    split: dict[str, Any]
    results: list[ModelResult]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def result(self, name: str) -> ModelResult:
        return next(r for r in self.results if r.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "models": [r.to_json() for r in self.results],
            "files": [str(p) for p in self.files],
            "notes": self.notes,
        }


def _fit_peer(peer: Peer, split: Split, k: int) -> tuple[pl.DataFrame, float, float]:
    """Fit a peer on train and rank the test users; (top-k frame, fit s, score s)."""
    start = time.perf_counter()
    peer.fit(split.train)
    fitted = time.perf_counter()
    topk = peer.recommend(split.test_users, k, exclude_seen=True)
    return topk, fitted - start, time.perf_counter() - fitted


def _score_extra(
    model: ExtraModel, split: Split
) -> tuple[pl.DataFrame, pl.DataFrame | None, float | None]:
    """(top-k, cold-only top-k or None, seconds) of a precomputed or callable model."""
    start = time.perf_counter()
    answer = model if isinstance(model, pl.DataFrame | tuple) else model(split)
    seconds = None if isinstance(model, pl.DataFrame | tuple) else time.perf_counter() - start
    if isinstance(answer, tuple):
        return answer[0], answer[1], seconds
    return answer, None, seconds


def run_peer_evaluation(
    ds: Dataset,
    extra_models: Mapping[str, ExtraModel] | None = None,
    out_dir: Path = Path("evaluation"),
    *,
    peers: Mapping[str, Peer] | None = None,
    seed: int = 42,
    metrics: MetricConfig | None = None,
) -> EvaluationReport:
    """Split `ds`, fit and score the peers and `extra_models`, write the report into out_dir.

    An extra model is either a precomputed top-k frame (user_id, rank, show_id) or a callable
    that trains on `split.train` and returns one (its wall time is reported as fit seconds).
    """
    cfg = metrics or MetricConfig()
    sp = split(ds, seed=seed)
    cold = sp.cold_slice()
    results: list[ModelResult] = []
    for name, peer in (peers or default_peers(sp.kind)).items():
        topk, fit_s, score_s = _fit_peer(peer, sp, cfg.k)
        metrics_ = evaluate_topk(topk, sp, cfg)
        # a collaborative peer ranks only shows it saw in train: its list is its cold answer
        cold_m = evaluate_topk(topk, cold, cfg) if cold.test.height else None
        results.append(ModelResult(name, metrics_, fit_s, score_s, peer.params(), cold_m))
    for name, model in (extra_models or {}).items():
        topk, cold_topk, fit_s = _score_extra(model, sp)
        cold_m = None
        if cold.test.height:
            cold_m = evaluate_topk(cold_topk if cold_topk is not None else topk, cold, cfg)
        results.append(ModelResult(name, evaluate_topk(topk, sp, cfg), fit_s, cold=cold_m))
    report = EvaluationReport(ds.name, sp.describe(), results, notes=list(ds.notes))
    report.files = write_report(report, Path(out_dir))
    return report


# ---- writing ---------------------------------------------------------------------------------
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
    lines += _cold_lines(report, k)
    params = [f"- {r.name}: {_fmt_params(r.params)}" for r in report.results if r.params]
    lines += ["", "Parameters:", "", *params] if params else []
    lines += ["", *[f"> note: {n}" for n in report.notes]]
    return "\n".join(lines).rstrip() + "\n"


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
        "",
        f"| model | HR@{k} | Recall@{k} | NDCG@{k} (95% CI) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in cold:
        m = r.cold
        assert m is not None
        lines.append(
            f"| {r.name} | {m.hr:.3f} | {m.recall:.3f} | {m.ndcg:.3f} "
            f"({m.ndcg_ci[0]:.3f}–{m.ndcg_ci[1]:.3f}) |"
        )
    return lines


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
    report.files = files
    js.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
    return files
