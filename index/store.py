"""A show index on disk: the faiss index, the show id of each row, and the manifest of the
model and data it was built from.

Layout of an index directory (written atomically, as a whole)::

    index.faiss     CPU faiss index (GPU / torch indexes are written through a CPU copy)
    ids.json        ["show_id of row 0", "show_id of row 1", ...]
    manifest.json   IndexManifest

`load_index(..., expect=...)` refuses an index built for another model, data snapshot or
as-of time, so stale neighbours are never served silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tvrec.pipelines.errors import ConfigError

from .backends import (
    IndexConfig,
    Metric,
    VectorIndex,
    build_index,
    faiss_index_type,
    faiss_metric_name,
    place_index,
)
from .hardware import Hardware

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
MANIFEST_FILE = "manifest.json"
REBUILD_HINT = "rebuild the index with `tvrec run` (or `tvrec recommend`)"
_TIME_FIELDS = ("as_of", "created_at")


class IndexMismatchError(ConfigError):
    """The index on disk was built for another model / data than the caller expects."""

    def __init__(self, directory: Path, diffs: Mapping[str, tuple[Any, Any]]) -> None:
        self.directory = directory
        self.diffs = dict(diffs)  # field -> (expected, found in the index)
        parts = [
            f"{name}: index has {got!r}, expected {want!r}" for name, (want, got) in diffs.items()
        ]
        super().__init__(
            f"index at {directory} does not match the current model/data ("
            + "; ".join(parts)
            + f"); {REBUILD_HINT}"
        )


class IndexManifest(BaseModel):
    """Where an index came from: model, features, data snapshot and its contents."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model_name: str
    model_version: str
    feature_service: str
    data_snapshot: str
    as_of: str = Field(description="ISO-8601 time the features were read as of")
    dim: int = Field(ge=1)
    metric: Metric
    n_items: int = Field(ge=0)
    backend: str = Field(description="backend that built the index, e.g. faiss-cpu-hnsw")
    created_at: str = Field(description="ISO-8601 build time")
    content_hash: str = Field(description="sha256 of the row-ordered show id list")

    @field_validator(*_TIME_FIELDS)
    @classmethod
    def _iso_time(cls, value: str) -> str:
        _parse_time(value)
        return value


@dataclass
class ShowIndex:
    """A vector index whose rows are shows, with the manifest it was built under."""

    index: VectorIndex
    ids: list[str]  # show id of each row
    manifest: IndexManifest
    _row_of: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.ids) != self.index.ntotal:
            raise ValueError(f"{len(self.ids)} ids for an index of {self.index.ntotal} rows")
        self._row_of = {show_id: row for row, show_id in enumerate(self.ids)}
        if len(self._row_of) != len(self.ids):
            raise ValueError("show ids must be unique")

    def rows(self, show_ids: Sequence[str]) -> list[int]:
        """Row positions of the known ids among `show_ids` (unknown ones are skipped)."""
        return [self._row_of[s] for s in show_ids if s in self._row_of]

    def search_ids(
        self, queries: np.ndarray, k: int, exclude_ids: Sequence[set[str]] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Per query (q, d): up to k (show_id, score) best first, never an excluded show."""
        exclude = [set(self.rows(list(s))) for s in exclude_ids] if exclude_ids else None
        scores, rows = self.index.search(queries, k, exclude)  # (q, k), (q, k)
        return [
            [(self.ids[r], float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
            for srow, rrow in zip(scores, rows, strict=True)
        ]


def ids_content_hash(ids: Sequence[str]) -> str:
    """Order-sensitive fingerprint of the row -> show id map."""
    payload = json.dumps(list(ids), ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


def make_show_index(
    vectors: np.ndarray,
    ids: Sequence[str],
    *,
    model_name: str,
    model_version: str,
    feature_service: str,
    data_snapshot: str,
    as_of: str | datetime,
    cfg: IndexConfig | None = None,
    hw: Hardware | None = None,
) -> ShowIndex:
    """Build the index over `vectors` (n, d), row i being show `ids[i]`, with its manifest."""
    cfg = cfg or IndexConfig()
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    index = build_index(vectors, cfg, hw)
    manifest = IndexManifest(
        model_name=model_name,
        model_version=model_version,
        feature_service=feature_service,
        data_snapshot=data_snapshot,
        as_of=as_of.isoformat() if isinstance(as_of, datetime) else as_of,
        dim=index.dim,
        metric=index.metric,
        n_items=index.ntotal,
        backend=index.backend_name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        content_hash=ids_content_hash(ids),
    )
    return ShowIndex(index=index, ids=list(ids), manifest=manifest)


# ----------------------------------------------------------------------------- save


def save_index(show_index: ShowIndex, directory: Path | str) -> Path:
    """Write the index directory atomically: build a sibling temp dir, then swap it in."""
    target = Path(directory)
    _refuse_foreign_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_files(show_index, tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _refuse_foreign_target(target: Path) -> None:
    """Only an index directory (or nothing) may be replaced: never a user's folder."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"cannot write an index to {target}: it exists and is not a directory")
    if any(target.iterdir()) and not (target / MANIFEST_FILE).exists():
        raise ConfigError(
            f"cannot write an index to {target}: it is a non-empty directory without "
            f"{MANIFEST_FILE}; pick an empty or index directory"
        )


def _write_files(show_index: ShowIndex, directory: Path) -> None:
    cpu_index = show_index.index.to_cpu_faiss()
    if cpu_index is None:
        raise ConfigError(f"backend {show_index.index.backend_name} cannot be saved")
    faiss.write_index(cpu_index, str(directory / INDEX_FILE))
    _fsync(directory / INDEX_FILE)
    _write_text(directory / IDS_FILE, json.dumps(show_index.ids, ensure_ascii=False))
    _write_text(directory / MANIFEST_FILE, show_index.manifest.model_dump_json(indent=2))


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(new: Path, target: Path) -> None:
    """Put `new` at `target`; an old index is moved aside first and restored on failure."""
    if not target.exists():
        os.replace(new, target)
    else:
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _fsync(target.parent)


# ----------------------------------------------------------------------------- load


def load_index(
    directory: Path | str,
    expect: Mapping[str, Any] | None = None,
    cfg: IndexConfig | None = None,
    hw: Hardware | None = None,
) -> ShowIndex:
    """Read an index directory, check it against `expect`, and place it on this machine.

    `expect` maps manifest fields (model_name, model_version, data_snapshot, as_of, dim,
    ...) to the values the caller needs; any difference raises `IndexMismatchError`.
    `cfg` supplies device / ef_search / nprobe; the metric always comes from the index.
    """
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"no index at {path}; {REBUILD_HINT}")
    manifest = _read_manifest(path)
    if expect:
        check_manifest(manifest, expect, path)
    ids = _read_ids(path)
    cpu_index = _read_faiss(path)
    _check_consistent(path, manifest, ids, cpu_index)
    index = place_index(cpu_index, cfg, hw, metric=manifest.metric)
    return ShowIndex(index=index, ids=ids, manifest=manifest)


