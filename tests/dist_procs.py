"""A process of the distributed-trainer tests (tests/test_distributed.py): trains a tiny
deterministic regression through the shared Trainer and, on rank 0, saves the final weights
and the curves. Run plainly it trains alone; under
`python -m torch.distributed.run --nproc-per-node N tests/dist_procs.py OUT` it is one rank of
a gloo group, and the trainer splits every batch between the ranks."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tvrec.models.runtime import Runtime
from tvrec.models.trainer import Rngs, StepResult, Trainer, TrainerConfig, TrainTask

N, DIM, BATCH, EPOCHS = 21, 4, 7, 6  # batches of 7 rows: slices of 3 and 4 on two ranks


class Regression(TrainTask):
    """y = x @ w: no randomness in the loss, so one process and N agree to rounding. A
    parameter that never gets a gradient (`unused`) must stay as it is (AdamW would decay a
    zero gradient's weights: a rank without a gradient must not hand it one)."""

    monitor = "score"

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(3)
        self.x = torch.randn(N, DIM, generator=gen)
        self.y = self.x @ torch.randn(DIM, generator=gen)
        torch.manual_seed(int(os.environ.get("RANK", "0")))  # other starting weights per rank
        self.net = nn.ModuleDict({"linear": nn.Linear(DIM, 1), "unused": nn.Linear(2, 2)})
        self.unused_at_start = {k: v.clone() for k, v in self.net["unused"].state_dict().items()}
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=0.05, weight_decay=0.1)

    def plan(self, epoch: int, rngs: Rngs) -> list[torch.Tensor]:
        order = torch.randperm(N, generator=rngs.torch)
        return [order[s : s + BATCH] for s in range(0, N, BATCH)]

    def loss(self, rows: torch.Tensor, rngs: Rngs) -> StepResult:
        pred = self.net["linear"](self.x[rows]).squeeze(-1)
        loss = ((pred - self.y[rows]) ** 2).mean()
        return StepResult(loss, {"train_loss": float(loss.detach())}, weight=len(rows))

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        with torch.no_grad():
            error = ((self.net["linear"](self.x).squeeze(-1) - self.y) ** 2).mean()
        return {"score": -float(error)}


def main(out: str) -> None:
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    task = Regression()
    config = TrainerConfig("toy", EPOCHS, seed=5, grad_clip=1.0, patience=3)
    history = Trainer(config, Runtime.cpu()).fit(task)
    if not dist.is_initialized() or dist.get_rank() == 0:
        state = {"net": task.net.state_dict(), "unused": task.unused_at_start}
        torch.save(state | {"curves": history.curves}, out)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
