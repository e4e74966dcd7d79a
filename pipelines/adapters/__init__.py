"""Dataset adapters: read a dataset in its own layout as a `RawDataset`.

`load_raw(directory, fmt)` dispatches on the format name; `canonicalize(raw)` (in
`pipelines.contract`) then validates the result. `detect_format` guesses the format from the
files a directory holds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..contract import RawDataset, find_table, read_contract_dir
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

LOADERS: dict[str, Callable[[Path], RawDataset]] = {
    "contract": read_contract_dir,
    "movielens-100k": movielens.load,
    "anime": anime.load,
    "netflix-titles": netflix_titles.load,
    "streaming-catalogue": streaming.load,
    "tvmaze": tvmaze.load,
}


def load_raw(directory: Path, fmt: str = "contract") -> RawDataset:
    """Read `directory` in format `fmt`; a DataError for an unknown format or missing files."""
    directory = Path(directory)
    loader = LOADERS.get(fmt)
    if loader is None:
        raise DataError(str(directory), f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not directory.is_dir():
        raise DataError(str(directory), "not a directory")
    return loader(directory)


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
