"""Offline evaluation: split a dataset like an outside benchmark does and score models on it.

- `splitting`: the benchmark split (`split`, Split, SplitConfig, cut_events,
  time_quantile; not named `split`, so that the module never shadows the function).
- `metrics`: HR/Recall/NDCG@k with a bootstrap interval and coverage of any top-k table
  (MetricConfig, Metrics, evaluate_topk).
- `peers`: the peers tvrec is benchmarked against (MostPopular, ItemKNN, EASE, ALS).
- `report`: EvaluationReport, its Markdown and charts; `write_report` writes every report file.
- `pipeline`: the `tvrec evaluate` job: tvrec's own pipeline on the split (SplitPipeline), the
  cold-start candidates, `run_peer_evaluation` and `evaluate`.

The names below are re-exported lazily, so that importing one submodule (say `peers`) does
not import the job and its pipeline dependencies.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tvrec.jobs.evaluation.metrics import MetricConfig, Metrics, bootstrap_ci, evaluate_topk
    from tvrec.jobs.evaluation.peers import Peer, default_peers
    from tvrec.jobs.evaluation.pipeline import (
        SplitPipeline,
        chance_cold_metrics,
        cold_candidates,
        evaluate,
        rank_among,
        run_peer_evaluation,
        score_peers,
    )
    from tvrec.jobs.evaluation.report import EvaluationReport, ModelResult, markdown, write_report
    from tvrec.jobs.evaluation.splitting import (
        Split,
        SplitConfig,
        cut_events,
        split,
        time_quantile,
    )

# public name -> the submodule that defines it
_EXPORTS = {
    "Split": "splitting",
    "SplitConfig": "splitting",
    "cut_events": "splitting",
    "split": "splitting",
    "time_quantile": "splitting",
    "MetricConfig": "metrics",
    "Metrics": "metrics",
    "bootstrap_ci": "metrics",
    "evaluate_topk": "metrics",
    "Peer": "peers",
    "default_peers": "peers",
    "EvaluationReport": "report",
    "ModelResult": "report",
    "markdown": "report",
    "write_report": "report",
    "SplitPipeline": "pipeline",
    "chance_cold_metrics": "pipeline",
    "cold_candidates": "pipeline",
    "evaluate": "pipeline",
    "rank_among": "pipeline",
    "run_peer_evaluation": "pipeline",
    "score_peers": "pipeline",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "EvaluationReport",
    "MetricConfig",
    "Metrics",
    "ModelResult",
    "Peer",
    "Split",
    "SplitConfig",
    "SplitPipeline",
    "bootstrap_ci",
    "chance_cold_metrics",
    "cold_candidates",
    "cut_events",
    "default_peers",
    "evaluate",
    "evaluate_topk",
    "markdown",
    "rank_among",
    "run_peer_evaluation",
    "score_peers",
    "split",
    "time_quantile",
    "write_report",
]
