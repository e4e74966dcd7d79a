"""The work directory: published areas swapped atomically, never half-written.

Each published area (`lake`, `features`) is a symlink to a versioned directory
(`.versions/lake-<stamp>`). A new version is written beside the old one and goes live with one
atomic `os.replace` of the link, so readers see the old tables or the new ones, never a mix; a
failed or killed run leaves the previous version live and the tree as it was.

    tvrec-work/
      lake -> .versions/lake-20261127T020000-1a2b   canonical Parquet tables + manifest.json
      features -> .versions/features-...            offline feature tables (Feast sources)
      feast/                                        registry.db, online_store.db
      cache/                                        text-embedding cache
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .errors import ConfigError

VERSIONS = ".versions"
# How a command finds the work directory: `-w`, then $TVREC_WORKDIR, then ./tvrec-work (here,
# not in pipelines.config, so that `tvrec query` finds it without importing pydantic)
WORKDIR_ENV = "TVREC_WORKDIR"
DEFAULT_WORKDIR = "tvrec-work"


def workdir_root(flag: Path | str | None) -> Path:
    """The work directory `-w` names (else $TVREC_WORKDIR, else ./tvrec-work), resolved. An
    empty or blank `-w` is refused: it read as the current directory (an unset shell variable
    in `-w "$WORK"`)."""
    if isinstance(flag, str) and not flag.strip():
        raise ConfigError(
            f"-w / {WORKDIR_ENV} {flag!r}: an empty path; name a directory (. for the current one)"
        )
    return Path(flag or os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR).resolve()


class Workdir:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    # ---- well-known paths -----------------------------------------------------------------
    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def feast(self) -> Path:
        return self.root / "feast"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def has(self, area: str) -> bool:
        return (self.root / area).exists()

    def require(self, area: str, hint: str) -> Path:
        path = self.root / area
        if not path.exists():
            from .errors import ConfigError

            raise ConfigError(f"{path} does not exist yet: {hint}")
        return path

    # ---- atomic publishing ----------------------------------------------------------------
    @contextlib.contextmanager
    def publish(self, area: str) -> Iterator[Path]:
        """Yield a fresh directory to fill; on success it replaces `area` atomically.

        On any exception the new directory is removed and nothing else changes (if the work
        directory did not exist before, it does not exist after).
        """
        created_root = not self.root.exists()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        versions = self.root / VERSIONS
        created_versions = not versions.exists()
        flat = area.replace("/", "-")  # nested areas (models/multimodal) version flat
        staging = versions / f"{flat}-{stamp}-{uuid.uuid4().hex[:6]}"
        times = {
            d: (d.stat().st_atime_ns, d.stat().st_mtime_ns)
            for d in (self.root, versions)
            if d.exists()
        }
        staging.mkdir(parents=True)
        try:
            yield staging
            self._swap_link(area, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created_root:
                shutil.rmtree(self.root, ignore_errors=True)
            elif created_versions:
                shutil.rmtree(versions, ignore_errors=True)
            for d, ns in times.items():  # the tree is left exactly as it was, times included
                if d.exists():
                    os.utime(d, ns=ns)
            raise

    def _swap_link(self, area: str, target: Path) -> None:
        link = self.root / area
        link.parent.mkdir(parents=True, exist_ok=True)
        previous = link.resolve() if link.is_symlink() else None
        tmp = link.parent / f".{link.name}.link-{uuid.uuid4().hex[:6]}"
        os.symlink(os.path.relpath(target, link.parent), tmp)
        os.replace(tmp, link)  # atomic on POSIX: readers see old or new, never neither
        if previous is not None and previous != target.resolve():
            shutil.rmtree(previous, ignore_errors=True)

    def sweep(self) -> list[Path]:
        """Remove what killed writers left behind: versions no area links to, half-made
        links and temp files. Callers hold the writer lock; returns what was removed."""
        versions = self.root / VERSIONS
        live = {p.resolve() for p in self._area_links()}
        stale = (
            [d for d in versions.iterdir() if d.resolve() not in live] if versions.is_dir() else []
        )
        stale += [p for p in self._walk() if _is_temp(p.name)]
        for path in stale:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return stale

    def _area_links(self) -> list[Path]:
        """Every published area's link (lake, features, models/<name>, ...)."""
        tops = [p for p in self.root.iterdir() if p.is_symlink()] if self.root.is_dir() else []
        models = self.root / "models"
        nested = [p for p in models.iterdir() if p.is_symlink()] if models.is_dir() else []
        return tops + nested

    def _walk(self) -> list[Path]:
        """Files and folders of the work directory, not entering versions or releases."""
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d not in (VERSIONS, ".releases")]
            found += [Path(dirpath) / n for n in [*dirnames, *filenames]]
        return found

    def write_json(self, path: Path, payload: dict) -> None:
        """Write JSON aside, then swap it in."""
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=str))
        os.replace(tmp, path)


TEMP_MARKS = (".tmp", ".link-", ".tmp-")


def _is_temp(name: str) -> bool:
    """Names this package gives files while it writes them aside (`.x.tmp`, `.x.link-ab12`,
    `.index.tmp-ab12`)."""
    if name.startswith(".schedule"):  # the scheduler's own, written outside run.lock
        return False
    return name.startswith(".") and any(mark in name for mark in TEMP_MARKS)


def snapshot_tree(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of every file under root: to prove nothing changed."""
    if not root.exists():
        return {}
    out: dict[str, tuple[int, int]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        key = str(p.relative_to(root)) + ("@" + os.readlink(p) if p.is_symlink() else "")
        out[key] = (st.st_size, st.st_mtime_ns)
    return out
