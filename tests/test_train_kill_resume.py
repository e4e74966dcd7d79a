"""A `tvrec train` killed with SIGKILL mid-training and started again resumes from its last
checkpoint, says so, and finishes; the published model's curves are whole."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tvrec.models.registry import load_model
from tvrec.pipelines.workdir import Workdir

CLI = [sys.executable, "-c", "from tvrec.jobs.cli import main; main()"]
SETTINGS = """[models.multimodal]
epochs = 12
dim = 32
meta_layers = 1
val_users = 50
prior_steps = 50
checkpoint_every = 3
"""


def _progress(checkpoint: Path) -> tuple[int, int] | None:
    """(epoch, step) of a checkpoint, or None while there is none readable."""
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["progress"]
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return None
    return int(saved["epoch"]), int(saved["step"])


def _kill_once_trained_a_while(proc: subprocess.Popen, checkpoint: Path, epochs: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        progress = _progress(checkpoint)
        if progress is not None and progress[0] >= epochs:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.05)
    raise AssertionError(f"training never reached epoch {epochs}: {proc.communicate()}")


def test_sigkilled_training_resumes_from_its_last_checkpoint(
    built_workdir: Workdir, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(built_workdir.root, work, symlinks=True)
    (work / "tvrec.toml").write_text(SETTINGS, encoding="utf-8")
    command = [*CLI, "train", "--stage", "multimodal", "--workdir", str(work)]
    checkpoint = work / "checkpoints" / "multimodal" / "train.pt"

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _kill_once_trained_a_while(first, checkpoint, epochs=2)
    assert first.returncode == -signal.SIGKILL
    assert not (work / "models" / "multimodal").exists()  # nothing published by the killed run
    epoch, step = _progress(checkpoint) or (0, 0)
    assert 2 <= epoch < 12

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    said = again.stdout + again.stderr
    assert "resuming from checkpoint" in said and f"(epoch {epoch + 1}, step {step})" in said
    model = load_model(work / "models" / "multimodal")
    assert model.manifest is not None
    metrics = model.manifest.metrics
    assert (metrics["resumed_from_epoch"], metrics["resumed_from_step"]) == (epoch, step)
    assert len(metrics["train_loss"]) == 12  # the killed run's epochs came from the checkpoint
    assert not checkpoint.parent.exists()  # published: the checkpoints are gone
