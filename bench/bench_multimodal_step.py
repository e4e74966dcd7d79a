"""Where a multimodal training step's time goes, on a work directory with built features (the
demo's, say): seconds a step over a few steps, the epoch-end validation, and the operators of
one step under torch.profiler, grouped by input shape.

    python bench/bench_multimodal_step.py WORKDIR [--steps 3] [--rows 20]

The work directory is read, not written (no model is published).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from tvrec.jobs.train import registered, training_data
from tvrec.models import multimodal as mm
from tvrec.models.content import content_of
from tvrec.models.runtime import Runtime
from tvrec.models.trainer import Rngs
from tvrec.pipelines.config import Settings
from tvrec.pipelines.workdir import Workdir


def task_of(workdir: Path, overrides: dict[str, Any] | None = None) -> mm._MultimodalTask:
    """The multimodal model's training task as `fit` builds it (the configured settings, with
    `overrides` of its `[models.multimodal]` settings)."""
    settings = Settings.load(workdir)
    runtime = Runtime.detect(settings.hardware.profile)
    params = settings.models.params("multimodal") | (overrides or {})
    model = registered("multimodal").create(runtime, params)
    assert isinstance(model, mm.MultimodalModel)
    data = training_data(Workdir(settings.workdir), model, settings)
    content = content_of(data, max_people=model.config.max_people)
    model.show_ids, model.person_vocab = list(content.show_ids), content.person_vocab
    split = mm._split(data, {s: i for i, s in enumerate(model.show_ids)}, model.config)
    model._build(content).train()
    return mm._MultimodalTask(model, split, content.raw_text)


def step(task: mm._MultimodalTask, batch: Any, rngs: Rngs) -> None:
    result = task.loss(batch, rngs)
    task.optimizer.zero_grad(set_to_none=True)
    result.loss.backward()
    task.optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--steps", type=int, default=3, help="steps timed after a warm-up")
    parser.add_argument("--rows", type=int, default=20, help="operator rows printed")
    args = parser.parse_args()
    task, rngs = task_of(args.workdir), Rngs.seeded(0)
    plan = task.plan(0, rngs)
    pairs, users = len(plan[0][0]), len(plan[0][1])
    print(f"steps an epoch {len(plan)}, pairs a step {pairs}, users a step {users}")
    step(task, plan[0], rngs)  # warm-up
    timed = plan[1 : 1 + args.steps]
    start = time.perf_counter()
    for batch in timed:
        step(task, batch, rngs)
    print(f"seconds a step {(time.perf_counter() - start) / len(timed):.3f}")
    start = time.perf_counter()
    task.end_epoch(0)
    print(f"epoch-end validation s {time.perf_counter() - start:.2f}")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step(task, plan[(1 + args.steps) % len(plan)], rngs)
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_shapes_column_width=70
    )
    print(table)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True, warn_only=True)  # as `tvrec train` trains
    main()
