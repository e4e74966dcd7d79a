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


class ModelSettings(Strict):
    """Which models the nightly job trains, and which one serves the top-k tables."""

    train: tuple[str, ...] = ("collaborative",)
    serve: str = "collaborative"
    k: int = Field(50, ge=1, description="recommendations per user and per show")


class Settings(Strict):
    workdir: Path = Path(DEFAULT_WORKDIR)
    features: FeatureSettings = FeatureSettings()
    hardware: HardwareSettings = HardwareSettings()
    models: ModelSettings = ModelSettings()

    @classmethod
    def load(cls, workdir: Path | str | None = None) -> Settings:
        """Settings for a work directory: flag, then $TVREC_WORKDIR, then the default."""
        wd = Path(workdir or os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR).resolve()
        data: dict = {}
        cfg = wd / CONFIG_FILE
        if cfg.exists():
            with cfg.open("rb") as f:
                data = tomllib.load(f)
        data["workdir"] = wd
        return cls.model_validate(data)


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
