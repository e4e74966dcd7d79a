"""TVmaze adapter: show records from the TVmaze API (`/shows`), optionally with episodes.

Files:
- tvmaze_shows.json     a JSON array of show objects: id, name, type, language, genres,
                        premiered, runtime, network {name, country {code}} or webChannel {...},
                        rating {average}, weight, summary (HTML), externals, url -> shows
- tvmaze_episodes.json  (optional) a JSON array of episode objects -> seasons/episodes per show

The episodes file is an `/shows/:id/episodes` listing: its objects carry no show id, only their
own url "https://www.tvmaze.com/episodes/4952/game-of-thrones-1x01-winter-is-coming". An episode
is attributed to a show by an explicit show id where one is present (`show_id`, `show.id`,
`_embedded.show.id`, `_links.show.href`), else by the show slug in its url when exactly one show
has that slug. Episodes that match no show are only counted in a note.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from ..contract import SHOW_NUMBER_MOST, RawDataset, blank_values
from ..errors import DataError, shorten
from ._common import (
    CATALOGUE_NOTE,
    empty_events,
    optional_file,
    read_text,
    require_file,
    strip_html,
)

SHOWS_FILE = "tvmaze_shows.json"
EPISODES_FILE = "tvmaze_episodes.json"
_EPISODE_URL = re.compile(r"/episodes/\d+/(.+?)-\d+x\d+(?:-|$)")
_SHOW_HREF = re.compile(r"/shows/(\d+)/?$")


def read_json_array(path: Path, encoding: str | None = None) -> list[dict[str, Any]]:
    """A file holding a JSON array of objects (UTF-8 checked; a DataError otherwise)."""
    try:
        data = json.loads(read_text(path, encoding, header=False))
    except json.JSONDecodeError as exc:
        raise DataError(str(path), f"not valid JSON: {exc.msg}", rows=[exc.lineno]) from exc
    if not isinstance(data, list):
        raise DataError(str(path), f"expected a JSON array of objects, found {type(data).__name__}")
    bad = [i + 1 for i, item in enumerate(data) if not isinstance(item, dict)]
    if bad:
        raise DataError(str(path), "array items that are not objects", rows=bad[:50])
    if not data:
        raise DataError(str(path), "the array is empty")
    return data


def _get(obj: Any, *keys: str) -> Any:
    """obj[k1][k2]... or None where any level is missing or null."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _require_keys(items: list[dict[str, Any]], keys: tuple[str, ...], source: str) -> None:
    """Every record has each key, and not blank (a name of spaces or of a zero-width space is
    named here, under the field's own name, not later as the shows table's title)."""
    for key in keys:
        values = [item.get(key) for item in items]
        missing = [i for i, b in enumerate(blank_values(values)) if b]
        if missing:
            shown = [_shown(values[i]) for i in missing[:5]]
            why = "missing or blank field (absent, null, or only spaces or invisible characters)"
            raise DataError(
                source, why, column=key, rows=[i + 1 for i in missing[:50]], examples=shown
            )


def _id_text(value: Any) -> str:
    """An id as text: a whole float is the integer it holds (2.0 -> "2", as a whole weight
    such as 100.0 reads as 100), so it matches the same id written 2."""
    whole = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    return str(int(value)) if whole else str(value)


def _show_row(show: dict[str, Any]) -> dict[str, Any]:
    """One show object as a row of the shows table (extras become attributes)."""
    channel = show.get("network") or show.get("webChannel")
    genres = show.get("genres") or []
    return {
        "show_id": _id_text(show["id"]),
        "title": str(show["name"]).strip(),
        "description": strip_html(show.get("summary")),
        "genres": [str(g) for g in genres] if isinstance(genres, list) else [str(genres)],
        "network": _get(channel, "name"),
        # a web channel (Netflix, Hulu...) is also the platform the show streams on
        "platforms": [str(n)] if (n := _get(show, "webChannel", "name")) else [],
        "premiered": show.get("premiered"),
        "type": show.get("type"),
        "runtime_minutes": show.get("runtime"),
        "language": show.get("language"),
        "country": _get(channel, "country", "code"),
        "rating": _get(show, "rating", "average"),
        "weight": show.get("weight"),
        "status": show.get("status"),
        "imdb_id": _get(show, "externals", "imdb"),
        "url": show.get("url"),
    }


