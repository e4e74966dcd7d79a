"""The shared training loop (models/trainer.py) on a tiny synthetic task, a noisy linear
regression: early stopping keeps the best epoch, clipping bounds every update, and a run
killed mid-epoch resumes to exactly the run that was never killed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tvrec.models.runtime import Runtime
from tvrec.models.trainer import History, Rngs, StepResult, Trainer, TrainerConfig, TrainTask
from tvrec.pipelines.progress import console

N, DIM, BATCH = 24, 5, 8  # three steps per epoch


class _Crash(Exception):
    pass


class _RecordingSGD(torch.optim.SGD):
    """SGD that records the gradient norm each step applies."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.norms: list[float] = []

    def step(self, closure: Any = None) -> Any:
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return super().step(closure)


class _Regression(TrainTask):
    """y = x @ w + noise. Draws from every stream a task may use: the plan from the torch
    generator, per-step noise from the numpy generator, dropout from torch's global stream.
    `scores`: the validation metric of each epoch (scripted); `crash_at`: raise before that
    many steps of this task have run."""

    def __init__(
        self,
        optimizer: str = "adam",
        lr: float = 0.05,
        scores: Sequence[float] = (),
        crash_at: int | None = None,
        scale: float = 1.0,
    ) -> None:
        gen = torch.Generator().manual_seed(7)
        self.x = torch.randn(N, DIM, generator=gen) * scale
        self.y = self.x @ torch.randn(DIM, generator=gen) * 3.0
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Dropout(0.05), nn.Linear(DIM, 1))
        if optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        else:
            self.optimizer = _RecordingSGD(self.net.parameters(), lr=lr)
        self.scores, self.crash_at, self.steps = list(scores), crash_at, 0
        self.monitor = "score" if scores else None
        self.weights: list[dict[str, torch.Tensor]] = []  # at the end of each epoch

    def plan(self, epoch: int, rngs: Rngs) -> list[torch.Tensor]:
        order = torch.randperm(N, generator=rngs.torch)
        return [order[s : s + BATCH] for s in range(0, N, BATCH)]

    def loss(self, rows: torch.Tensor, rngs: Rngs) -> StepResult:
        if self.crash_at is not None and self.steps >= self.crash_at:
            raise _Crash
        self.steps += 1
        noise = torch.as_tensor(rngs.numpy.normal(0, 0.1, len(rows)), dtype=torch.float32)
        pred = self.net(self.x[rows]).squeeze(-1)
        loss = ((pred - self.y[rows] - noise) ** 2).mean()
        return StepResult(loss, {"train_loss": float(loss.detach())}, weight=len(rows))

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        self.weights.append({k: v.clone() for k, v in self.net.state_dict().items()})
        return {"score": self.scores[epoch]} if self.scores else {}


def _trainer(
    epochs: int, checkpoint: Path | None = None, key: str = "run", **config: Any
) -> Trainer:
    return Trainer(TrainerConfig("test", epochs, **config), Runtime.cpu(), checkpoint, key)


def _untimed(history: History) -> dict[str, list[Any]]:
    """Every curve but the epochs' wall times (which no two runs share); those must exist."""
    assert len(history.curves["epoch_seconds"]) == len(history.curves["train_loss"])
    return {k: v for k, v in history.curves.items() if k != "epoch_seconds"}


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_goes_down() -> None:
    history = _trainer(20).fit(_Regression())
    losses = history.curves["train_loss"]
    assert len(losses) == 20 and losses[-1] < 0.5 * losses[0]


# ---- early stopping ----------------------------------------------------------------------------
def test_early_stopping_stops_and_keeps_the_best_epoch() -> None:
    task = _Regression(scores=[0.1, 0.5, 0.3, 0.2, 0.9, 1.0])
    with console.capture() as shown:
        history = _trainer(6, patience=2).fit(task)
    # the bar ends at 4/6 saying why, not as if training had been cut off
    assert "stopped early after 4 of 6 epochs; kept epoch 2 (score=0.5000)" in shown.get()
    # best after epoch 2; epochs 3 and 4 were no better: stopped after 4, never saw the 0.9
    assert history.best_epoch == 2 and history.stopped_early_at == 4
    assert history.curves["score"] == [0.1, 0.5, 0.3, 0.2]
    assert len(task.weights) == 4
    assert _same_weights(task.net.state_dict(), task.weights[1])  # epoch 2's weights
    assert not _same_weights(task.net.state_dict(), task.weights[3])


def test_without_patience_every_epoch_runs() -> None:
    task = _Regression(scores=[0.5, 0.1, 0.1, 0.1])
    history = _trainer(4).fit(task)
    assert history.stopped_early_at is None and len(history.curves["score"]) == 4
    assert _same_weights(task.net.state_dict(), task.weights[-1])  # the last epoch's