def check_manifest(manifest: IndexManifest, expect: Mapping[str, Any], path: Path) -> None:
    """Raise IndexMismatchError naming every field of `expect` the manifest differs in."""
    unknown = sorted(set(expect) - set(IndexManifest.model_fields))
    if unknown:
        known = ", ".join(IndexManifest.model_fields)
        raise ConfigError(f"unknown manifest field(s) {unknown} in expect; known: {known}")
    found = manifest.model_dump()
    diffs = {
        name: (want, found[name])
        for name, want in expect.items()
        if not _same(name, want, found[name])
    }
    if diffs:
        raise IndexMismatchError(path, diffs)


def _same(name: str, want: Any, got: Any) -> bool:
    """Equal after normalising times (any ISO spelling / tz) and numbers given as text."""
    if name in _TIME_FIELDS:
        try:
            return _parse_time(want) == _parse_time(got)
        except ValueError:
            return False
    if isinstance(got, int):
        try:
            return int(want) == got
        except (TypeError, ValueError):
            return False
    return str(want) == str(got)


def _parse_time(value: str | datetime) -> datetime:
    """An aware UTC datetime from an ISO string (naive means UTC)."""
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _read_manifest(path: Path) -> IndexManifest:
    text = _read_text(path / MANIFEST_FILE)
    try:
        return IndexManifest.model_validate_json(text)
    except ValidationError as exc:
        raise ConfigError(
            f"{path / MANIFEST_FILE} is not a valid index manifest ({exc.error_count()} "
            f"problem(s): {_first_error(exc)}); {REBUILD_HINT}"
        ) from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "manifest"
    return f"{where}: {err['msg']}"


def _read_ids(path: Path) -> list[str]:
    try:
        ids = json.loads(_read_text(path / IDS_FILE))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path / IDS_FILE} is not valid JSON ({exc}); {REBUILD_HINT}") from exc
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ConfigError(f"{path / IDS_FILE} must be a JSON list of show id strings")
    return ids


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"index file {file} is missing; {REBUILD_HINT}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read index file {file}: {exc}") from exc


def _read_faiss(path: Path) -> faiss.Index:
    file = path / INDEX_FILE
    if not file.is_file():
        raise ConfigError(f"index file {file} is missing; {REBUILD_HINT}")
    try:
        return faiss.read_index(str(file))
    except RuntimeError as exc:  # faiss reports truncated / foreign files this way
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise ConfigError(f"{file} is corrupt ({first_line}); {REBUILD_HINT}") from exc


def _check_consistent(
    path: Path, manifest: IndexManifest, ids: list[str], cpu_index: faiss.Index
) -> None:
    """The three files must describe the same index (no half-copied directories)."""
    try:
        faiss_index_type(cpu_index)
        metric = faiss_metric_name(cpu_index)
    except ValueError as exc:
        raise ConfigError(f"{path / INDEX_FILE} holds an unsupported index: {exc}") from exc
    problems = []
    if ids_content_hash(ids) != manifest.content_hash:
        problems.append(f"{IDS_FILE} does not match the manifest's content_hash")
    if not len(ids) == manifest.n_items == cpu_index.ntotal:
        problems.append(
            f"row counts differ: {IDS_FILE} {len(ids)}, manifest {manifest.n_items}, "
            f"{INDEX_FILE} {cpu_index.ntotal}"
        )
    if metric != manifest.metric and {metric, manifest.metric} != {"ip", "dot"}:
        problems.append(f"metric differs: manifest {manifest.metric}, {INDEX_FILE} {metric}")
    if cpu_index.d != manifest.dim:
        problems.append(f"dim differs: manifest {manifest.dim}, {INDEX_FILE} {cpu_index.d}")
    if problems:
        raise ConfigError(
            f"index at {path} is inconsistent: " + "; ".join(problems) + f"; {REBUILD_HINT}"
        )