SHOW_SCHEMA: dict[str, pl.DataType] = {
    "show_id": pl.String(),
    "title": pl.String(),
    "description": pl.String(),
    "genres": pl.List(pl.String()),
    "network": pl.String(),
    "platforms": pl.List(pl.String()),
    "premiered": pl.String(),  # validated as YYYY-MM-DD by canonicalize
    "type": pl.String(),
    "runtime_minutes": pl.Float64(),
    "language": pl.String(),
    "country": pl.String(),
    "rating": pl.Float64(),
    "weight": pl.Int64(),
    "status": pl.String(),
    "imdb_id": pl.String(),
    "url": pl.String(),
}


def _not_a_value(v: Any) -> bool:
    # an id or a name that would become its Python text: show id "{'a': 1}", or "True"
    return isinstance(v, dict | list | bool)


def _not_an_id(v: Any) -> bool:
    # a number must be whole (1.5 became show "1.5"; NaN show "nan") and exact as a float
    if isinstance(v, float):
        return not (math.isfinite(v) and v.is_integer() and abs(v) <= 2.0**53)
    return _not_a_value(v)


def _not_a_number(v: Any) -> bool:
    return v is not None and (isinstance(v, bool) or not isinstance(v, int | float))


def _outside(low: float, high: float, whole: bool = False) -> Callable[[Any], bool]:
    """A check that a value, where given, is not a finite number from `low` to `high` (a
    whole one with `whole`): TVmaze's scales, so 85 for a rating out of 10 is refused."""

    def bad(v: Any) -> bool:
        if v is None:
            return False
        if _not_a_number(v) or not (math.isfinite(v) and low <= v <= high):
            return True
        return whole and v != int(v)

    return bad


def _not_text(v: Any) -> bool:
    return v is not None and not isinstance(v, str)


def _not_genres(v: Any) -> bool:
    # a list of names (a lone name is read as a list of one); an object inside became its text
    return _not_text(v) and not (isinstance(v, list) and all(isinstance(g, str) for g in v))


def _not_object(v: Any) -> bool:
    return v is not None and not isinstance(v, dict)  # "HBO" for {"name": "HBO"} was lost


MOST_MINUTES = SHOW_NUMBER_MOST["runtime_minutes"]
# The object fields read, each with an example of its form.
OBJECTS = {
    "rating": '{"average": 8.1}',
    "externals": '{"imdb": "tt0944947"}',
    "network": '{"name": "HBO"}',
    "webChannel": '{"name": "Netflix"}',
}


ShowField = tuple[str, Callable[[dict[str, Any]], Any], Callable[[Any], bool], str]
VALUE = "a single value (text or a number)"
ID = "a single value (text or a whole number)"
TEXT = "text"


def _channel_checks(channel: str) -> tuple[ShowField, ...]:
    """The fields read inside a network or web channel: its name and its country's code."""
    country = 'an object such as {"code": "US"}'
    return (
        (f"{channel}.name", lambda s: _get(s, channel, "name"), _not_text, TEXT),
        (f"{channel}.country", lambda s: _get(s, channel, "country"), _not_object, country),
        (f"{channel}.country.code", lambda s: _get(s, channel, "country", "code"), _not_text, TEXT),
    )


# (field as TVmaze names it, how to read it from a show object, whether it is bad, what it
# must be instead)
FIELD_CHECKS: tuple[ShowField, ...] = (
    ("id", lambda s: s.get("id"), _not_an_id, ID),
    ("name", lambda s: s.get("name"), _not_a_value, VALUE),
    *((f, lambda s, f=f: s.get(f), _not_object, f"an object such as {form}")
      for f, form in OBJECTS.items()),
    ("runtime", lambda s: s.get("runtime"), _outside(0, MOST_MINUTES),
     f"a number of minutes (0 to {MOST_MINUTES:,g})"),
    ("rating.average", lambda s: _get(s, "rating", "average"), _outside(0, 10),
     "a number from 0 to 10 (TVmaze's average rating)"),
    ("weight", lambda s: s.get("weight"), _outside(0, 100, whole=True),
     "a whole number from 0 to 100 (TVmaze's popularity weight)"),
    *((f, lambda s, f=f: s.get(f), _not_text, TEXT)
      for f in ("type", "language", "status", "premiered", "summary", "url")),
    ("externals.imdb", lambda s: _get(s, "externals", "imdb"), _not_text, TEXT),
    ("genres", lambda s: s.get("genres"), _not_genres, "a list of genre names"),
    *(check for channel in ("network", "webChannel") for check in _channel_checks(channel)),
)  # fmt: skip


