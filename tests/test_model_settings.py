"""Model hyper-parameters from `tvrec.toml`: `[models.<name>]` is validated by the model's own
config class (the registry's), field by field, and a misspelt or inconsistent setting is
refused where it enters, naming it, before anything runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tvrec.jobs.cli import app
from tvrec.models.base import ModelConfig
from tvrec.models.registry import config_class, load_model, model_class, names
from tvrec.models.runtime import Runtime
from tvrec.models.text_tower import resolve_encoder
from tvrec.pipelines.config import Settings
from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.workdir import Workdir

runner = CliRunner()


@pytest.mark.parametrize("name", names())
def test_every_registered_model_has_a_strict_config(name: str) -> None:
    cls = config_class(name)
    assert issubclass(cls, ModelConfig) and cls.model_config.get("extra") == "forbid"
    assert model_class(name).name == name  # the registry's key is the model's own name
    cls()  # the defaults are valid


def test_toml_overrides_reach_the_model(tmp_path: Path) -> None:
    encoder = resolve_encoder(None)  # a local encoder directory, as roberta-large would be
    (tmp_path / "tvrec.toml").write_text(
        f'[models.multimodal]\ntext_model = "{encoder}"\nepochs = 3\ndim = 32\n'
        "[models.contrastive]\ntemperature = 0.2\n",
        encoding="utf-8",
    )
    models = Settings.load(tmp_path).models
    mm = model_class("multimodal").create(Runtime.cpu(), models.params("multimodal"))
    assert (mm.config.text_model, mm.config.epochs, mm.config.dim) == (encoder, 3, 32)
    assert mm.config.heads == type(mm.config)().heads  # untouched fields keep their default
    cl = model_class("contrastive").create(Runtime.cpu(), models.params("contrastive"))
    assert cl.config.temperature == 0.2


def test_cli_trains_with_the_configured_epochs(built_workdir: Workdir, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(built_workdir.root, work, symlinks=True)
    (work / "tvrec.toml").write_text(
        "[models.contrastive]\nepochs = 2\nuser_epochs = 1\nprior_steps = 0\n", encoding="utf-8"
    )
    res = runner.invoke(app, ["train", "--stage", "contrastive", "--workdir", str(work)])
    assert res.exit_code == 0, res.output
    model = load_model(work / "models" / "contrastive")
    assert model.manifest is not None and len(model.manifest.metrics["train_loss"]) == 2
    assert not (work / "checkpoints" / "contrastive").exists()  # published: nothing to resume


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[models.multimodal]\ntext_modle = "roberta-large"\n', "models.multimodal.text_modle"),
        ("[models.contrastive]\nepochs = 0\n", "models.contrastive.epochs"),
        ("[models.collaborative]\nlr = -1.0\n", "models.collaborative.lr"),
        ("[models.multimodal]\ndim = 30\nheads = 4\n", "multiple of heads"),  # cross-field
        ("[models.multimodal]\ncheckpoint_every = 0\n", "models.multimodal.checkpoint_every"),
        ('[models]\ntrain = ["collaborative", "grpah"]\n', "unknown model 'grpah'"),
        ("[models.graph_nn]\nepochs = 3\n", "graph_nn"),  # not a registered model
        ("[hardware]\nthreads = 0\n", "threads"),
        # a misspelt name gets the closest setting (it was "Extra inputs are not permitted")
        (
            "[models.ensemble]\ncandidate = 50\n",
            "ensemble.candidate: not a setting here; did you mean candidates?",
        ),
        (
            '[schedule]\ncron = "0 2 * * *"\n',
            "schedule: not a setting here; did you mean scheduler?",
        ),
        ("[index]\nzz = 1\n", "index.zz: not a setting here; the settings are exact_max, approx"),
        # numbers and switches as TOML spells them: lax pydantic read these as 5, 1 and True
        ('[models.ensemble]\nepochs = "5"\n', 'epochs: a number is expected, not "5"'),
        ("[ingest]\nmin_year = true\n", "ingest.min_year: a number is expected, not true"),
        (
            '[models.ensemble]\ncalibrate = "yes"\n',
            'calibrate: true or false is expected, not "yes"',
        ),
        ("[models.ensemble]\ncalibrate = 1\n", "calibrate: true or false is expected, not 1"),
    ],
)
def test_bad_settings_are_refused_with_their_name(
    tmp_path: Path, toml: str, named: str, default_models: None
) -> None:
    (tmp_path / "tvrec.toml").write_text(toml, encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in (["train", "--stage", "contrastive"], ["run", "--data", str(tmp_path)]):
        res = runner.invoke(app, [*command, "--workdir", str(tmp_path)])
        assert res.exit_code == 2, res.output
        assert named in res.output and "tvrec.toml" in res.output, res.output
        assert "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing ran, nothing written


def test_numbers_and_switches_still_take_their_own_kinds(
    tmp_path: Path, default_models: None
) -> None:
    """The strictness refuses text and booleans for numbers only: a whole number for a float
    setting, null-able settings left unset, lists for tuples and text for paths still read."""
    from tvrec.models.ensemble import EnsembleModel
    from tvrec.pipelines.config import Settings, scalar_kind

    assert scalar_kind(int) is float and scalar_kind(float | None) is float
    assert scalar_kind(bool) is bool and scalar_kind(int | str) is None
    config = EnsembleModel.parse_config({"lr": 1, "calibrate": False, "epochs": 3})
    assert config.lr == 1.0 and config.calibrate is False and config.epochs == 3
    (tmp_path / "tvrec.toml").write_text('[models]\ntrain = ["ease"]\nserve = "ease"\n')
    assert Settings.load(tmp_path).models.train == ("ease",)


def test_model_environment_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_models: None
) -> None:
    """$TVREC_TRAIN / $TVREC_SERVE over tvrec.toml's [models]; a bad name is refused naming
    the variable; without them, the default trains six models (the temporal one inside the
    ensemble, `advance`) and serves the ensemble."""
    assert Settings.load(tmp_path).models.train == (
        "multimodal", "graph", "contrastive", "meta", "ensemble"
    )  # fmt: skip
    assert Settings.load(tmp_path).models.serve == "ensemble"
    (tmp_path / "tvrec.toml").write_text('[models]\ntrain = ["graph"]\n', encoding="utf-8")
    monkeypatch.setenv("TVREC_TRAIN", "ease, collaborative")
    monkeypatch.setenv("TVREC_SERVE", "ease")
    models = Settings.load(tmp_path).models
    assert (models.train, models.serve) == (("ease", "collaborative"), "ease")
    monkeypatch.setenv("TVREC_SERVE", "grpah")
    with pytest.raises(ConfigError, match=r"TVREC_SERVE=grpah.*unknown model 'grpah'"):
        Settings.load(tmp_path)


def test_unknown_stage_is_refused_with_the_registered_names(tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", "--stage", "grpah", "--workdir", str(tmp_path)])
    assert res.exit_code == 2
    assert all(name in res.output for name in names())


def test_training_context_follows_the_hardware_settings() -> None:
    """hardware.threads while training, torch's own count without it; deterministic kernels
    when asked; both restored afterwards."""
    import torch

    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with Runtime.cpu().training(1) as n:
        assert n == torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
    with Runtime.cpu().training(None, deterministic=False) as n:
        assert n == torch.get_num_threads() == before[0]
        assert not torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_cuda_nondeterminism_warnings_are_said_once_not_per_kernel(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA with deterministic kernels, torch warns per kernel that has none (an H200 run
    printed them for attention backward and bincount, every stage): while training they are
    hidden behind one line; other warnings pass, and nothing stays filtered afterwards."""
    import warnings

    import torch

    from tvrec.models import runtime

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # restored afterwards
    runtime._say_cuda_is_partly_deterministic.cache_clear()  # said once a process
    cuda_like = Runtime("gpu", torch.device("cuda"), 8, True)  # no CUDA call is made
    nondeterministic = "_bincount_cuda does not have a deterministic implementation, but you set"
    attention = "cuDNN Attention defaults to a non-deterministic algorithm."
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with cuda_like.training(1):
            warnings.warn(nondeterministic, UserWarning, stacklevel=1)
            warnings.warn(attention, UserWarning, stacklevel=1)
            warnings.warn("something else", UserWarning, stacklevel=1)
        warnings.warn(nondeterministic, UserWarning, stacklevel=1)
        with Runtime.cpu().training(1):
            warnings.warn(nondeterministic, UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else"] + [nondeterministic] * 2
    said = " ".join(capsys.readouterr().err.split())  # the console writes to stderr, wrapped
    assert said.count("so a GPU run repeats only up to those") == 1


def test_one_thread_for_a_request_is_restored() -> None:
    import torch
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    with Runtime.one_thread():
        assert torch.get_num_threads() == 1
        assert all(lib["num_threads"] == 1 for lib in threadpool_info())
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("module", "given", "expected"),
    [
        # a model module: torch finds the short spin set before it loads; faiss likewise
        ("tvrec.models.temporal", {}, {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "3000"}),
        ("tvrec.index", {}, {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "3000"}),
        # a policy the environment gives is OpenMP's to apply: no spin count beside it
        ("tvrec.models.temporal", {"OMP_WAIT_POLICY": "PASSIVE"},
         {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}),
        ("tvrec.models.temporal", {"GOMP_SPINCOUNT": "0"},
         {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "0"}),
    ],
)  # fmt: skip
def test_openmp_threads_spin_briefly_unless_told(
    module: str, given: dict[str, str], expected: dict[str, str | None]
) -> None:
    """OpenMP reads how its threads wait once, as torch or faiss loads it: the data layer sets
    a short spin first (OpenMP's own ~3 ms made a training 2.6-5x slower beside other work),
    in a fresh process as a user's would be."""
    keys = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    env = {k: v for k, v in os.environ.items() if k not in keys} | given
    # what each of torch and faiss finds as it is first imported
    probe = f"""
import json, os, sys
seen = {{}}
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "faiss"):
            seen.setdefault(name, {{k: os.environ.get(k) for k in {keys!r}}})
sys.meta_path.insert(0, Spy())
import {module}
print(json.dumps(seen))
"""
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen and all(found == expected for found in seen.values()), seen
