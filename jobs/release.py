"""Releases: everything that is served, made current in one atomic step.

A run stages a release beside the current one, then swaps one symlink. Queries resolve the
link once and read that release only; rollback swaps the link back; a run killed at any point
leaves the previous release current, and the next writer sweeps what it left behind.

    <workdir>/release -> .releases/r0007-20261130T020000    the current release
    .releases/r0007-20261130T020000/
        release.json                  number, run, model, as-of, lake, each table's version
        model/                        the served model (weights + manifest)
        index/                        the FAISS index of its show vectors
        shows.parquet                 the lake's shows it was built from (titles for queries)
        user_recommendations.parquet  source of Feast's `user_recommendations` feature view
        live                          written once the release has been current
    tables/<name>/v<N>.parquet, v<N>.sqlite    immutable table versions, named by release.json

Only the standard library is imported here: `tvrec query` reads releases too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tvrec.pipelines.errors import ConfigError
from tvrec.pipelines.testhooks import pause_point

LINK = "release"
RELEASES = ".releases"
MANIFEST = "release.json"
LIVE = "live"
RECOMMENDATIONS = "user_recommendations.parquet"  # Feast's `user_recommendations` source
FORMAT = 1
KEEP = 5  # releases kept for rollback, the current one included
STAGING = ".staging-"
NO_RELEASE_HINT = "run `tvrec run` (or `tvrec recommend` to serve a trained model)"


@dataclass(frozen=True)
class TableRef:
    """One table version a release serves; paths relative to the work directory."""

    version: int
    parquet: str
    copy: str | None
    n_rows: int
    model_version: str | None = None  # the model that built the table


class ReleaseFiles:
    """Where a release directory (`self.path`) keeps each part."""

    path: Path

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def index_dir(self) -> Path:
        return self.path / "index"

    @property
    def similar_index_dir(self) -> Path:
        """The show-to-show index (cosine over the model's similarity vectors): what
        `tvrec query --text` searches."""
        return self.path / "similar_index"

    @property
    def shows_file(self) -> Path:
        return self.path / "shows.parquet"

    @property
    def recommendations_file(self) -> Path:
        return self.path / RECOMMENDATIONS


@dataclass(frozen=True)
class Release(ReleaseFiles):
    number: int
    release_id: str
    path: Path  # the release directory (resolved: stays valid if the link moves)
    created_at: str
    run_id: str | None
    model_name: str | None
    model_version: str
    as_of: str | None
    lake: str | None  # the lake version it was built from
    tables: dict[str, TableRef] = field(default_factory=dict)
    current: bool = False

    def table(self, name: str) -> TableRef | None:
        return self.tables.get(name)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "tables"}
        out["path"] = str(self.path)
        out["tables"] = {n: t.__dict__ for n, t in self.tables.items()}
        return out


# ----------------------------------------------------------------------------- reading


def current_release(root: Path) -> Release | None:
    """The current release (the link resolved once), None when there is none yet."""
    link = Path(root) / LINK
    try:
        target = (link.parent / os.readlink(link)).resolve(strict=True)
    except OSError:
        return None
    return read_release(target, current=True)


def require_release(root: Path) -> Release:
    release = current_release(root)
    if release is None:
        raise ConfigError(f"nothing is served from {Path(root)} yet: {NO_RELEASE_HINT}")
    return release


def read_release(path: Path, current: bool = False) -> Release | None:
    """The release stored in `path`, None if it is not a complete release."""
    try:
        raw = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        tables = {n: TableRef(**t) for n, t in raw.pop("tables").items()}
        if raw.pop("format") != FORMAT:
            return None
        return Release(**raw, path=path, tables=tables, current=current)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_releases(root: Path) -> list[Release]:
    """Releases that have been current (and can be rolled back to), oldest first."""
    base = Path(root) / RELEASES
    current = current_release(root)
    found = []
    for path in sorted(base.glob("r*")) if base.is_dir() else []:
        is_current = current is not None and path.resolve() == current.path
        if is_current or (path / LIVE).exists():
            release = read_release(path.resolve(), current=is_current)
            if release is not None:
                found.append(release)
    return sorted(found, key=lambda r: r.number)


# ----------------------------------------------------------------------------- staging


@dataclass
class ReleaseStage(ReleaseFiles):
    """A release being built: fill `model_dir`, `index_dir`, `shows_file` and tables."""

    root: Path
    path: Path
    number: int
    run_id: str | None
    tables: dict[str, TableRef] = field(default_factory=dict)

    @property
    def release_id(self) -> str:
        return self.path.name

    def add_table(self, name: str, ref: TableRef) -> None:
        self.tables[name] = ref

    def manifest(self, model: dict[str, Any], lake: str | None) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "number": self.number,
            "release_id": self.release_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": self.run_id,
            "model_name": model.get("model_name"),
            "model_version": model["model_version"],
            "as_of": model.get("as_of"),
            "lake": lake,
            "tables": {n: t.__dict__ for n, t in self.tables.items()},
        }


@contextlib.contextmanager
def stage_release(root: Path, run_id: str | None = None) -> Iterator[ReleaseStage]:
    """Yield a fresh release directory to fill; on success it becomes current in one step
    (`make_current`). On any exception it is removed and the current release stays.

    Callers hold the work directory's writer lock (`jobs/locks.py`); a `.releases` directory
    made for this release and left empty by its failure is removed too."""
    root = Path(root)
    sweep(root)
    base = root / RELEASES
    made_base = not base.exists()
    number = _next_number(base)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = base / f"r{number:04d}-{stamp}"
    path.mkdir(parents=True)
    stage = ReleaseStage(root, path, number, run_id)
    try:
        yield stage
        if not (path / MANIFEST).exists():
            raise ConfigError(f"release {path.name} was staged without its manifest")
        pause_point("release:switch")
        make_current(root, path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        if made_base:
            with contextlib.suppress(OSError):  # not empty: something else is in it, kept
                base.rmdir()
        raise
    prune(root)


def write_manifest(stage: ReleaseStage, model: dict[str, Any], lake: str | None) -> None:
    """The release's manifest, written last (a directory without one is never served)."""
    tmp = stage.path / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(stage.manifest(model, lake), indent=2), encoding="utf-8")
    os.replace(tmp, stage.path / MANIFEST)