def _shown(value: Any) -> str:
    """A field's value as the JSON it was (NaN stays NaN, an object stays an object)."""
    return json.dumps(value, ensure_ascii=False)


def _require_values(items: list[dict[str, Any]], source: str) -> None:
    """A DataError naming the field, the records and their values where a field is not what
    TVmaze gives: an id or a name that is an object or a list, a number field that holds
    text or lies off TVmaze's scale, a text field that holds anything but text."""
    for field, read, bad, kind in FIELD_CHECKS:
        where = [i for i, item in enumerate(items) if bad(read(item))]
        if where:
            shown = [_shown(read(items[i])) for i in where[:5]]
            rows = [i + 1 for i in where[:50]]
            why = f"field '{field}' is not {kind}"
            raise DataError(source, why, column=field, rows=rows, examples=shown)


def read_shows(path: Path, encoding: str | None = None) -> pl.DataFrame:
    items = read_json_array(path, encoding)
    _require_keys(items, ("id", "name"), str(path))
    _require_values(items, str(path))
    try:
        return pl.DataFrame([_show_row(s) for s in items], schema=SHOW_SCHEMA, orient="row")
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        reason = shorten(str(exc), 200)
        raise DataError(str(path), f"show fields of unexpected types: {reason}") from None


def _slug(url: str | None) -> str | None:
    return url.rstrip("/").rsplit("/", 1)[-1] if url else None


def _episode_show(ep: dict[str, Any], by_slug: dict[str, str]) -> str | None:
    """The show id of an episode: explicit where given, else from the slug in its url."""
    explicit = ep.get("show_id") or _get(ep, "show", "id") or _get(ep, "_embedded", "show", "id")
    if explicit is not None:
        return _id_text(explicit)
    href = _get(ep, "_links", "show", "href")
    if href and (m := _SHOW_HREF.search(str(href))):
        return m.group(1)
    m = _EPISODE_URL.search(str(ep.get("url") or ""))
    return by_slug.get(m.group(1)) if m else None


def episode_counts(
    path: Path, shows: pl.DataFrame, encoding: str | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """(show_id, seasons, episodes) for the shows the episodes file covers, plus notes."""
    items = read_json_array(path, encoding)
    slug_owners: dict[str, list[str]] = defaultdict(list)
    for show_id, url in shows.select("show_id", "url").iter_rows():
        if (slug := _slug(url)) is not None:
            slug_owners[slug].append(show_id)
    by_slug = {s: ids[0] for s, ids in slug_owners.items() if len(ids) == 1}
    seasons: dict[str, set[int]] = defaultdict(set)
    episodes: dict[str, int] = defaultdict(int)
    unmatched = 0
    for ep in items:
        show_id = _episode_show(ep, by_slug)
        if show_id is None:
            unmatched += 1
            continue
        episodes[show_id] += 1
        if isinstance(ep.get("season"), int):
            seasons[show_id].add(ep["season"])
    counts = pl.DataFrame(
        {
            "show_id": list(episodes),
            "seasons": [len(seasons[s]) or None for s in episodes],
            "episodes": list(episodes.values()),
        },
        schema={"show_id": pl.String, "seasons": pl.Int32, "episodes": pl.Int32},
    )
    names = dict(shows.select("show_id", "title").iter_rows())
    covered = ", ".join(f"{names.get(s, s)} ({n})" for s, n in episodes.items())
    notes = [f"{EPISODES_FILE}: {len(items)} episodes; counted for {covered or 'no show'}"]
    if unmatched:
        notes.append(f"{EPISODES_FILE}: {unmatched} episodes match no show and are ignored")
    return counts, notes


def load(directory: Path, encoding: str | None = None) -> RawDataset:
    """Read the TVmaze shows (and episode counts where the episodes file allows)."""
    shows_path = require_file(directory, SHOWS_FILE)
    shows = read_shows(shows_path, encoding)
    notes = [CATALOGUE_NOTE]
    episodes_path = optional_file(directory, EPISODES_FILE)
    if episodes_path is not None:
        counts, more = episode_counts(episodes_path, shows, encoding)
        shows = shows.join(counts, on="show_id", how="left", maintain_order="left")
        notes.extend(more)
    return RawDataset(
        name=directory.name,
        shows=shows,
        events=empty_events(),
        sources={"shows": str(shows_path), "events": str(directory)},
        notes=notes,
    )
