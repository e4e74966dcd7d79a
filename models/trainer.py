"""The one training loop of every torch model: models provide the step, not the loop.

A model hands the trainer a `TrainTask`: its network and optimiser, the batches of an epoch
(`plan`), the loss of one batch (`loss`), and optional per-epoch hooks (a learning-rate
schedule, validation). The trainer runs the epochs and owns everything around them:

- the runtime's mixed precision (bf16 autocast on the GPU profile; losses stay float32),
- gradient clipping (`grad_clip`), early stopping on the task's validation metric
  (`patience`; the best epoch's weights are kept),
- checkpoints every `checkpoint_every` optimiser steps (at an epoch's end once they are due,
  and when training ends), into the file the caller gives, written atomically; a run started
  again with the same data and settings resumes from the last one — mid-epoch included — and
  reaches the same final weights as an uninterrupted run (the random streams are part of the
  checkpoint, and an epoch's plan is re-drawn from its saved starting state). A finished
  run's checkpoint is resumed too (nothing left to do), and raising `epochs` trains on from
  it; the job removes the checkpoints once the model is published,
- a progress bar, per-epoch curves (`History`), and callbacks for experiment tracking,
- data-parallel training when the process is one rank of a torch.distributed group (`torchrun`,
  `tvrec train --nproc N`): each rank trains on its slice of every planned batch and the
  gradients are averaged over the ranks (models/distributed.py); the curves are the group's.
  Resuming a distributed run picks up its last checkpoint, but the bit-for-bit equality with
  an uninterrupted run is a one-process guarantee (each rank's step stream restarts at the
  epoch's start).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tvrec.pipelines.progress import console

from .distributed import World, average_gradients, batch_size, broadcast_module, shard
from .runtime import Runtime, progress_bar

EpochCallback = Callable[[str, int, dict[str, Any]], None]


@dataclass
class Rngs:
    """The random streams a task may draw from: a torch generator and a numpy generator
    (both seeded), plus torch's global stream (dropout) — saved and restored together."""

    torch: torch.Generator
    numpy: np.random.Generator

    @classmethod
    def seeded(cls, seed: int) -> Rngs:
        return cls(torch.Generator().manual_seed(seed), np.random.default_rng(seed))

    def state(self) -> dict[str, Any]:
        state = {
            "torch": self.torch.get_state(),
            "numpy": self.numpy.bit_generator.state,
            "global": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def restore(self, state: dict[str, Any]) -> None:
        self.torch.set_state(state["torch"])
        self.numpy.bit_generator.state = state["numpy"]
        torch.set_rng_state(state["global"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class StepResult:
    """One batch's loss (a scalar tensor, backpropagated), the values to log, and the
    batch's weight in the epoch's mean of those values."""

    loss: torch.Tensor
    logged: dict[str, float] = field(default_factory=dict)
    weight: float = 1.0


class TrainTask(ABC):
    """What a model gives the trainer."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    monitor: str | None = None  # validation metric (higher is better) for early stopping

    @abstractmethod
    def plan(self, epoch: int, rngs: Rngs) -> Sequence[Any]:
        """The epoch's batches (cheap descriptions: rows, pairs), drawn from `rngs`."""

    @abstractmethod
    def loss(self, batch: Any, rngs: Rngs) -> StepResult:
        """Forward one batch (runs under the runtime's autocast)."""

    def start_epoch(self, epoch: int) -> None:
        """Before the epoch's plan: a learning-rate schedule, say."""
        return None

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """After the epoch's last step: validation metrics and the like."""
        return {}

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint keeps (default: the whole state dict)."""
        return self.net.state_dict()

    def restored(self) -> None:
        """After weights were loaded from a checkpoint (e.g. refresh derived tensors)."""
        return None


@dataclass
class TrainerConfig:
    label: str  # the progress bar's
    epochs: int
    seed: int = 0
    checkpoint_every: int = 200
    grad_clip: float | None = None
    patience: int | None = None


@dataclass
class History:
    """Per-epoch curves, and where the run started from."""

    curves: dict[str, list[Any]] = field(default_factory=dict)
    resumed_from: tuple[int, int] | None = None  # (epoch, step) of the checkpoint used
    stopped_early_at: int | None = None  # epochs run when early stopping ended training
    best_epoch: int | None = None

    def metrics(self) -> dict[str, Any]:
        """The curves, and where training resumed from (0, 0: it started afresh)."""
        epoch, step = self.resumed_from or (0, 0)
        extra = {"stopped_early_at": self.stopped_early_at} if self.stopped_early_at else {}
        return self.curves | {"resumed_from_epoch": epoch, "resumed_from_step": step} | extra

    def add(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            self.curves.setdefault(key, []).append(value)


@dataclass
class _Progress:
    """The loop's position and accumulators: what a checkpoint carries besides weights."""

    epoch: int = 0
    step: int = 0  # steps done in the current epoch
    global_step: int = 0  # optimiser steps since the start of training
    sums: dict[str, float] = field(default_factory=dict)
    weight: float = 0.0
    epoch_rng: dict[str, Any] | None = None  # the streams as the epoch's plan was drawn
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early_at: int | None = None
    best_state: dict[str, torch.Tensor] | None = None


class Trainer:
    def __init__(
        self,
        config: TrainerConfig,
        runtime: Runtime,
        checkpoint: Path | None = None,
        fingerprint: str = "",
        callbacks: Sequence[EpochCallback] = (),
    ) -> None:
        self.config, self.runtime = config, runtime
        self.checkpoint, self.fingerprint = checkpoint, fingerprint
        self.callbacks = list(callbacks)
        self._saved_at = 0  # global step of the last checkpoint
        self.world = World()

    def fit(self, task: TrainTask, rngs: Rngs | None = None) -> History:
        """Run (or resume) the epochs of `task`; returns the per-epoch curves."""
        cfg = self.config
        rngs = rngs or Rngs.seeded(cfg.seed)
        history, progress = History(), _Progress()
        self.world = World.current()
        resumed = self._resume(task, rngs, history, progress)
        if self.world.distributed:
            broadcast_module(task.net)  # one starting point on every rank
        if resumed and self.world.leader:
            console.print(
                f"[bold]{cfg.label}[/]: resuming from checkpoint {self.checkpoint} "
                f"(epoch {progress.epoch + 1}, step {progress.step})"
            )
        with progress_bar(cfg.label, cfg.epochs, shown=self.world.leader) as advance:
            for _ in range(progress.epoch):
                advance()
            while progress.epoch < cfg.epochs and not self._stopped(progress):
                row = self._epoch(task, rngs, progress, history)
                history.add(row)
                self._early_stopping(task, row, progress, history)
                done = progress.epoch >= cfg.epochs or self._stopped(progress)
                if done or self._due(progress):
                    self._save(task, rngs, history, progress)
                for callback in self.callbacks:
                    callback(cfg.label, progress.epoch, row)
                advance(**_shown(row, task.monitor))
            if progress.stopped_early_at is not None:
                advance(note=_stopped_note(progress, cfg.epochs, task.monitor))
        if progress.best_state is not None:  # early stopping keeps the best epoch's weights
            task.net.load_state_dict(progress.best_state, strict=False)
            task.restored()
        return history

    # ---- the loop ------------------------------------------------------------------------
    def _epoch(
        self, task: TrainTask, rngs: Rngs, progress: _Progress, history: History
    ) -> dict[str, Any]:
        """The rest of the current epoch; returns its row of the curves (`epoch_seconds`:
        its wall time, validation included; a resumed epoch's counts from the resume)."""
        began = time.perf_counter()
        step_rng = rngs.state() if progress.step else None
        if progress.epoch_rng is None:
            progress.epoch_rng = rngs.state()
        rngs.restore(progress.epoch_rng)  # a resumed epoch re-draws the same plan
        task.start_epoch(progress.epoch)
        plan = task.plan(progress.epoch, rngs)
        if step_rng is not None:
            rngs.restore(step_rng)
        task.net.train()
        step_rngs = self._rank_rngs(progress.epoch) if self.world.distributed else rngs
        while progress.step < len(plan):
            result = self._step(task, plan[progress.step], step_rngs)
            for key, value in result.logged.items():
                progress.sums[key] = progress.sums.get(key, 0.0) + value * result.weight
            progress.weight += result.weight
            progress.step += 1
            progress.global_step += 1
            if self._due(progress) and progress.step < len(plan):  # the epoch's end saves below
                self._save(task, rngs, history, progress)
        sums, weight = self._group_sums(progress)
        row: dict[str, Any] = {k: v / max(weight, 1e-12) for k, v in sums.items()}
        row |= task.end_epoch(progress.epoch)
        row["epoch_seconds"] = time.perf_counter() - began
        row = self.world.from_leader(row)  # the ranks' validations agree; rank 0's is kept
        progress.epoch, progress.step, progress.sums, progress.weight = progress.epoch + 1, 0, {}, 0
        progress.epoch_rng = None
        return row

    def _step(self, task: TrainTask, batch: Any, rngs: Rngs) -> StepResult:
        if self.world.distributed:
            return self._group_step(task, batch, rngs)
        with self.runtime.autocast():
            result = task.loss(batch, rngs)
        task.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        self._update(task)
        return result

    def _group_step(self, task: TrainTask, batch: Any, rngs: Rngs) -> StepResult:
        """One optimiser step of the group: this rank's slice forward and backward, the
        gradients averaged over the ranks (weighted by slice size), the same update everywhere."""
        local = shard(batch, self.world.rank, self.world.size)
        size = batch_size(local)
        task.optimizer.zero_grad(set_to_none=True)
        result = StepResult(torch.zeros(()), weight=0.0)
        if size:
            with self.runtime.autocast():
                result = task.loss(local, rngs)
            result.loss.backward()
        params = [p for g in task.optimizer.param_groups for p in g["params"]]
        average_gradients(params, size)
        self._update(task)
        return result

    def _update(self, task: TrainTask) -> None:
        """Clip (when set) and take the optimiser step."""
        if self.config.grad_clip is not None:
            params = [p for g in task.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        task.optimizer.step()

    def _rank_rngs(self, epoch: int) -> Rngs:
        """This rank's stream for the randomness inside its slices in `epoch` (the plan comes
        from the shared stream, the same on every rank)."""
        return Rngs.seeded(self.config.seed + 1_000_003 * (epoch + 1) + 7_919 * self.world.rank)

    def _group_sums(self, progress: _Progress) -> tuple[dict[str, float], float]:
        """The epoch's logged sums and weight over every rank (this rank's alone outside a
        group)."""
        if not self.world.distributed:
            return progress.sums, progress.weight
        sums: dict[str, float] = {}
        weight = 0.0
        for rank_sums, rank_weight in self.world.gather((progress.sums, progress.weight)):
            for key, value in rank_sums.items():
                sums[key] = sums.get(key, 0.0) + value
            weight += rank_weight
        return sums, weight

    def _early_stopping(
        self, task: TrainTask, row: dict[str, Any], progress: _Progress, history: History
    ) -> None:
        if self.config.patience is None or task.monitor is None:
            return
        value = row.get(task.monitor)
        if value is None or not np.isfinite(value):
            return
        if progress.best is None or value > progress.best:
            progress.best, progress.bad_epochs = float(value), 0
            progress.best_state = copy.deepcopy(task.net.state_dict())
            progress.best_epoch = history.best_epoch = progress.epoch
        else:
            progress.bad_epochs += 1
        if self._stopped(progress):
            progress.stopped_early_at = history.stopped_early_at = progress.epoch

    def _stopped(self, progress: _Progress) -> bool:
        return self.config.patience is not None and progress.bad_epochs >= self.config.patience

    # ---- checkpoints ---------------------------------------------------------------------
    def _due(self, progress: _Progress) -> bool:
        """`checkpoint_every` optimiser steps have passed since the last checkpoint."""
        return progress.global_step - self._saved_at >= self.config.checkpoint_every

    def _save(self, task: TrainTask, rngs: Rngs, history: History, progress: _Progress) -> None:
        """Write the whole training state atomically (a kill leaves the previous file)."""
        self._saved_at = progress.global_step
        if self.checkpoint is None or not self.world.leader:
            return
        payload = {
            "fingerprint": self.fingerprint,
            "net": {k: v.detach().cpu() for k, v in task.trainable_state().items()},
            "optimizer": task.optimizer.state_dict(),
            "rngs": rngs.state(),
            "progress": progress.__dict__,
            "curves": history.curves,
        }
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_name(f".{self.checkpoint.name}.{os.getpid()}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, self.checkpoint)

    def _resume(self, task: TrainTask, rngs: Rngs, history: History, progress: _Progress) -> bool:
        """Load a matching checkpoint into the task, the streams and the loop's position."""
        if self.checkpoint is None:
            return False
        for stale in self.checkpoint.parent.glob(f".{self.checkpoint.name}.*.tmp"):
            if self.world.leader:
                stale.unlink(missing_ok=True)  # half-written by a killed run
        if not self.checkpoint.exists():
            return False
        payload = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        saved = payload.get("progress", {})
        if payload.get("fingerprint") != self.fingerprint or saved["epoch"] > self.config.epochs:
            return False  # another run's (other data or settings): start afresh
        missing, unexpected = task.net.load_state_dict(payload["net"], strict=False)
        if unexpected or set(missing) - set(_frozen(task)):
            raise RuntimeError(f"checkpoint {self.checkpoint} does not fit this model")
        task.optimizer.load_state_dict(payload["optimizer"])
        rngs.restore(payload["rngs"])
        progress.__dict__.update(saved)
        history.curves.update({k: list(v) for k, v in payload["curves"].items()})
        history.resumed_from = (progress.epoch, progress.step)
        self._saved_at = progress.global_step
        history.best_epoch = progress.best_epoch
        history.stopped_early_at = progress.stopped_early_at
        task.restored()
        return True


def _shown(row: dict[str, Any], monitor: str | None) -> dict[str, float]:
    """What the progress bar shows of an epoch's row: the loss and the validation metric."""
    keys = ("train_loss", "loss", monitor)
    return {k: float(row[k]) for k in keys if k and isinstance(row.get(k), float | int)}


def _stopped_note(progress: _Progress, epochs: int, monitor: str | None) -> str:
    """What the progress bar says when early stopping ended training short of `epochs`."""
    return (
        f"stopped early after {progress.stopped_early_at} of {epochs} epochs; "
        f"kept epoch {progress.best_epoch} ({monitor}={progress.best:.4f})"
    )


def _frozen(task: TrainTask) -> list[str]:
    """State-dict keys a checkpoint may leave out (not in `trainable_state`)."""
    kept = set(task.trainable_state())
    return [k for k in task.net.state_dict() if k not in kept]


def fingerprint(*parts: Any) -> str:
    """What a checkpoint must match to be resumed (data, as-of, settings, runtime)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
