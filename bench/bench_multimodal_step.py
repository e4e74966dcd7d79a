"""Where a multimodal training step's time goes, on a work directory with built features (the
demo's, say): seconds a step over a few steps, the epoch-end validation, and the operators of
one step under torch.profiler, grouped by input shape. On the GPU profile (a CUDA machine, or
`[hardware] profile = "gpu"`) timings wait for the device, and the profile adds CUDA kernels
and labels the step's phases (the fine-tuned text encoder, the rest of the loss, backward,
the optimizer).

    python bench/bench_multimodal_step.py WORKDIR [--steps 3] [--rows 20] [--finetune auto|on|off]

The work directory is read, not written (no model is published).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

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
    with record_function("## loss (text encoder inside)"):
        result = task.loss(batch, rngs)
    task.optimizer.zero_grad(set_to_none=True)
    with record_function("## backward"):
        result.loss.backward()
    with record_function("## optimizer"):
        task.optimizer.step()
    sync()


def sync() -> None:
    """Wait for the device, so that a timing covers the work it queued."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def label_text_encoder(task: mm._MultimodalTask) -> None:
    """Name the fine-tuned encoder's share of a step in the profile."""
    encode = task.model._step_text

    def labelled(rows: torch.Tensor) -> torch.Tensor | None:
        with record_function("## text encoder (fine-tuned)"):
            return encode(rows)

    task.model._step_text = labelled  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--steps", type=int, default=3, help="steps timed after a warm-up")
    parser.add_argument("--rows", type=int, default=20, help="operator rows printed")
    parser.add_argument(
        "--finetune", choices=["auto", "on", "off"], default="auto",
        help="fine-tune the text encoder (auto: on the GPU profile)",
    )  # fmt: skip
    args = parser.parse_args()
    finetune = {"auto": None, "on": True, "off": False}[args.finetune]
    task, rngs = task_of(args.workdir, {"finetune_text": finetune}), Rngs.seeded(0)
    label_text_encoder(task)
    plan = task.plan(0, rngs)
    pairs, users = len(plan[0][0]), len(plan[0][1])
    runtime = task.model.runtime
    print(f"profile {runtime.profile} on {runtime.device}, text fine-tuned {task.model.finetuned}")
    print(f"steps an epoch {len(plan)}, pairs a step {pairs}, users a step {users}")
    step(task, plan[0], rngs)  # warm-up
    timed = plan[1 : 1 + args.steps]
    start = time.perf_counter()
    for batch in timed:
        step(task, batch, rngs)
    print(f"seconds a step {(time.perf_counter() - start) / len(timed):.3f}")
    start = time.perf_counter()
    task.end_epoch(0)
    sync()
    print(f"epoch-end validation s {time.perf_counter() - start:.2f}")
    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=True) as prof:
        step(task, plan[(1 + args.steps) % len(plan)], rngs)
    averages = prof.key_averages()
    # a label's CUDA annotation averages under the same key with no CPU time: left out
    phases = [e for e in averages if e.key.startswith("## ") and e.cpu_time_total > 0]
    for e in sorted(phases, key=lambda e: e.key):
        print(f"{e.key[3:]:<32} CPU {e.cpu_time_total / 1e3:9.1f} ms")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if cuda:
        print(averages.table(sort_by="self_cuda_time_total", row_limit=args.rows))


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True, warn_only=True)  # as `tvrec train` trains
    main()
