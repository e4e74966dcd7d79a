"""Dataset adapters: real public datasets load with known answers; bad input names its fault.

The real datasets live in `<project root>/../shared/datasets`; tests that need them are
skipped where that folder is absent. Each real dataset is read once per module.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from tvrec.pipelines.adapters import FORMATS, detect_format, load_raw
from tvrec.pipelines.adapters._common import (
    parse_pylist,
    person_slug,
    read_delimited,
    strip_html,
)
from tvrec.pipelines.contract import (
    EVENTS_SCHEMA,
    SHOWS_SCHEMA,
    Dataset,
    RawDataset,
    canonicalize,
)
from tvrec.pipelines.errors import DataError

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
DIRS = {
    "movielens-100k": "movielens-100k",
    "anime": "anime-caserec-5k-users",
    "netflix-titles": "netflix-titles-credits",
    "streaming-catalogue": "streaming-catalogues",
    "tvmaze": "tvmaze-shows-240",
}
needs_data = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"{DATASETS} not found")


def _load(fmt: str) -> tuple[RawDataset, Dataset]:
    raw = load_raw(DATASETS / DIRS[fmt], fmt)
    return raw, canonicalize(raw)


@pytest.fixture(scope="module")
def movielens() -> tuple[RawDataset, Dataset]:
    return _load("movielens-100k")


@pytest.fixture(scope="module")
def anime() -> tuple[RawDataset, Dataset]:
    return _load("anime")


@pytest.fixture(scope="module")
def netflix() -> tuple[RawDataset, Dataset]:
    return _load("netflix-titles")


@pytest.fixture(scope="module")
def streaming() -> tuple[RawDataset, Dataset]:
    return _load("streaming-catalogue")


@pytest.fixture(scope="module")
def tvmaze() -> tuple[RawDataset, Dataset]:
    return _load("tvmaze")


def show(ds: Dataset, show_id: str) -> dict:
    rows = ds.shows.filter(pl.col("show_id") == show_id)
    assert rows.height == 1, show_id
    return rows.row(0, named=True)


def show_titled(ds: Dataset, title: str) -> dict:
    rows = ds.shows.filter(pl.col("title") == title)
    assert rows.height >= 1, title
    return rows.row(0, named=True)


def check_schemas(ds: Dataset) -> None:
    assert ds.shows.schema == pl.Schema(SHOWS_SCHEMA)
    assert ds.events.schema == pl.Schema(EVENTS_SCHEMA)


# ---- real datasets ------------------------------------------------------------------------
@needs_data
def test_movielens_counts_and_first_rating(movielens: tuple[RawDataset, Dataset]) -> None:
    raw, ds = movielens
    check_schemas(ds)
    assert (ds.events.height, ds.users.height, ds.shows.height) == (100_000, 943, 1_682)
    assert ds.timed and ds.notes == []
    first = raw.events.row(0, named=True)  # u.data line 1: 196 242 3 881250949
    assert (first["user_id"], first["show_id"], first["weight"]) == ("196", "242", 3.0)
    assert first["event_timestamp"] == datetime.fromtimestamp(881250949, tz=UTC)
    assert first["event_type"] == "rating"
    assert ds.events["weight"].sum() == pytest.approx(352_986)  # mean rating 3.52986


@needs_data
def test_movielens_shows_and_users(movielens: tuple[RawDataset, Dataset]) -> None:
    _, ds = movielens
    toy = show(ds, "1")
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert toy["premiered"] == date(1995, 1, 1)
    assert toy["type"] == "movie"
    assert json.loads(toy["attributes"])["year"] == "1995"
    # u.item is latin-1: é must come through as é, not as a replacement character
    assert show_titled(ds, "Misérables, Les (1995)")["show_id"] == "543"
    unknown = show(ds, "267")  # the record with no title data: no date, no genre
    assert unknown["premiered"] is None and unknown["genres"] == []
    user1 = json.loads(ds.users.filter(pl.col("user_id") == "1")["attributes"].item())
    assert user1 == {"age": "24", "gender": "M", "occupation": "technician", "zip_code": "85711"}


@needs_data
def test_anime_events_are_untimed_and_weighted(anime: tuple[RawDataset, Dataset]) -> None:
    raw, ds = anime
    check_schemas(ds)
    assert not ds.timed and not raw.timed
    assert ds.events["user_id"].n_unique() == 5_000
    assert ds.events.height == 520_609  # SOURCES.md's 520,610 counts the header line
    assert ds.shows.height == 7_390
    assert ds.events["event_timestamp"].unique().to_list() == [datetime(2017, 1, 1, tzinfo=UTC)]
    assert any("synthetic timestamp 2017-01-01T00:00:00Z" in n for n in ds.notes)
    assert not any(n.startswith("dropped") for n in ds.notes)  # every history id maps
    counts = ds.events["event_type"].value_counts()
    assert dict(counts.iter_rows()) == {"rating": 419_943, "completed": 100_666}
    # anime_ratings.dat "1 1 8": a rating of 8; history "1 10" has no rating: weight 1
    by_pair = {(u, s): w for u, s, w in ds.events.select("user_id", "show_id", "weight").rows()}
    assert by_pair[("1", "1")] == 8.0 and by_pair[("1", "10")] == 1.0


@needs_data
def test_anime_shows_map_by_renumbered_ids(anime: tuple[RawDataset, Dataset]) -> None:
    _, ds = anime
    fma = show_titled(ds, "Fullmetal Alchemist: Brotherhood")
    assert "Action" in fma["genres"] and fma["type"] == "TV" and fma["episodes"] == 64
    assert json.loads(fma["attributes"]) == {"rating": "9.26", "members": "793665"}
    # the most-watched ids are the titles with the most MAL members
    top = ds.events.group_by("show_id").len().sort("len", descending=True).head(3)
    titles = top.join(ds.shows, on="show_id", maintain_order="left")["title"].to_list()
    assert titles == ["Death Note", "Sword Art Online", "Shingeki no Kyojin"]
    # HTML entities in names are unescaped; a title starting with a quote stays whole
    assert show_titled(ds, "Gintama'")["type"] == "TV"
    assert show_titled(ds, '"Bungaku Shoujo" Movie')["type"] == "Movie"
    tv_share = ds.events.join(ds.shows, on="show_id")["type"].eq("TV").mean()
    assert tv_share == pytest.approx(0.68, abs=0.01)


@needs_data
def test_netflix_titles_catalogue(netflix: tuple[RawDataset, Dataset]) -> None:
    _, ds = netflix
    check_schemas(ds)
    assert ds.events.height == 0 and "catalogue only: no viewing events" in ds.notes
    assert (ds.shows.height, ds.credits.height) == (6_137, 81_355)
    bb = show_titled(ds, "Breaking Bad")
    assert bb["genres"] == ["drama", "comedy", "crime", "thriller"]
    assert (bb["type"], bb["seasons"], bb["runtime_minutes"]) == ("SHOW", 5, 48.0)
    assert (bb["premiered"], bb["platforms"], bb["country"]) == (
        date(2008, 1, 1),
        ["Netflix"],
        "US",
    )
    assert bb["age_rating"] == "TV-MA"
    assert json.loads(bb["attributes"])["imdb_score"] == "9.5"
    assert set(ds.credits["role"].unique()) == {"actor", "director"}
    rocky = ds.credits.filter(pl.col("show_id") == "tm82169", pl.col("person_id") == "3180")
    assert rocky.select("name", "character", "role").row(0) == (
        "Sylvester Stallone",
        'Robert "Rocky" Balboa',
        "actor",
    )
    # "[Unknown]" is the export's empty list, "Unknown" its missing age certification
    assert ds.shows.filter(pl.col("genres").list.len() == 0).height == 57
    assert "Unknown" not in ds.shows["age_rating"].drop_nulls().to_list()


@needs_data
def test_streaming_catalogues(streaming: tuple[RawDataset, Dataset]) -> None:
    raw, ds = streaming
    check_schemas(ds)
    assert ds.events.height == 0 and "catalogue only: no viewing events" in ds.notes
    assert ds.shows.height == 8_807 + 3_073 + 1_450
    hulu = read_delimited(DATASETS / DIRS["streaming-catalogue"] / "hulu_titles.csv")
    assert hulu.columns[0] == "show_id"  # the file starts with a BOM
    assert raw.shows.columns[0] == "show_id"
    assert not ds.shows["show_id"].str.contains("\ufeff").any()
    tale = show(ds, "hulu:s764")
    assert (tale["title"], tale["platforms"], tale["seasons"]) == (
        "The Handmaid's Tale",
        ["Hulu"],
        4,
    )
    assert tale["premiered"] == date(2017, 1, 1)  # added 2021, released 2017
    mando = show(ds, "disney_plus:s378")
    assert (mando["title"], mando["platforms"]) == ("The Mandalorian", ["Disney+"])
    assert "Action-Adventure" in mando["genres"] and mando["type"] == "TV Show"
    dick = show(ds, "netflix:s1")
    assert (dick["runtime_minutes"], dick["seasons"], dick["premiered"]) == (
        90.0,
        None,
        date(2020, 1, 1),
    )
    ricky = show(ds, "hulu:s1")  # released and added in 2021: premiered on its date_added
    assert ricky["premiered"] == date(2021, 10, 24)
    assert ricky["description"].startswith("Comedian")  # leading zero-width space removed
    louis = show_titled(ds, "Louis C.K. 2017")  # duration misplaced in the rating column
    assert (louis["runtime_minutes"], louis["age_rating"]) == (74.0, None)


@needs_data
def test_streaming_person_ids_link_platforms(streaming: tuple[RawDataset, Dataset]) -> None:
    _, ds = streaming
    pascal = ds.credits.filter(pl.col("name") == "Pedro Pascal").join(ds.shows, on="show_id")
    assert pascal["person_id"].unique().to_list() == ["pedro-pascal"]
    assert {p for ps in pascal["platforms"].to_list() for p in ps} >= {"Netflix", "Disney+"}
    assert "disney_plus:s378" in pascal["show_id"].to_list()
    directors = ds.credits.filter(pl.col("show_id") == "netflix:s1", pl.col("role") == "director")
    assert directors.select("person_id", "name").rows() == [("kirsten-johnson", "Kirsten Johnson")]


@needs_data
def test_tvmaze_shows_and_episodes(tvmaze: tuple[RawDataset, Dataset]) -> None:
    _, ds = tvmaze
    check_schemas(ds)
    assert ds.shows.height == 240 and ds.events.height == 0
    dome = show(ds, "1")
    assert (dome["title"], dome["network"], dome["country"]) == ("Under the Dome", "CBS", "US")
    assert dome["description"].startswith("Under the Dome is the story of a small town")
    assert not ds.shows["description"].str.contains("<").any()
    assert dome["premiered"] == date(2013, 6, 24)
    assert dome["genres"] == ["Drama", "Science-Fiction", "Thriller"]
    assert (dome["language"], dome["runtime_minutes"], dome["type"]) == (
        "English",
        60.0,
        "Scripted",
    )
    assert json.loads(dome["attributes"])["rating"] == "6.5"
    got = show(ds, "82")  # the episodes file is Game of Thrones' full run
    assert (got["title"], got["seasons"], got["episodes"]) == ("Game of Thrones", 8, 73)
    assert ds.shows["episodes"].drop_nulls().len() == 1


@needs_data
@pytest.mark.parametrize("fmt", sorted(DIRS))
def test_detect_format_of_real_datasets(fmt: str) -> None:
    assert detect_format(DATASETS / DIRS[fmt]) == fmt


# ---- helpers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("['drama', 'crime']", ("drama", "crime")),
        ("['documentation']", ("documentation",)),
        ("[]", ()),
        ("[Unknown]", ()),
        ("[\"Grey's\", 'war']", ("Grey's", "war")),
        ("[drama, crime]", ("drama", "crime")),  # not a Python literal: split on commas
        ("", ()),
    ],
)
def test_parse_pylist(text: str, items: tuple[str, ...]) -> None:
    assert parse_pylist(text) == items


def test_strip_html_and_person_slug() -> None:
    assert strip_html("<p><b>Dome</b> is <i>big</i> &amp; odd.</p><p>Next</p>") == (
        "Dome is big & odd. Next"
    )
    assert strip_html(None) is None and strip_html("<p></p>") is None
    assert person_slug("Penélope  Cruz") == person_slug("penelope cruz") == "penelope-cruz"
    assert person_slug("Samuel L. Jackson") == "samuel-l-jackson"
    assert person_slug("İlker Aksum") == person_slug("Ilker Aksum")


# ---- load_raw / detect_format on small directories ----------------------------------------
def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_load_raw_rejects_unknown_format_and_missing_files(tmp_path: Path) -> None:
    assert FORMATS == (
        "contract",
        "movielens-100k",
        "anime",
        "netflix-titles",
        "streaming-catalogue",
        "tvmaze",
    )
    with pytest.raises(DataError, match="unknown format 'imdb'"):
        load_raw(tmp_path, "imdb")
    with pytest.raises(DataError, match="not a directory"):
        load_raw(tmp_path / "nope", "anime")
    with pytest.raises(DataError) as err:
        load_raw(tmp_path, "movielens-100k")
    assert "u.data" in str(err.value) and "required file not found" in str(err.value)
    with pytest.raises(DataError, match="shows"):
        load_raw(tmp_path, "contract")
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        detect_format(tmp_path)


def test_detect_format_of_small_dirs(tmp_path: Path) -> None:
    write(tmp_path / "c" / "shows.csv", "show_id,title\n1,A\n")
    write(tmp_path / "c" / "events.parquet", b"x")
    assert detect_format(tmp_path / "c") == "contract"
    write(tmp_path / "s" / "hulu_titles.csv", "show_id,type,title\ns1,Movie,A\n")
    assert detect_format(tmp_path / "s") == "streaming-catalogue"
    write(tmp_path / "n" / "titles.csv", "id,title,type\nts1,A,SHOW\n")
    assert detect_format(tmp_path / "n") == "netflix-titles"


def test_movielens_item_file_is_latin1(tmp_path: Path) -> None:
    flags = "|".join(["0"] * 18 + ["1"])  # the last genre: Western
    genres = "".join(f"g{i}|{i}\n" for i in range(18)) + "Western|18\n"
    write(tmp_path / "u.genre", genres)
    write(tmp_path / "u.item", f"1|Mis\xe9rables (1995)|05-Mar-1995|||{flags}\n".encode("latin-1"))
    write(tmp_path / "u.data", "7\t1\t4\t881250949\n")
    raw = load_raw(tmp_path, "movielens-100k")
    ds = canonicalize(raw)
    row = ds.shows.row(0, named=True)
    assert (row["title"], row["genres"], row["premiered"]) == (
        "Misérables (1995)",
        ["Western"],
        date(1995, 3, 5),
    )
    assert ds.events["event_timestamp"].item() == datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)
    assert raw.users is None and ds.users.height == 0
    write(tmp_path / "u.data", "7\t1\t4\t881250949\n7\t1\tfour\t881250950\n")
    with pytest.raises(DataError) as err:
        load_raw(tmp_path, "movielens-100k")
    assert re.search(r"u\.data, column 'weight': not a number; rows 2", str(err.value))


def _anime_dir(tmp_path: Path, info_header: str = "anime_ids\tname\tgenre\ttype") -> Path:
    write(
        tmp_path / "anime_info.dat",
        f"{info_header}\tepisodes\trating\tmembers\n"
        "1\tA&amp;B\tAction, Drama\tTV\t12\t8.1\t100\n"
        "2\tC\t\tMovie\tUnknown\t7.0\t50\n",
    )
    write(
        tmp_path / "anime_history.dat",
        "User_ID\tAnime_ID\tFeedback\n1\t1\t1\n1\t2\t1\n2\t3\t1\n3\t3\t1\n",
    )
    write(tmp_path / "anime_ratings.dat", "User_ID\tAnime_ID\tFeedback\n1\t1\t9\n")
    return tmp_path


def test_anime_drops_unmapped_events_with_a_note(tmp_path: Path) -> None:
    raw = load_raw(_anime_dir(tmp_path), "anime")
    ds = canonicalize(raw)
    assert "dropped 2 events of 1 anime ids that have no row in anime_info.dat" in ds.notes
    assert ds.events.select("user_id", "show_id", "weight", "event_type").rows() == [
        ("1", "1", 9.0, "rating"),
        ("1", "2", 1.0, "completed"),
    ]
    a, c = ds.shows.rows(named=True)
    assert (a["title"], a["genres"], a["episodes"]) == ("A&B", ["Action", "Drama"], 12)
    assert (c["genres"], c["episodes"], c["type"]) == ([], None, "Movie")


def test_anime_missing_column_names_file_and_column(tmp_path: Path) -> None:
    _anime_dir(tmp_path, info_header="anime_ids\tname\tgenres\ttype")
    with pytest.raises(DataError) as err:
        load_raw(tmp_path, "anime")
    assert "anime_info.dat, column 'genre': required column missing" in str(err.value)


def test_streaming_not_utf8_names_file_and_row(tmp_path: Path) -> None:
    write(
        tmp_path / "hulu_titles.csv",
        b"\xef\xbb\xbfshow_id,type,title\r\ns1,Movie,Caf\xc3\xa9\r\ns2,Movie,Caf\xe9\r\n",
    )
    with pytest.raises(DataError) as err:
        load_raw(tmp_path, "streaming-catalogue")
    assert "hulu_titles.csv" in str(err.value) and "(line 3)" in str(err.value)
    assert str(err.value).endswith("rows 2")


def test_streaming_small_catalogue(tmp_path: Path) -> None:
    header = (
        "show_id,type,title,director,cast,country,date_added,release_year,rating,duration,"
        "listed_in,description\r\n"
    )
    write(
        tmp_path / "netflix_titles.csv",
        "\ufeff" + header + 's1,TV Show,X,,"Ann Lee, Bo Ek",,"May 2, 2020",2020,TV-MA,'
        '2 Seasons,"Dramas, Thrillers",d\r\n',
    )
    write(
        tmp_path / "disney_plus_titles.csv",
        header + "s1,Movie,Y,Ann Lee,ANN LEE,,,1999,PG,90 min,Family,e\r\n",
    )
    ds = canonicalize(load_raw(tmp_path, "streaming-catalogue"))
    assert ds.shows.select("show_id", "seasons", "runtime_minutes", "premiered").rows() == [
        ("netflix:s1", 2, None, date(2020, 5, 2)),
        ("disney_plus:s1", None, 90.0, date(1999, 1, 1)),
    ]
    assert ds.shows["genres"].to_list()[0] == ["Dramas", "Thrillers"]
    assert sorted(ds.credits.select("show_id", "person_id", "role").rows()) == [
        ("disney_plus:s1", "ann-lee", "actor"),
        ("disney_plus:s1", "ann-lee", "director"),
        ("netflix:s1", "ann-lee", "actor"),
        ("netflix:s1", "bo-ek", "actor"),
    ]


def test_streaming_duplicate_id_names_row_in_its_file(tmp_path: Path) -> None:
    write(tmp_path / "netflix_titles.csv", "show_id,type,title\ns1,Movie,A\ns2,Movie,B\n")
    write(tmp_path / "hulu_titles.csv", "show_id,type,title\ns1,Movie,A\ns2,Movie,B\ns1,Movie,C\n")
    with pytest.raises(DataError) as err:
        load_raw(tmp_path, "streaming-catalogue")
    assert str(err.value) == (
        f"{tmp_path / 'hulu_titles.csv'}, column 'show_id': duplicated show_id; rows 1, 3"
    )


def test_tvmaze_bad_json_and_missing_field(tmp_path: Path) -> None:
    write(tmp_path / "tvmaze_shows.json", '[{"id": 1, "name": "A"},\n{"id": 2,]')
    with pytest.raises(DataError) as err:
        load_raw(tmp_path, "tvmaze")
    assert "tvmaze_shows.json: not valid JSON" in str(err.value) and "rows 2" in str(err.value)
    write(tmp_path / "tvmaze_shows.json", '[{"id": 1, "name": "A"}, {"id": 2}]')
    with pytest.raises(DataError) as err:
        load_raw(tmp_path, "tvmaze")
    assert "column 'name': missing or blank field" in str(err.value) and "rows 2" in str(err.value)
    write(tmp_path / "tvmaze_shows.json", '[{"id": 1, "name": "A"}, {"id": 2, "name": " \\t "}]')
    with pytest.raises(DataError, match=r"column 'name': missing or blank field.*rows 2\b"):
        load_raw(tmp_path, "tvmaze")  # spaces: named as TVmaze's field, not as column 'title'


def test_tvmaze_scale_ends_and_nulls_are_kept(tmp_path: Path) -> None:
    """The ends of TVmaze's scales (rating 0-10, weight 0-100, 100.0 as a whole number) and
    null fields are accepted as they are; only values off the scale are refused."""
    shows = [
        {"id": 1, "name": "A", "rating": {"average": 0}, "weight": 0, "network": None},
        {"id": 2, "name": "B", "rating": {"average": 10}, "weight": 100.0, "genres": "Drama"},
        {"id": 3, "name": "C", "rating": None, "weight": None, "externals": {"imdb": None}},
    ]
    write(tmp_path / "tvmaze_shows.json", json.dumps(shows))
    ds = canonicalize(load_raw(tmp_path, "tvmaze"))
    extras = [json.loads(a) for a in ds.shows["attributes"]]
    assert [(e["rating"], e["weight"]) for e in extras] == [
        ("0.0", "0"),
        ("10.0", "100"),
        (None, None),
    ]
    assert ds.shows["genres"].to_list() == [[], ["Drama"], []]


def test_tvmaze_whole_float_ids_read_as_integers(tmp_path: Path) -> None:
    """A whole float id is the integer it holds, as TVmaze's whole weights are: show 2.0 is
    show "2" (it was "2.0"), its episodes given show id 2.0 or 2 are counted for it, and the
    same show written 2 and 2.0 is a duplicated id."""
    shows = [{"id": 1, "name": "A"}, {"id": 2.0, "name": "B"}]
    episodes = [{"show_id": 2.0, "season": 1}, {"show": {"id": 2}, "season": 2}]
    write(tmp_path / "tvmaze_shows.json", json.dumps(shows))
    write(tmp_path / "tvmaze_episodes.json", json.dumps(episodes))
    ds = canonicalize(load_raw(tmp_path, "tvmaze"))
    assert ds.shows.select("show_id", "seasons", "episodes").rows() == [
        ("1", None, None),
        ("2", 2, 2),
    ]
    write(tmp_path / "tvmaze_shows.json", json.dumps([*shows, {"id": 2, "name": "C"}]))
    with pytest.raises(DataError, match=r"column 'show_id': duplicated show_id; rows 2, 3"):
        canonicalize(load_raw(tmp_path, "tvmaze"))


# ---- contract format: bad input ------------------------------------------------------------
SHOWS_OK = "show_id,title\na,Alpha\nb,Beta\nc,Gamma\n"
EVENTS_OK = "user_id,show_id,event_timestamp\nu1,a,2024-03-01T20:15:00Z\nu2,b,1709324100\n"


@pytest.mark.parametrize(
    ("shows", "events", "file", "expected"),
    [
        pytest.param(
            SHOWS_OK,
            "user_id,show_id\nu1,a\n",
            "events.csv",
            r"column 'event_timestamp': required column missing",
            id="missing-column",
        ),
        pytest.param(
            SHOWS_OK,
            "user_id,show_id,event_timestamp\nu1,a,2024-03-01\nu2,b,last tuesday\n",
            "events.csv",
            r"column 'event_timestamp': unparsable timestamp.*; rows 2;",
            id="bad-timestamp",
        ),
        pytest.param(
            "show_id,title\na,Alpha\nb,Beta\n,Gamma\n",
            EVENTS_OK,
            "shows.csv",
            r"column 'show_id': empty id; rows 3$",
            id="empty-show-id",
        ),
        pytest.param(
            "show_id,title\na,Alpha\nb,Beta\na,Again\n",
            EVENTS_OK,
            "shows.csv",
            r"column 'show_id': duplicated show_id; rows 1, 3;",
            id="duplicated-show-id",
        ),
        pytest.param(
            SHOWS_OK,
            "user_id,show_id,event_timestamp\nu1,a,2024-03-01\nu1,zz,2024-03-02\n",
            "events.csv",
            r"column 'show_id': events for shows that are not in the shows table; rows 2;",
            id="unknown-show",
        ),
        pytest.param(
            b"show_id,title\na,Alpha\nb,Caf\xe9\n",
            EVENTS_OK,
            "shows.csv",
            r"not UTF-8 at byte \d+ \(line 3\).*; rows 2$",
            id="not-utf8",
        ),
        pytest.param(SHOWS_OK, "", "events.csv", r"the file is empty", id="empty-file"),
        pytest.param(
            SHOWS_OK,
            "user_id,show_id,event_timestamp\n",
            "events.csv",
            r"has a header but no rows",
            id="header-only",
        ),
    ],
)
def test_contract_bad_input(
    tmp_path: Path, shows: str | bytes, events: str, file: str, expected: str
) -> None:
    write(tmp_path / "shows.csv", shows)
    write(tmp_path / "events.csv", events)
    with pytest.raises(DataError) as err:
        canonicalize(load_raw(tmp_path, "contract"))
    text = str(err.value)
    assert text.startswith(str(tmp_path / file)), text
    assert re.search(expected, text), text


def test_contract_good_input(tmp_path: Path) -> None:
    write(tmp_path / "shows.csv", SHOWS_OK)
    write(tmp_path / "events.csv", EVENTS_OK)
    ds = canonicalize(load_raw(tmp_path))
    assert ds.events.select("user_id", "show_id").rows() == [("u1", "a"), ("u2", "b")]
    assert ds.events["event_timestamp"].to_list() == [
        datetime(2024, 3, 1, 20, 15, tzinfo=UTC),
        datetime(2024, 3, 1, 20, 15, tzinfo=UTC),
    ]


def test_contract_shows_without_genres_have_empty_lists(tmp_path: Path) -> None:
    """A show without genres (or platforms) has an empty list whether its cell is blank, holds
    separators only or invisible characters, or is a Parquet null: the blank cell was null
    where "|" was [], and every adapter gives []. A table without the column leaves it null
    (not given)."""
    rows = ["a,Alpha,Drama|Crime,Netflix", "b,Beta,,", "c,Gamma,|, | \u200b"]
    write(tmp_path / "shows.csv", "\n".join(["show_id,title,genres,platforms", *rows]) + "\n")
    write(tmp_path / "events.csv", EVENTS_OK)
    ds = canonicalize(load_raw(tmp_path))
    assert ds.shows.select("genres", "platforms").rows() == [
        (["Drama", "Crime"], ["Netflix"]),
        ([], []),
        ([], []),
    ]
    (tmp_path / "shows.csv").unlink()
    genres = pl.Series("genres", [["Drama"], None, [None, " "]], dtype=pl.List(pl.String))
    pl.DataFrame(
        {"show_id": ["a", "b", "c"], "title": ["A", "B", "C"], "genres": genres}
    ).write_parquet(tmp_path / "shows.parquet")
    ds = canonicalize(load_raw(tmp_path))
    assert ds.shows["genres"].to_list() == [["Drama"], [], []]
    assert ds.shows["platforms"].to_list() == [None, None, None]


def test_contract_epoch_placeholders_are_refused_and_iso_before_1970_kept(tmp_path: Path) -> None:
    """Epoch seconds of 0 or less (-1 and 0: an unknown time's placeholder, inside the
    plausible years) are refused, naming the rows and values; a time before 1970 written in
    ISO-8601 is kept like any time in the plausible years."""
    write(tmp_path / "shows.csv", SHOWS_OK)
    events = "user_id,show_id,event_timestamp\nu1,a,{}\nu2,b,{}\nu2,c,1709324100\n"
    write(tmp_path / "events.csv", events.format("1969-12-31T23:59:59Z", "0.5"))
    ds = canonicalize(load_raw(tmp_path))
    assert ds.events["event_timestamp"].to_list()[:2] == [
        datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC),
    ]
    write(tmp_path / "events.csv", events.format("-1", " 0 "))
    with pytest.raises(DataError) as err:
        canonicalize(load_raw(tmp_path))
    assert re.search(
        r"events\.csv, column 'event_timestamp': epoch seconds of 0 or less.*; rows 1, 2; "
        r"values '-1', ' 0 '$",
        str(err.value),
    ), str(err.value)
