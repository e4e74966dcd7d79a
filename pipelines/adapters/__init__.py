"""Dataset adapters: read a dataset in its own layout as a `RawDataset`.

`load_raw(directory, fmt)` dispatches on the format name; `canonicalize(raw)` (in
`pipelines.contract`) then validates the result. `detect_format` guesses the format from the
files a directory holds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..contract import (
    RawDataset,
    check_encoding,
    find_table,
    linked_outside,
    read_contract_dir,
)
from ..errors import DataError
from . import anime, movielens, netflix_titles, streaming, tvmaze

FORMATS: tuple[str, ...] = (
    "contract",
    "movielens-100k",
    "anime",
    "netflix-titles",
    "streaming-catalogue",
    "tvmaze",
)

# each loader takes the directory and the text encoding (None: the format's own)
LOADERS: dict[str, Callable[[Path, str | None], RawDataset]] = {
    "contract": read_contract_dir,
    "movielens-100k": movielens.load,
    "anime": anime.load,
    "netflix-titles": netflix_titles.load,
    "streaming-catalogue": streaming.load,
    "tvmaze": tvmaze.load,
}


def load_raw(directory: Path, fmt: str = "contract", encoding: str | None = None) -> RawDataset:
    """Read `directory` in format `fmt`, text files in `encoding` (None: UTF-8, or the
    format's own); a DataError for an unknown format or missing files.

    Input files that are symlinks out of the directory are followed; a note names the file
    each one was read from (the note is kept in the lake's manifest)."""
    directory = Path(directory)
    loader = LOADERS.get(fmt)
    if loader is None:
        raise DataError(str(directory), f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    check_encoding(encoding)
    if not directory.is_dir():
        raise DataError(str(directory), "not a directory")
    raw = loader(directory, encoding)
    raw.notes.extend(linked_outside(directory, raw.sources))
    return raw


def _has(directory: Path, *names: str) -> bool:
    return all((directory / n).is_file() for n in names)


def detect_format(directory: Path) -> str:
    """The format whose characteristic files `directory` holds; a DataError if none match."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(str(directory), "not a directory")
    if find_table(directory, "shows") and find_table(directory, "events"):
        return "contract"
    if _has(directory, "u.data", "u.item"):
        return "movielens-100k"
    if _has(directory, anime.HISTORY_FILE, anime.INFO_FILE):
        return "anime"
    if streaming.catalogue_files(directory):
        return "streaming-catalogue"
    if _has(directory, netflix_titles.TITLES_FILE):
        return "netflix-titles"
    if _has(directory, tvmaze.SHOWS_FILE):
        return "tvmaze"
    found = ", ".join(sorted(p.name for p in directory.iterdir())[:20]) or "nothing"
    raise DataError(
        str(directory),
        f"cannot tell the dataset format from the files present ({found}); "
        f"pass --format, one of {', '.join(FORMATS)}",
    )
