"""Model hyper-parameters from `tvrec.toml`: `[models.<name>]` overrides the model's config
dataclass, field by field, and a misspelt or out-of-range setting is refused where it enters."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tvrec.jobs.cli import app
from tvrec.jobs.train import MODELS, load_model, model_class
from tvrec.models.runtime import Runtime
from tvrec.models.text_tower import resolve_encoder
from tvrec.pipelines.config import ModelSettings, Settings
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_setting_is_a_field_of_the_models_config(name: str) -> None:
    params = type(ModelSettings().params(name))
    assert params.__name__ != "ModelParams", f"[models.{name}] has no settings class"
    config = {f.name: f.type for f in dataclasses.fields(model_class(name).config_class)}
    missing = set(params.model_fields) - set(config)
    assert not missing, f"[models.{name}] settings that {name}'s config lacks: {missing}"


def test_toml_overrides_reach_the_model(tmp_path: Path) -> None:
    encoder = resolve_encoder(None)  # a local encoder directory, as roberta-large would be
    (tmp_path / "tvrec.toml").write_text(
        f'[models.multimodal]\ntext_model = "{encoder}"\nepochs = 3\ndim = 32\n'
        "[models.contrastive]\ntemperature = 0.2\n",
        encoding="utf-8",
    )
    models = Settings.load(tmp_path).models
    mm = model_class("multimodal").create(Runtime.cpu(), models.params("multimodal").overrides())
    assert (mm.config.text_model, mm.config.epochs, mm.config.dim) == (encoder, 3, 32)
    assert mm.config.heads == type(mm.config)().heads  # untouched fields keep their default
    cl = model_class("contrastive").create(Runtime.cpu(), models.params("contrastive").overrides())
    assert cl.config.temperature == 0.2


def test_cli_trains_with_the_configured_epochs(built_workdir: Workdir, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(built_workdir.root, work, symlinks=True)
    (work / "tvrec.toml").write_text(
        "[models.contrastive]\nepochs = 2\nuser_epochs = 1\n", encoding="utf-8"
    )
    res = runner.invoke(app, ["train", "--stage", "contrastive", "--workdir", str(work)])
    assert res.exit_code == 0, res.output
    model = load_model(work / "models" / "contrastive")
    assert model.manifest is not None and len(model.manifest.metrics["train_loss"]) == 2


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[models.multimodal]\ntext_modle = "roberta-large"\n', "text_modle"),
        ("[models.contrastive]\nepochs = 0\n", "epochs"),
        ("[models.collaborative]\nlr = -1.0\n", "lr"),
    ],
)
def test_bad_settings_are_refused_with_their_name(tmp_path: Path, toml: str, named: str) -> None:
    (tmp_path / "tvrec.toml").write_text(toml, encoding="utf-8")
    res = runner.invoke(app, ["train", "--stage", "contrastive", "--workdir", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert named in res.output and "tvrec.toml" in res.output
    assert not (tmp_path / "models").exists()
