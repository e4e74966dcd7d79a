"""Settings of a tvrec installation, validated where they enter.

Resolution order: command-line flag > environment variable > `tvrec.toml` in the work
directory > defaults.
"""

from __future__ import annotations

import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

WORKDIR_ENV = "TVREC_WORKDIR"
DEFAULT_WORKDIR = "tvrec-work"
CONFIG_FILE = "tvrec.toml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSettings(Strict):
    """Knobs of `tvrec features build`."""

    windows_days: tuple[int, ...] = (7, 30, 365)
    text_batch_size: int = Field(64, ge=1)
    cowatch_min_users: int = Field(2, ge=1, description="co-watch edges need this many users")
    max_user_history: int = Field(200, ge=1, description="cap per user for co-watch pairs")


class HardwareSettings(Strict):
    """`auto` picks a profile from the hardware; `cpu`/`gpu` force one."""

    profile: Literal["auto", "cpu", "gpu"] = "auto"


class ModelParams(Strict):
    """Hyper-parameters a `tvrec.toml` may set for a model (unset: the model's default).

    Each name is a field of the model's own config dataclass (`CollaborativeConfig`, ...),
    so `[models.<name>]` overrides exactly that field; a test keeps the two in step."""

    epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    dim: int | None = Field(None, ge=4)
    seed: int | None = None

    def overrides(self) -> dict[str, object]:
        return self.model_dump(exclude_none=True)


class CollaborativeParams(ModelParams):
    batch_size: int | None = Field(None, ge=1, description="users per step")
    input_dropout: float | None = Field(None, ge=0, lt=1)


class MultimodalParams(ModelParams):
    text_model: str | None = Field(
        None, description="local path or name of a Hugging Face encoder (default: bundled MiniLM)"
    )
    finetune_text: bool | None = Field(None, description="unset: fine-tune on the GPU profile")
    finetune_layers: int | None = Field(None, ge=0)
    text_max_length: int | None = Field(None, ge=8)
    pair_batch: int | None = Field(None, ge=2, description="co-watch pairs per step")
    history_len: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, gt=0)
    prior_steps: int | None = Field(None, ge=0, description="show-prior fit; 0: no prior")


class ContrastiveParams(ModelParams):
    batch_size: int | None = Field(None, ge=2, description="shows per step")
    user_epochs: int | None = Field(None, ge=0)
    history_len: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, gt=0)
    prior_steps: int | None = Field(None, ge=0, description="show-prior fit; 0: no prior")


class ModelSettings(Strict):
    """Which models the nightly job trains, which one serves the top-k tables, and each
    model's hyper-parameter overrides (`[models.multimodal]`, ...)."""

    train: tuple[str, ...] = ("collaborative",)
    serve: str = "collaborative"
    k: int = Field(50, ge=1, description="recommendations per user and per show")
    collaborative: CollaborativeParams = CollaborativeParams()
    multimodal: MultimodalParams = MultimodalParams()
    contrastive: ContrastiveParams = ContrastiveParams()

    def params(self, model: str) -> ModelParams:
        """The overrides of `model` (empty for a model without a section)."""
        found = getattr(self, model, None)
        return found if isinstance(found, ModelParams) else ModelParams()


class TrackingSettings(Strict):
    """Optional experiment tracking of `tvrec train` (jobs/tracking.py); off by default, and
    neither backend needs an account: MLflow writes a local store, W&B runs offline."""

    backend: Literal["none", "mlflow", "wandb"] = "none"
    uri: str | None = Field(
        None, min_length=1, description="MLflow tracking URI (default: <workdir>/mlflow.db)"
    )
    experiment: str = Field("tvrec", min_length=1, description="MLflow experiment / W&B project")


class Settings(Strict):
    workdir: Path = Path(DEFAULT_WORKDIR)
    features: FeatureSettings = FeatureSettings()
    hardware: HardwareSettings = HardwareSettings()
    models: ModelSettings = ModelSettings()
    tracking: TrackingSettings = TrackingSettings()

    @classmethod
    def load(cls, workdir: Path | str | None = None) -> Settings:
        """Settings for a work directory: flag, then $TVREC_WORKDIR, then the default."""
        wd = Path(workdir or os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR).resolve()
        from pydantic import ValidationError

        from .errors import ConfigError

        data: dict = {}
        cfg = wd / CONFIG_FILE
        if cfg.exists():
            try:
                with cfg.open("rb") as f:
                    data = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{cfg}: not valid TOML: {exc}") from None
        data["workdir"] = wd
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"{cfg}: {problems}") from None


def parse_as_of(value: str | datetime | None) -> datetime:
    """An as-of time as an aware UTC datetime; None means now."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        dt = value
    else:
        from .errors import ConfigError

        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"--as-of {value!r} is not an ISO-8601 timestamp") from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
