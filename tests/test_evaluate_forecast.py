"""`tvrec evaluate` with the temporal model: the report's forecast sections.

The small world plants a weekly rhythm and December shows; its temporal split cuts in its last
weeks. The temporal model, trained by the evaluate job as of the cut, is scored in MASE beside
seasonal-naive and last-30-days-mean forecasts of the same shows over the held-out days, and
its learned components give a release-timing table per genre. Both land in report.md,
report.json and a chart.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from tvrec.jobs.cli import app
from tvrec.jobs.evaluation.forecast import RECENT_MEAN, SEASONAL_NAIVE
from tvrec.jobs.evaluation.forecast_report import forecast_lines, timing_lines
from tvrec.pipelines.synthetic import PlantedTruth

runner = CliRunner()
# a short temporal fit: the seasonal part is what the forecast reads
SMALL = "[models.temporal]\nepochs = 2\ndim = 16\nlayers = 1\nseasonal_epochs = 3\n"


def test_evaluate_reports_forecast_quality_and_release_timing(
    world_dir: Path, truth: PlantedTruth, tmp_path: Path
) -> None:
    work, out = tmp_path / "work", tmp_path / "report"
    work.mkdir()
    (work / "tvrec.toml").write_text(SMALL, encoding="utf-8")
    args = ["evaluate", "--data", str(world_dir), "--models", "temporal", "--json"]
    res = runner.invoke(app, [*args, "--out", str(out), "--workdir", str(work)])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)

    quality = pl.DataFrame(report["forecast"])
    methods = set(quality["method"])
    assert methods == {SEASONAL_NAIVE, RECENT_MEAN, "tvrec (temporal)"}, methods
    assert sorted(set(quality["horizon"])) == [7, 30]
    mase = {(r["method"], r["horizon"]): r["mase"] for r in quality.iter_rows(named=True)}
    # the planted weekly rhythm and December shows, learned in a short fit; measured MASE
    # 7 d: 0.89 (seasonal naive 1.47, last-30-days mean 1.41); 30 d (22 test days): 1.17
    # (1.61, 1.43)
    assert mase["tvrec (temporal)", 7] < 0.7 * mase[SEASONAL_NAIVE, 7], quality  # 0.61
    assert mase["tvrec (temporal)", 30] < 0.8 * mase[SEASONAL_NAIVE, 30], quality  # 0.72
    assert mase["tvrec (temporal)", 7] < mase[RECENT_MEAN, 7], quality

    timing = pl.DataFrame(report["release_timing"])
    assert timing.height > 0 and timing["genre"].n_unique() == timing.height
    assert timing["best_month"].is_between(1, 12).all()
    assert timing["best_weekday"].is_between(0, 6).all()
    assert (timing["month_lift"] >= 1.0).all() and (timing["weekday_lift"] >= 1.0).all()

    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Show forecasts" in md and "Release timing" in md
    assert "| seasonal naive |" in md and "| tvrec (temporal) |" in md
    assert (out / "forecast_mase.png").stat().st_size > 0


def test_forecast_sections_are_left_out_without_a_forecast() -> None:
    assert forecast_lines(None) == [] and timing_lines(None) == []
    empty = pl.DataFrame(schema={"method": pl.String, "horizon": pl.Int64})
    assert forecast_lines(empty) == []
    # without a premiere in the log every genre's slot is the same (the anime data has none)
    unseen = pl.DataFrame(
        {"genre": ["a", "b"], "shows": [3, 2], "premieres_observed": [0, 0]}
    ).with_columns(best_month=1, best_weekday=0, month_lift=1.0)
    assert "| genre |" not in "\n".join(timing_lines(unseen))
    assert "left out" in "\n".join(timing_lines(unseen))