# ---- gradient clipping ---------------------------------------------------------------------------
def test_grad_clip_bounds_every_update() -> None:
    """Large inputs and a huge learning rate: unclipped, SGD diverges; clipped at 1, every
    step applies a gradient of norm <= 1, so no weight moves more than lr per step."""
    clip, lr, epochs = 1.0, 10.0, 2
    free = _Regression("sgd", lr=lr, scale=10.0)
    _trainer(1).fit(free)
    assert free.optimizer.norms[0] > 100 * clip  # type: ignore[attr-defined]

    clipped = _Regression("sgd", lr=lr, scale=10.0)
    start = torch.cat([p.detach().clone().ravel() for p in clipped.net.parameters()])
    _trainer(epochs, grad_clip=clip).fit(clipped)
    norms = clipped.optimizer.norms  # type: ignore[attr-defined]
    assert len(norms) == 3 * epochs and max(norms) <= clip * (1 + 1e-5), norms
    end = torch.cat([p.detach().ravel() for p in clipped.net.parameters()])
    assert float((end - start).norm()) <= lr * clip * len(norms) * (1 + 1e-5)


def test_grad_clip_calls_clip_grad_norm(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params: Any, max_norm: float, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(max_norm)
        return real(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    _trainer(1, grad_clip=0.5).fit(_Regression())
    assert seen == [0.5, 0.5, 0.5]  # once per step
    seen.clear()
    _trainer(1).fit(_Regression())
    assert seen == []  # off by default


# ---- checkpoints and resume ----------------------------------------------------------------------
def test_mid_epoch_resume_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    epochs = 4
    straight = _Regression()
    expected = _trainer(epochs, tmp_path / "a.pt", checkpoint_every=1).fit(straight)
    assert expected.resumed_from is None

    checkpoint = tmp_path / "b.pt"
    with pytest.raises(_Crash):  # killed before step 6: the second epoch's third step
        _trainer(epochs, checkpoint, checkpoint_every=1).fit(_Regression(crash_at=5))
    progress = torch.load(checkpoint, weights_only=True)["progress"]
    assert (progress["epoch"], progress["step"]) == (1, 2)

    resumed = _Regression()
    torch.manual_seed(123)  # the global stream (dropout) is restored from the checkpoint
    history = _trainer(epochs, checkpoint, checkpoint_every=1).fit(resumed)
    assert history.resumed_from == (1, 2)
    assert resumed.steps == 3 * epochs - 5  # only what the killed run had not done
    assert _untimed(history) == _untimed(expected)  # exactly
    assert _same_weights(resumed.net.state_dict(), straight.net.state_dict())
    moments = [t.optimizer.state_dict()["state"][0] for t in (resumed, straight)]
    assert _same_weights(*moments)  # Adam's moments and step count too


def test_checkpoint_every_n_steps(tmp_path: Path) -> None:
    """checkpoint_every=2 counts optimiser steps across epochs (3 per epoch here): checkpoints
    after global steps 2, 4, 6, ... and at each epoch's end. Killed just after global step 4
    (the second epoch's first step), the run resumes from there; the result is the same."""
    epochs = 3
    straight = _Regression()
    expected = _trainer(epochs).fit(straight)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(_Crash):
        _trainer(epochs, checkpoint, checkpoint_every=2).fit(_Regression(crash_at=4))
    resumed = _Regression()
    history = _trainer(epochs, checkpoint, checkpoint_every=2).fit(resumed)
    assert history.resumed_from == (1, 1) and resumed.steps == 3 * epochs - 4
    assert _untimed(history) == _untimed(expected)
    assert _same_weights(resumed.net.state_dict(), straight.net.state_dict())


def test_checkpoint_of_another_fingerprint_is_ignored(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.pt"
    _trainer(2, checkpoint, key="one run").fit(_Regression())
    task = _Regression()
    history = _trainer(2, checkpoint, key="another run").fit(task)
    assert history.resumed_from is None and task.steps == 6  # trained from scratch
    assert torch.load(checkpoint, weights_only=True)["fingerprint"] == "another run"
    same = _Regression()
    history = _trainer(3, checkpoint, key="another run").fit(same)  # more epochs: resumed
    assert history.resumed_from == (2, 0) and same.steps == 3


def test_early_stopping_survives_a_resume(tmp_path: Path) -> None:
    """The best weights and the patience count are part of the checkpoint."""
    scores = [0.1, 0.5, 0.3, 0.2, 0.9, 1.0]
    straight = _Regression(scores=scores)
    _trainer(6, patience=2).fit(straight)
    checkpoint = tmp_path / "run.pt"
    every = {"patience": 2, "checkpoint_every": 3}  # 3 steps an epoch: a checkpoint per epoch
    with pytest.raises(_Crash):  # killed in epoch 4, after the best epoch (2) was kept
        _trainer(6, checkpoint, **every).fit(_Regression(scores=scores, crash_at=10))
    resumed = _Regression(scores=scores)
    history = _trainer(6, checkpoint, **every).fit(resumed)
    assert history.resumed_from == (3, 0) and history.stopped_early_at == 4
    assert history.curves["score"] == scores[:4] and resumed.steps == 3
    assert _same_weights(resumed.net.state_dict(), straight.net.state_dict())


def test_rngs_round_trip() -> None:
    rngs = Rngs.seeded(3)
    state = rngs.state()
    first = (torch.rand(3, generator=rngs.torch), rngs.numpy.random(3), torch.rand(3))
    rngs.restore(state)
    again = (torch.rand(3, generator=rngs.torch), rngs.numpy.random(3), torch.rand(3))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert torch.equal(first[2], again[2])