def make_current(root: Path, path: Path) -> None:
    """Swap the `release` link to `path` (atomic rename of a fresh link), then mark it live."""
    link = Path(root) / LINK
    tmp = link.with_name(f".{LINK}.link-{uuid.uuid4().hex[:6]}")
    os.symlink(os.path.relpath(path, link.parent), tmp)
    os.replace(tmp, link)  # the one step: readers see the old release or the new one
    (path / LIVE).touch()


def rollback(root: Path, number: int | None = None) -> Release:
    """Make release `number` (default: the one before the current) current again."""
    releases = list_releases(root)
    current = next((r for r in releases if r.current), None)
    if number is None:
        earlier = [r for r in releases if current is None or r.number < current.number]
        if not earlier:
            raise ConfigError("there is no earlier release to roll back to")
        target = earlier[-1]
    else:
        target = next((r for r in releases if r.number == number), None)
        if target is None:
            have = ", ".join(str(r.number) for r in releases) or "none"
            raise ConfigError(f"there is no release {number} (releases kept: {have})")
    make_current(root, target.path)
    return require_release(root)


# ----------------------------------------------------------------------------- cleaning


def _next_number(base: Path) -> int:
    numbers = [_number(p) for p in base.glob("r*")] if base.is_dir() else []
    return max([n for n in numbers if n is not None], default=0) + 1


def _number(path: Path) -> int | None:
    head = path.name[1:].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def sweep(root: Path) -> None:
    """Remove what killed writers left: releases that never became current, half-made links
    and staging files."""
    root = Path(root)
    base = root / RELEASES
    current = current_release(root)
    if current is not None:  # made current, killed before it was marked live
        (current.path / LIVE).touch()
    for path in base.glob("r*") if base.is_dir() else []:
        is_current = current is not None and path.resolve() == current.path
        if not is_current and not (path / LIVE).exists():
            shutil.rmtree(path, ignore_errors=True)
    for stray in root.glob(f".{LINK}.link-*"):
        stray.unlink(missing_ok=True)


def prune(root: Path, keep: int = KEEP) -> None:
    """Keep the newest `keep` releases (and the current one); drop table versions that no
    kept release names."""
    releases = list_releases(root)
    kept = {r.number for r in releases[-keep:]} | {r.number for r in releases if r.current}
    for r in releases:
        if r.number not in kept:
            shutil.rmtree(r.path, ignore_errors=True)
    _drop_unserved_tables(Path(root), [r for r in releases if r.number in kept])


def _drop_unserved_tables(root: Path, kept: list[Release]) -> None:
    """Table files older than the newest kept version and named by no kept release."""
    named: dict[str, set[str]] = {}
    for r in kept:
        for name, t in r.tables.items():
            named.setdefault(name, set()).update(p for p in (t.parquet, t.copy) if p)
    for name, paths in named.items():
        newest = max(r.tables[name].version for r in kept if name in r.tables)
        for f in (root / "tables" / name).glob("v*.*"):
            version = f.name[1:].split(".", 1)[0]
            rel = str(f.relative_to(root))
            if version.isdigit() and int(version) < newest and rel not in paths:
                f.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- building


def publish_release(
    root: Path,
    *,
    model: dict[str, Any],
    tables: dict[str, Any],
    shows: Any,
    index: Any = None,
    model_dir: Path | None = None,
    run_id: str | None = None,
) -> Release:
    """Make a release of ready-made parts current: `model` (its manifest; the directory
    `model_dir` is copied when given), `tables` (name -> polars frame), `shows` (a polars
    frame with show_id, title, premiered) and `index` (a ShowIndex, optional).

    What `tvrec recommend` does after computing its tables; also how tests and benchmarks
    publish known layouts. Callers hold the writer lock."""
    from tvrec.index import save_index
    from tvrec.jobs.catalog import Catalog
    from tvrec.jobs.query_store import show_list

    with stage_release(root, run_id) as stage:
        if model_dir is not None:
            shutil.copytree(model_dir, stage.model_dir)
        else:
            stage.model_dir.mkdir()
            (stage.model_dir / "manifest.json").write_text(json.dumps(model), encoding="utf-8")
        if index is not None:
            save_index(index, stage.index_dir)
        shows.write_parquet(stage.shows_file)
        listed = show_list(shows)
        catalog = Catalog(root)
        for name, frame in tables.items():
            ref = catalog.add_version(
                name,
                frame,
                model_version=_built_by(frame, model["model_version"]),
                as_of=model.get("as_of"),
                run_id=run_id,
                shows=listed,
            )
            stage.add_table(name, ref)
        write_manifest(stage, model, lake=None)
    return require_release(root)


def _built_by(frame: Any, default: str) -> str:
    """The model a table's rows say built it (its first row), else `default`."""
    if "model_version" in frame.columns and frame.height:
        return str(frame["model_version"][0])
    return default
