"""A seeded synthetic TV world with planted answers, for the demo and for tests.

`generate_world(cfg)` returns a contract `RawDataset` (shows, events, credits, users) and the
`PlantedTruth` that later tests check models against:

* taste clusters: cluster `c` is genre family `GENRE_FAMILIES[c]` (its genres, its description
  vocabulary, its networks, its pool of actors and crew); each user has a main cluster plus a
  little mix of the others, so users of cluster `c` watch mostly shows of cluster `c`;
* near-duplicate pairs: a copy of a show ("... II" / "... Revisited") with the same genres,
  network and platforms, a description with two words swapped and all but one of its actors;
* December shows: Christmas specials whose audience comes almost only in December;
* cold-start shows (premiere in the last 10% of the window) and upcoming shows (premiere after
  the window, no events).

The viewing log has sessions (binges of several episodes of one show in an evening), a weekly
rhythm (more on weekends and evenings), premiere and new-season bumps, a late-December holiday
peak, slow growth of the service, and a power law of popularity within each cluster. No event
falls before its show's premiere.

Catalogue-sized work (titles, descriptions, cast) is plain Python; everything per event is
vectorised numpy. The same seed gives identical tables.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from .contract import RawDataset
from .errors import ConfigError

DAY_S = 86_400
YEAR_D = 365


# ---- the world's vocabulary -----------------------------------------------------------------
@dataclass(frozen=True)
class GenreFamily:
    """One taste cluster's content: genres, words, networks and production style."""

    name: str
    genres: tuple[str, ...]  # the first is the family's main genre
    vocabulary: tuple[str, ...]  # description words, disjoint across families
    title_nouns: tuple[str, ...]  # disjoint across families, so titles never collide
    networks: tuple[str, ...]  # networks that lean to this family
    show_type: str
    runtimes: tuple[float, ...]  # minutes per episode
    episodes_per_season: tuple[int, int]  # inclusive range
    ratings: tuple[str, ...]
    character: str | None  # None: scripted (named characters); else e.g. "Narrator"
    home_locale: int  # index into LOCALES this family leans to


# (word lists read better as paragraphs than one word a line)
# fmt: off
GENRE_FAMILIES: tuple[GenreFamily, ...] = (
    GenreFamily(
        "crime", ("Crime", "Thriller", "Mystery"),
        ("detective", "murder", "london", "gritty", "heist", "inspector", "forensic", "suspect",
         "alibi", "corruption", "gangster", "precinct", "cartel", "homicide", "informant",
         "evidence", "interrogation", "smuggler", "killer", "prosecutor", "undercover", "ransom",
         "kidnapping", "robbery", "confession", "witness", "mobster", "investigation"),
        ("Precinct", "Alibi", "Verdict", "Informant", "Heist", "Inspector", "Cartel", "Witness",
         "Ledger", "Badge", "Docks", "Ransom", "Suspects", "Confession", "Syndicate"),
        ("Dagger TV", "Channel Noir", "Yard Nine"),
        "Scripted", (45.0, 50.0, 60.0), (6, 10), ("TV-14", "TV-MA"), None, 1,
    ),
    GenreFamily(
        "comedy", ("Comedy", "Family"),
        ("sitcom", "hilarious", "awkward", "roommates", "quirky", "sketch", "neighbours",
         "pranks", "slacker", "misadventures", "banter", "deadpan", "wacky", "hijinks", "silly",
         "chaotic", "slapstick", "cringe", "mishaps", "laughs", "parody", "punchline", "goofy",
         "oddball", "blunders", "sarcastic"),
        ("Flatmates", "Misfits", "Pranksters", "Weekenders", "Oddballs", "Goofballs", "Parents",
         "Interns", "Cousins", "Landlords", "Neighbours", "Roommates", "Slackers", "Mishaps",
         "Hijinks"),
        ("Laugh Network", "Comedy Box", "Giggle Plus"),
        "Scripted", (22.0, 25.0, 30.0), (8, 22), ("TV-PG", "TV-14"), None, 0,
    ),
    GenreFamily(
        "scifi", ("Science-Fiction", "Fantasy", "Adventure"),
        ("spaceship", "alien", "galaxy", "android", "starship", "robot", "wormhole", "planet",
         "cyborg", "dystopian", "quantum", "colony", "asteroid", "interstellar", "clone",
         "laser", "telepathic", "mutant", "timeline", "portal", "wizard", "dragon", "sorcery",
         "prophecy", "spacefaring", "teleport"),
        ("Starship", "Colony", "Wormhole", "Androids", "Galaxy", "Outpost", "Cyborgs",
         "Voyagers", "Dragons", "Sorcerer", "Realm", "Portal", "Clones", "Asteroid",
         "Singularity"),
        ("Nebula", "Orbit TV", "Starlight"),
        "Scripted", (45.0, 50.0, 55.0), (8, 13), ("TV-14", "TV-PG"), None, 0,
    ),
    GenreFamily(
        "nature", ("Documentary", "Nature", "Science"),
        ("wildlife", "ocean", "rainforest", "species", "migration", "predators", "habitat",
         "volcano", "glacier", "ecosystem", "whales", "savanna", "coral", "evolution", "climate",
         "reef", "birds", "insects", "jungle", "desert", "tundra", "naturalist", "footage",
         "biodiversity", "wilderness"),
        ("Oceans", "Wilds", "Reefs", "Glaciers", "Savanna", "Predators", "Migrations",
         "Rainforests", "Volcanoes", "Islands", "Tundra", "Deserts", "Rivers", "Whales",
         "Wetlands"),
        ("Planet Lens", "Discovery Point", "WildEye"),
        "Documentary", (45.0, 50.0, 60.0), (4, 8), ("TV-G", "TV-PG"), "Narrator", 1,
    ),
    GenreFamily(
        "reality", ("Reality", "Food", "Travel"),
        ("contestants", "kitchen", "chef", "recipes", "makeover", "elimination", "judges",
         "cooking", "renovation", "dating", "islanders", "villa", "auditions", "baking",
         "restaurant", "roadtrip", "backpacking", "tasting", "housemates", "confessional",
         "cuisine", "bakers", "passport", "flavours"),
        ("Kitchen", "Bakeoff", "Villa", "Makeover", "Auditions", "Housemates", "Roadtrip",
         "Renovation", "Diner", "Showdown", "Islanders", "Menu", "Dates", "Passport", "Feast"),
        ("RealLife", "Kitchen Channel", "Wanderlust TV"),
        "Reality", (42.0, 45.0, 60.0), (8, 12), ("TV-PG", "TV-14"), "Self", 0,
    ),
    GenreFamily(
        "romance", ("Drama", "Romance"),
        ("romance", "love", "heartbreak", "wedding", "affair", "secrets", "marriage",
         "betrayal", "lovers", "passion", "heiress", "estate", "inheritance", "longing",
         "divorce", "siblings", "courtship", "scandal", "dynasty", "reunion", "soulmates",
         "grief", "forbidden", "matriarch", "engagement"),
        ("Inheritance", "Affair", "Estate", "Vows", "Heartstrings", "Secrets", "Lovers",
         "Heiress", "Reunion", "Promises", "Letters", "Wedding", "Sisters", "Longing",
         "Matriarch"),
        ("Heartline", "Velvet One", "Prestige"),
        "Scripted", (50.0, 55.0, 60.0), (8, 12), ("TV-14", "TV-MA"), None, 3,
    ),
    GenreFamily(
        "kids", ("Children", "Animation", "Anime"),
        ("cartoon", "puppies", "kittens", "playground", "alphabet", "colourful", "bedtime",
         "toys", "dinosaurs", "ninja", "superheroes", "cute", "songs", "preschool", "sidekick",
         "lullaby", "rainbow", "teddy", "kindergarten", "bunny", "treehouse", "counting",
         "crayons", "giggles"),
        ("Puppies", "Treehouse", "Dinosaurs", "Playground", "Rainbows", "Teddies", "Bunnies",
         "Ninjas", "Sidekicks", "Toybox", "Lullabies", "Kittens", "Crayons", "Balloons", "Pals"),
        ("KidZone", "Cartoon Cove", "Tiny Tunes TV"),
        "Animation", (11.0, 12.0, 22.0, 24.0), (20, 26), ("TV-Y", "TV-Y7", "TV-G"), None, 4,
    ),
    GenreFamily(
        "sports", ("Sports", "Competition"),
        ("football", "league", "championship", "coach", "stadium", "tournament", "athletes",
         "playoffs", "boxing", "basketball", "striker", "referee", "racing", "olympics",
         "training", "rivalry", "transfer", "underdog", "trophy", "locker", "quarterback",
         "marathon", "supporters", "cricket", "goalkeeper"),
        ("League", "Stadium", "Playoffs", "Underdogs", "Trophy", "Lockers", "Coaches",
         "Strikers", "Referee", "Rivals", "Champions", "Fans", "Derby", "Racers", "Marathon"),
        ("ArenaSport", "GoalLine", "SportMax"),
        "Sports", (45.0, 60.0, 90.0), (6, 10), ("TV-G", "TV-PG"), "Self", 1,
    ),
    GenreFamily(
        "horror", ("Horror", "Supernatural"),
        ("haunted", "ghost", "demon", "zombie", "vampire", "possessed", "curse", "exorcism",
         "cemetery", "slasher", "werewolf", "occult", "nightmare", "poltergeist", "witch",
         "blood", "creepy", "asylum", "seance", "ritual", "shadows", "undead", "terror",
         "macabre", "coven"),
        ("Haunting", "Ghosts", "Curse", "Asylum", "Cemetery", "Coven", "Undead", "Poltergeist",
         "Seance", "Nightmares", "Vampires", "Werewolves", "Ritual", "Shadows", "Crypt"),
        ("Shiver", "Midnight Channel", "Crypt TV"),
        "Scripted", (42.0, 45.0, 50.0), (6, 10), ("TV-MA", "TV-14"), None, 0,
    ),
    GenreFamily(
        "history", ("History", "War", "Western"),
        ("empire", "medieval", "battle", "soldiers", "frontier", "cowboys", "outlaw",
         "revolution", "queen", "emperor", "rebellion", "ancient", "trenches", "saloon",
         "sheriff", "conquest", "crusade", "viking", "roman", "pharaoh", "victorian", "regiment",
         "colonial", "cavalry", "gunslinger"),
        ("Empire", "Frontier", "Legion", "Regiment", "Rebellion", "Crown", "Vikings", "Pharaohs",
         "Outlaws", "Sheriffs", "Conquest", "Trenches", "Saloon", "Crusaders", "Emperors"),
        ("Chronicle", "Frontier TV", "Heritage"),
        "Scripted", (50.0, 55.0, 60.0), (6, 10), ("TV-14", "TV-MA"), None, 1,
    ),
)
GENERALIST_NETWORKS = ("Meridian", "Apex TV", "Channel 8", "Horizon One")
# every network in a fixed order: family networks first, generalists last
NETWORKS: tuple[str, ...] = (
    *(n for f in GENRE_FAMILIES for n in f.networks), *GENERALIST_NETWORKS,
)
PLATFORMS = ("StreamFlix", "PrimeView", "Castle+", "Hubble", "Peak", "Lumen")
LOCALES = (("English", "US"), ("English", "GB"), ("Spanish", "ES"), ("Korean", "KR"),
           ("Japanese", "JP"), ("French", "FR"), ("German", "DE"))
LOCALE_WEIGHTS = (0.5, 0.18, 0.07, 0.07, 0.06, 0.06, 0.06)

TITLE_ADJECTIVES = (
    "Silent", "Broken", "Golden", "Hidden", "Last", "Lost", "Wild", "Dark", "Bright", "Little",
    "Secret", "Endless", "Midnight", "Northern", "Southern", "Crimson", "Silver", "Hollow",
    "Restless", "Savage", "Gentle", "Final", "First", "Distant", "Burning", "Frozen", "Quiet",
    "Lucky", "Brave", "Bitter", "Sweet", "Wicked", "Royal", "Iron", "Velvet", "Electric",
    "Paper", "Glass", "Stone", "Summer",
)
TITLE_PLACES = (
    "Avalon", "Harbour Bay", "Kingsport", "Redwood", "Eastgate", "Marlow", "Pinecrest",
    "Westfall", "Ashby", "Brightwater", "Northfield", "Stonebridge", "Larkspur", "Fairhaven",
    "Millbrook", "Ravenhill",
)
FIRST_NAMES = (
    "Ava", "Ben", "Chloe", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Isla", "Jack", "Kira",
    "Liam", "Maya", "Noah", "Olivia", "Pablo", "Quinn", "Ruby", "Samir", "Tara", "Umar", "Vera",
    "Will", "Xena", "Yusuf", "Zoe", "Amara", "Bruno", "Carmen", "Dev", "Emil", "Freya", "Gus",
    "Hana", "Ivan", "Jade", "Kofi", "Lena", "Marco", "Nina", "Omar", "Priya", "Rafael", "Sofia",
    "Theo", "Uma", "Victor", "Wren", "Yara", "Zain", "Aiko", "Boris", "Celine", "Dara", "Eli",
    "Fatima", "Gael", "Hiro", "Ines", "Jonah", "Kai", "Leila", "Mateo", "Nadia",
)
LAST_NAMES = (
    "Abbott", "Bauer", "Castillo", "Dimitrov", "Ellis", "Fischer", "Garcia", "Hughes", "Ito",
    "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Patel", "Quist", "Rossi",
    "Santos", "Tanaka", "Underwood", "Varga", "Walsh", "Xu", "Yilmaz", "Zimmer", "Alvarez",
    "Brennan", "Chen", "Duarte", "Eriksen", "Fontaine", "Greene", "Hale", "Ibrahim",
    "Jovanovic", "Kim", "Lindqvist", "Mensah", "Novak", "O'Brien", "Park", "Quiroga", "Reyes",
    "Sato", "Thorne", "Usman", "Volkov", "Whitaker", "Yamada", "Zielinski", "Ashford", "Blake",
    "Costa", "Dunn", "Evans", "Ferreira", "Gallagher", "Horvat", "Ivanova", "Jakobsen", "Kaur",
    "Lowe", "Murphy",
)
# description sentences: {t} title, {g} main genre, {w1}.. family words (numbered in order)
OPENINGS = (
    "{t} is a {g} series about {w1}, {w2} and {w3}.",
    "A tale of {w1} and {w2}: {t} is {g} full of {w3}.",
    "Set among {w1} and {w2}, {t} weaves {w3} into a {g} story.",
    "{t} brings {w1}, {w2} and {w3} to the screen.",
    "In {t}, {w1} collides with {w2} and {w3}.",
    "Part {w1}, part {w2}, {t} is {g} with plenty of {w3}.",
    "Between {w1} and {w2}, {t} finds {w3} in this {g} show.",
    "{t} mixes {w1} with {w2}, then adds {w3}.",
)
MIDDLES = (
    " When {w4} meets {w5}, nothing stays the same.",
    " Expect {w4}, {w5} and {w6}.",
    " Each episode turns on {w4} and {w5}.",
    " Critics praise its {w4} and {w5}.",
    " After {w6}, the {w4} and the {w5} are never the same.",
    " Season after season, {w4} and {w5} keep viewers hooked.",
    " Along the way come {w4}, {w5} and {w6}.",
    " Nobody expects the {w4} or the {w5}.",
)
CLOSING = " Fans of {a} and {b} will not be disappointed."  # the last two words
LEAD_SCRIPTED = " At its heart: {lead}."  # the lead actor's character
LEAD_UNSCRIPTED = " Presented by {lead}."  # the lead presenter's own name
CHRISTMAS_OPENING = "A festive holiday special full of christmas cheer, snow and carols. "
# fmt: on

# ---- the world's dynamics -------------------------------------------------------------------
WEEKDAY_FACTOR = np.array([0.85, 0.85, 0.9, 0.95, 1.1, 1.35, 1.3])  # Monday..Sunday
HOLIDAY_FACTOR = 1.3  # 20 December .. 2 January
WINTER_AMPLITUDE = 0.05  # +-5% seasonal swing, peak mid-January
GROWTH = 0.3  # the service grows 30% over the window
# relative viewing by hour of day, 0h..23h
# fmt: off
WEEKDAY_HOURS = np.array([3, 1.5, 0.7, 0.4, 0.3, 0.4, 0.8, 1.2, 1.2, 1.2, 1.3, 1.5, 2, 2, 1.8,
                          2, 2.5, 3.5, 5.5, 8, 10, 10, 8, 5], dtype=float)
WEEKEND_HOURS = np.array([4, 2.5, 1.2, 0.6, 0.4, 0.4, 0.6, 1.2, 2, 3, 3.5, 4, 4.5, 4.5, 4.5, 4.5,
                          5, 5.5, 6.5, 8.5, 10, 9.5, 8, 6], dtype=float)
# fmt: on
ZIPF_EXPONENT = 0.9  # popularity ~ rank^-0.9 within a cluster
BUMP_HEIGHT = 2.0  # interest right after a premiere/new season is (1 + 2) x the baseline
BUMP_DAYS = 21.0  # ... decaying with this time constant
DECEMBER_OFF_SEASON = 0.01  # a Christmas special's interest outside December
DECEMBER_BOOST = 6.0  # ... and its base popularity, to make it a December hit
WATCHLIST_SIZE = 6  # shows a user keeps coming back to
P_WATCHLIST = 0.55  # share of sessions that continue a watchlist show
BINGE_P = 0.42  # episodes per session ~ geometric(0.42), mean ~2.3
BINGE_MAX = 8
P_COMPLETE = 0.72  # episodes watched to the end (weight 0.9-1.0)


# ---- configuration and truth ----------------------------------------------------------------
@dataclass(frozen=True)
class WorldConfig:
    """Sizes, window and planted structures of a synthetic world."""

    n_users: int = 5000
    n_shows: int = 1500
    n_events: int = 300_000
    n_clusters: int = 8  # taste clusters, cluster c = GENRE_FAMILIES[c]
    start: date = date(2024, 1, 1)
    days: int = 730  # two years of viewing: [start, start + days)
    n_near_duplicate_pairs: int = 20
    n_december_shows: int = 10
    n_cold_start_shows: int = 20  # premiere in the last 10% of the window
    n_upcoming_shows: int = 10  # premiere after the window, zero events
    seed: int = 7

    def __post_init__(self) -> None:
        if not 2 <= self.n_clusters <= len(GENRE_FAMILIES):
            raise ConfigError(f"n_clusters must be 2..{len(GENRE_FAMILIES)}, got {self.n_clusters}")
        if self.n_users < 1 or self.n_events < 0 or self.days < 60:
            raise ConfigError("need n_users >= 1, n_events >= 0 and days >= 60")
        specials = (
            self.n_near_duplicate_pairs,
            self.n_december_shows,
            self.n_cold_start_shows,
            self.n_upcoming_shows,
        )
        if min(specials) < 0:
            raise ConfigError("planted show counts must be >= 0")
        fewest = 2 * self.n_clusters + 2 * self.n_near_duplicate_pairs  # regular shows
        if self.n_regular < fewest:
            planted = sum(specials)  # n_shows - n_regular
            raise ConfigError(
                f"{self.n_shows} shows are too few: the world plants {planted} special shows "
                f"(near-duplicate copies, December, cold-start and upcoming) and needs "
                f"{fewest} regular ones beside them (2 per taste cluster and per near-duplicate "
                f"pair); use at least {planted + fewest}"
            )

    @property
    def n_regular(self) -> int:
        """Shows that are neither copies nor December, cold-start or upcoming shows."""
        return self.n_shows - (
            self.n_near_duplicate_pairs
            + self.n_december_shows
            + self.n_cold_start_shows
            + self.n_upcoming_shows
        )

    @classmethod
    def tiny(cls) -> WorldConfig:
        """The smallest world with every planted structure: 60 users, 40 shows, 1,500 events
        (fewer users than a training step wants; CLI runs in seconds)."""
        return cls(
            n_users=60,
            n_shows=40,
            n_events=1500,
            n_near_duplicate_pairs=2,
            n_december_shows=2,
            n_cold_start_shows=2,
            n_upcoming_shows=2,
        )

    @classmethod
    def small(cls) -> WorldConfig:
        """A world for tests: ~300 users, 200 shows, 15k events."""
        return cls(
            n_users=300,
            n_shows=200,
            n_events=15_000,
            n_near_duplicate_pairs=6,
            n_december_shows=5,
            n_cold_start_shows=6,
            n_upcoming_shows=4,
        )


@dataclass
class PlantedTruth:
    """The answers planted in a world, by id."""

    user_cluster: dict[str, int]
    show_cluster: dict[str, int]
    cluster_genres: dict[int, list[str]]
    near_duplicate_pairs: list[tuple[str, str]]  # (original, copy)
    december_shows: list[str]
    cold_start_shows: list[str]
    upcoming_shows: list[str]

    def to_json(self) -> dict:
        """A JSON-ready dict (cluster keys as strings, pairs as lists)."""
        return {
            "user_cluster": dict(self.user_cluster),
            "show_cluster": dict(self.show_cluster),
            "cluster_genres": {str(k): list(v) for k, v in self.cluster_genres.items()},
            "near_duplicate_pairs": [list(p) for p in self.near_duplicate_pairs],
            "december_shows": list(self.december_shows),
            "cold_start_shows": list(self.cold_start_shows),
            "upcoming_shows": list(self.upcoming_shows),
        }

    @classmethod
    def from_json(cls, d: dict) -> PlantedTruth:
        """The inverse of `to_json`."""
        return cls(
            user_cluster={k: int(v) for k, v in d["user_cluster"].items()},
            show_cluster={k: int(v) for k, v in d["show_cluster"].items()},
            cluster_genres={int(k): list(v) for k, v in d["cluster_genres"].items()},
            near_duplicate_pairs=[(a, b) for a, b in d["near_duplicate_pairs"]],
            december_shows=list(d["december_shows"]),
            cold_start_shows=list(d["cold_start_shows"]),
            upcoming_shows=list(d["upcoming_shows"]),
        )


# ---- shows ----------------------------------------------------------------------------------
REGULAR, DECEMBER, COLD, UPCOMING, COPY = range(5)


@dataclass
class _Shows:
    """The catalogue as parallel arrays over internal show indices [n_shows]."""

    kind: np.ndarray  # REGULAR/DECEMBER/COLD/UPCOMING/COPY
    cluster: np.ndarray
    premiere: np.ndarray  # days since cfg.start (negative: before the window)
    network: np.ndarray  # index into NETWORKS
    original: np.ndarray  # for copies: index of the original show, else -1
    popularity: np.ndarray  # base weight (0 for upcoming shows)
    seasons: np.ndarray
    runtime: np.ndarray  # minutes


def _kinds(cfg: WorldConfig) -> np.ndarray:
    """Show kinds in internal order: regular, December, cold-start, upcoming, copies last."""
    counts = (
        cfg.n_regular,
        cfg.n_december_shows,
        cfg.n_cold_start_shows,
        cfg.n_upcoming_shows,
        cfg.n_near_duplicate_pairs,
    )
    return np.repeat(np.array([REGULAR, DECEMBER, COLD, UPCOMING, COPY]), counts)


def _premieres(cfg: WorldConfig, kind: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Premiere day offsets [n] by kind; the first 2 x n_clusters shows premiere before start."""
    n, d = len(kind), cfg.days
    before = -rng.integers(30, 12 * YEAR_D, n)  # anywhere in the 12 years before the window
    inside = rng.integers(0, int(0.85 * d), n)
    regular = np.where(rng.random(n) < 0.6, before, inside)
    regular[: 2 * cfg.n_clusters] = before[: 2 * cfg.n_clusters]
    cold_lo = math.ceil(0.9 * d)
    cold = rng.integers(cold_lo, max(cold_lo + 1, d - 7), n)
    upcoming = rng.integers(d + 14, d + 180, n)
    december = -rng.integers(YEAR_D, 8 * YEAR_D, n)
    by_kind = {REGULAR: regular, DECEMBER: december, COLD: cold, UPCOMING: upcoming}
    out = np.zeros(n, dtype=np.int64)
    for k, values in by_kind.items():
        out[kind == k] = values[kind == k]
    return out


def _pick_originals(
    cfg: WorldConfig, kind: np.ndarray, premiere: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Regular shows that get a near-duplicate copy: ones that premiered early enough."""
    pool = np.flatnonzero((kind == REGULAR) & (premiere <= 0.3 * cfg.days))
    pool = pool[pool >= 2 * cfg.n_clusters]  # keep the per-cluster anchors out of it
    if len(pool) < cfg.n_near_duplicate_pairs:
        raise ConfigError("too few early regular shows to copy into near-duplicate pairs")
    return np.sort(rng.choice(pool, cfg.n_near_duplicate_pairs, replace=False))


def _networks(cluster: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """75% of shows air on one of their family's 3 networks (weights 5:3:2), 25% elsewhere."""
    n = len(cluster)
    own = cluster * 3 + rng.choice(3, n, p=[0.5, 0.3, 0.2])
    general = 3 * len(GENRE_FAMILIES) + rng.integers(0, len(GENERALIST_NETWORKS), n)
    return np.where(rng.random(n) < 0.75, own, general)


def _popularity(cluster: np.ndarray, kind: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zipf weights over a random rank within each cluster [n]."""
    order = np.lexsort((rng.random(len(cluster)), cluster))  # by cluster, random within
    sorted_cluster = cluster[order]
    first = np.searchsorted(sorted_cluster, sorted_cluster, side="left")
    rank = np.empty(len(cluster), dtype=np.int64)
    rank[order] = np.arange(len(cluster)) - first
    pop = (rank + 1.0) ** -ZIPF_EXPONENT
    pop[kind == DECEMBER] *= DECEMBER_BOOST
    pop[kind == UPCOMING] = 0.0
    return pop


def _seasons(
    cfg: WorldConfig, premiere: np.ndarray, kind: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One season a year from the premiere, until the run (1 + geometric) ends."""
    run = np.minimum(rng.geometric(0.3, len(premiere)), 10)
    aired = np.maximum((cfg.days - premiere) // YEAR_D + 1, 1)
    seasons = np.minimum(run, aired)
    seasons[kind == UPCOMING] = 1
    return seasons.astype(np.int64)


def _plan_shows(cfg: WorldConfig, rng: np.random.Generator) -> _Shows:
    """Kinds, clusters, premieres, networks and popularity of every show (copies follow
    their originals)."""
    kind = _kinds(cfg)
    n = len(kind)
    share = rng.dirichlet(np.full(cfg.n_clusters, 6.0))  # cluster sizes vary a little
    cluster = rng.choice(cfg.n_clusters, n, p=share)
    cluster[: 2 * cfg.n_clusters] = np.tile(np.arange(cfg.n_clusters), 2)
    premiere = _premieres(cfg, kind, rng)
    network = _networks(cluster, rng)
    original = np.full(n, -1)
    copies = np.flatnonzero(kind == COPY)
    original[copies] = _pick_originals(cfg, kind, premiere, rng)
    src = original[copies]
    cluster[copies], network[copies] = cluster[src], network[src]
    # the copy (a reboot/sequel) premieres 6+ months after its original, before 60% of the window
    lo = np.maximum(premiere[src] + 180, -3 * YEAR_D)
    hi = np.maximum(lo + 1, int(0.6 * cfg.days))
    premiere[copies] = rng.integers(lo, hi)
    popularity = _popularity(cluster, kind, rng)
    popularity[copies] = popularity[src] * rng.uniform(0.6, 1.0, len(copies))
    seasons = _seasons(cfg, premiere, kind, rng)
    runtime = np.array([rng.choice(GENRE_FAMILIES[c].runtimes) for c in cluster])
    runtime[kind == DECEMBER] = 60.0
    runtime[copies] = runtime[src]
    return _Shows(kind, cluster, premiere, network, original, popularity, seasons, runtime)


# ---- show text ------------------------------------------------------------------------------
def _title_pool(family: GenreFamily, n: int) -> list[str]:
    """Candidate titles of a family, short forms first; longer forms only when needed."""
    pool = [
        ("The " if (i + j) % 3 == 0 else "") + f"{a} {noun}"
        for i, a in enumerate(TITLE_ADJECTIVES)
        for j, noun in enumerate(family.title_nouns)
    ]
    if n > len(pool) // 2:
        pool += [f"{noun} of {p}" for noun in family.title_nouns for p in TITLE_PLACES]
    if n > len(pool) // 2:
        pool += [
            f"{a} {noun} of {p}"
            for a in TITLE_ADJECTIVES
            for noun in family.title_nouns
            for p in TITLE_PLACES
        ]
    if n > len(pool):
        raise ConfigError(f"cannot make {n} unique titles for the {family.name} family")
    return pool


def _titles(shows: _Shows, rng: np.random.Generator) -> list[str]:
    """Unique titles [n]; copies and Christmas specials derive theirs from a base title."""
    titles = [""] * len(shows.kind)
    for c in np.unique(shows.cluster):
        idx = np.flatnonzero((shows.cluster == c) & (shows.kind != COPY))
        pool = _title_pool(GENRE_FAMILIES[c], len(idx))
        for i, p in zip(idx, rng.choice(len(pool), len(idx), replace=False), strict=True):
            titles[i] = pool[p]
    for i in np.flatnonzero(shows.kind == DECEMBER):
        titles[i] += " Christmas Special"
    for i in np.flatnonzero(shows.kind == COPY):
        titles[i] = titles[shows.original[i]] + (" II" if rng.random() < 0.5 else " Revisited")
    return titles


def _n_words(opening: int, middle: int, closing: bool) -> int:
    """Family words a description plan uses (slots are numbered w1, w2, ... in order)."""
    return 3 + MIDDLES[middle].count("{w") + (2 if closing else 0)


def _render(
    plan: tuple[int, int, bool], title: str, fam: GenreFamily, words: list[str], lead: str
) -> str:
    opening, middle, closing = plan
    slots = {f"w{k + 1}": w for k, w in enumerate(words)}
    text = OPENINGS[opening].format(t=title, g=fam.genres[0].lower(), **slots)
    text += MIDDLES[middle].format(**slots)
    if closing:
        text += CLOSING.format(a=words[-2], b=words[-1])
    return text + (LEAD_SCRIPTED if fam.character is None else LEAD_UNSCRIPTED).format(lead=lead)


def _descriptions(
    shows: _Shows, titles: list[str], leads: list[str], rng: np.random.Generator
) -> list[str]:
    """5-8 words of the family vocabulary in composed sentences plus the lead's name; a copy
    swaps two of its original's words."""
    plans: list[tuple[tuple[int, int, bool], list[str]]] = []
    out: list[str] = []
    for i, c in enumerate(shows.cluster):
        fam = GENRE_FAMILIES[c]
        if shows.kind[i] == COPY:
            plan, words = plans[shows.original[i]]
            words = list(words)
            spare = [w for w in fam.vocabulary if w not in words]
            for pos, new in zip(
                rng.choice(len(words), 2, replace=False),
                rng.choice(spare, 2, replace=False),
                strict=True,
            ):
                words[pos] = str(new)
        else:
            plan = (
                int(rng.integers(len(OPENINGS))),
                int(rng.integers(len(MIDDLES))),
                bool(rng.random() < 0.5),
            )
            k = _n_words(*plan)
            words = [str(w) for w in rng.choice(fam.vocabulary, k, replace=False)]
        plans.append((plan, words))
        text = _render(plan, titles[i], fam, words, leads[i])
        out.append(CHRISTMAS_OPENING + text if shows.kind[i] == DECEMBER else text)
    return out


def _genres(shows: _Shows, rng: np.random.Generator) -> list[list[str]]:
    """The family's main genre plus each other family genre with p=0.4 (at most 3)."""
    out: list[list[str]] = []
    for i, c in enumerate(shows.cluster):
        if shows.kind[i] == COPY:
            out.append(list(out[shows.original[i]]))
            continue
        fam = GENRE_FAMILIES[c]
        extra = [g for g in fam.genres[1:] if rng.random() < 0.4]
        out.append([fam.genres[0], *extra][:3])
    return out


def _platforms(shows: _Shows, rng: np.random.Generator) -> list[list[str]]:
    """Each network's home platform, plus a second platform for 40% of shows."""
    home = rng.integers(0, len(PLATFORMS), len(NETWORKS))  # [n_networks]
    out: list[list[str]] = []
    for i, net in enumerate(shows.network):
        if shows.kind[i] == COPY:
            out.append(list(out[shows.original[i]]))
            continue
        first = int(home[net])
        plats = [PLATFORMS[first]]
        if rng.random() < 0.4:
            plats.append(PLATFORMS[(first + int(rng.integers(1, len(PLATFORMS)))) % len(PLATFORMS)])
        out.append(plats)
    return out


def _locales(shows: _Shows, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(language, country): mostly US English, each family leaning to its home locale."""
    out: list[tuple[str, str]] = []
    for i, c in enumerate(shows.cluster):
        if shows.kind[i] == COPY:
            out.append(out[shows.original[i]])
            continue
        w = np.array(LOCALE_WEIGHTS)
        w[GENRE_FAMILIES[c].home_locale] += 0.3
        out.append(LOCALES[rng.choice(len(LOCALES), p=w / w.sum())])
    return out


def _shows_frame(
    cfg: WorldConfig, shows: _Shows, show_ids: list[str], leads: list[str], rng: np.random.Generator
) -> pl.DataFrame:
    titles = _titles(shows, rng)
    locales = _locales(shows, rng)
    fams = [GENRE_FAMILIES[c] for c in shows.cluster]
    per_season = np.array(
        [rng.integers(f.episodes_per_season[0], f.episodes_per_season[1] + 1) for f in fams]
    )
    per_season[shows.kind == DECEMBER] = 1  # one special a year
    last_season_end = shows.premiere + YEAR_D * shows.seasons
    status = np.where(
        shows.kind == UPCOMING,
        "In Development",
        np.where(last_season_end < cfg.days, "Ended", "Running"),
    )
    return pl.DataFrame(
        {
            "show_id": show_ids,
            "title": titles,
            "description": _descriptions(shows, titles, leads, rng),
            "genres": _genres(shows, rng),
            "network": [NETWORKS[n] for n in shows.network],
            "platforms": _platforms(shows, rng),
            "premiered": [cfg.start + timedelta(days=int(p)) for p in shows.premiere],
            "type": [f.show_type for f in fams],
            "seasons": shows.seasons,
            "episodes": shows.seasons * per_season,
            "runtime_minutes": shows.runtime,
            "language": [lang for lang, _ in locales],
            "country": [country for _, country in locales],
            "age_rating": [str(rng.choice(f.ratings)) for f in fams],
            "status": status.tolist(),
        },
        schema_overrides={"seasons": pl.Int32, "episodes": pl.Int32, "premiered": pl.Date},
    )


# ---- cast and crew --------------------------------------------------------------------------
@dataclass
class _Pool:
    """A cluster's people: ids into the global person list, casting weights, home networks."""

    actors: np.ndarray
    actor_weight: np.ndarray
    actor_home: np.ndarray  # network index each actor mostly works for
    creators: np.ndarray
    directors: np.ndarray


def _unique_names(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct person names: "First Last", plus middle initials once those run low."""
    simple = len(FIRST_NAMES) * len(LAST_NAMES)
    n_simple = min(n, 3 * simple // 4)
    codes = np.concatenate(
        [  # code = first + F * (last + L * initial), initial 0 = none
            rng.choice(simple, n_simple, replace=False),
            simple + rng.choice(26 * simple, n - n_simple, replace=False),
        ]
    )
    names = []
    for code in rng.permutation(codes):
        rest, first = divmod(int(code), len(FIRST_NAMES))
        initial, last = divmod(rest, len(LAST_NAMES))
        middle = f" {chr(64 + initial)}." if initial else ""
        names.append(f"{FIRST_NAMES[first]}{middle} {LAST_NAMES[last]}")
    return names


def _pools(shows: _Shows, rng: np.random.Generator) -> tuple[list[_Pool], int]:
    """Per-cluster pools: ~1.5 actors per show (so actors recur), a creator/director per 3 shows."""
    pools, next_id = [], 0
    for c in range(int(shows.cluster.max()) + 1):
        members = np.flatnonzero(shows.cluster == c)
        n_act = max(12, math.ceil(1.5 * len(members)))
        n_crew = max(3, math.ceil(len(members) / 3))
        ids = np.arange(next_id, next_id + n_act + 2 * n_crew)
        next_id += len(ids)
        home = shows.network[rng.choice(members, n_act)] if len(members) else np.zeros(n_act, int)
        weight = (1.0 + rng.permutation(n_act)) ** -0.7  # a few prolific actors
        pools.append(
            _Pool(ids[:n_act], weight, home, ids[n_act : n_act + n_crew], ids[n_act + n_crew :])
        )
    return pools, next_id


def _cast_show(
    pool: _Pool, network: int, others: list[_Pool], rng: np.random.Generator
) -> list[int]:
    """4-8 actors, favouring those at home on the show's network; 10% bring in a guest star."""
    k = int(rng.integers(4, 9))
    w = pool.actor_weight * np.where(pool.actor_home == network, 4.0, 1.0)
    actors = [int(a) for a in rng.choice(pool.actors, k, replace=False, p=w / w.sum())]
    if others and rng.random() < 0.1:
        guest_pool = others[int(rng.integers(len(others)))]
        actors[-1] = int(rng.choice(guest_pool.actors))
    return actors


def _recast(actors: list[int], pool: _Pool, rng: np.random.Generator) -> list[int]:
    """A copy keeps all actors but one (never the lead), replaced from the same pool."""
    spare = np.setdiff1d(pool.actors, actors)
    out = list(actors)
    out[int(rng.integers(1, len(out)))] = int(rng.choice(spare))
    return out


def _character(cluster: int, rng: np.random.Generator) -> str:
    fixed = GENRE_FAMILIES[cluster].character
    if fixed is not None:
        return fixed
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _credits_frame(
    shows: _Shows, show_ids: list[str], rng: np.random.Generator
) -> tuple[pl.DataFrame, list[str]]:
    """Credits, and each show's lead for its description: the first actor's character for
    scripted shows, the first actor's own name for presenters."""
    pools, n_people = _pools(shows, rng)
    names = _unique_names(n_people, rng)
    person_ids = _ids("p", n_people, rng.permutation(n_people))
    rows: dict[str, list] = {
        "show_id": [],
        "person_id": [],
        "name": [],
        "role": [],
        "character": [],
    }
    casts: list[list[tuple[int, str | None, str]]] = []
    for i, c in enumerate(shows.cluster):
        pool = pools[c]
        if shows.kind[i] == COPY:
            before = casts[shows.original[i]]
            kept = _recast([p for p, _, r in before if r == "actor"], pool, rng)
            chars = {p: ch for p, ch, r in before if r == "actor"}
            cast = [(p, chars.get(p) or _character(c, rng), "actor") for p in kept]
            cast += [t for t in before if t[2] != "actor"]
        else:
            others = [p for j, p in enumerate(pools) if j != c]
            cast = [
                (a, _character(c, rng), "actor")
                for a in _cast_show(pool, int(shows.network[i]), others, rng)
            ]
            cast += [
                (int(rng.choice(pool.creators)), None, "creator"),
                (int(rng.choice(pool.directors)), None, "director"),
            ]
        casts.append(cast)
        for person, character, role in cast:
            rows["show_id"].append(show_ids[i])
            rows["person_id"].append(person_ids[person])
            rows["name"].append(names[person])
            rows["role"].append(role)
            rows["character"].append(character)
    frame = pl.DataFrame(rows, schema={k: pl.String for k in rows})
    leads = [
        ch if GENRE_FAMILIES[c].character is None else names[p]
        for (p, ch, _), c in zip((cast[0] for cast in casts), shows.cluster, strict=True)
    ]
    return frame.sort("show_id", maintain_order=True), leads


# ---- users ----------------------------------------------------------------------------------
class _GroupSampler:
    """Draws an item of a given group with probability proportional to the item's weight.

    Items of weight 0 are never drawn; callers only ask for groups with `has[g]` true.
    """

    def __init__(self, groups: np.ndarray, weights: np.ndarray, n_groups: int) -> None:
        keep = np.flatnonzero(weights > 0)
        order = keep[np.argsort(groups[keep], kind="stable")]
        self._items = order  # [m] item ids sorted by group
        self._cum = np.cumsum(weights[order])  # [m]
        sorted_groups = groups[order]
        self._first = np.searchsorted(sorted_groups, np.arange(n_groups), "left")  # [n_groups]
        self._last = np.searchsorted(sorted_groups, np.arange(n_groups), "right")
        cum0 = np.concatenate([[0.0], self._cum])
        self._lo, self._hi = cum0[self._first], cum0[self._last]
        self.has = self._last > self._first

    def draw(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(len(groups))
        target = self._lo[groups] + u * (self._hi[groups] - self._lo[groups])
        pos = np.searchsorted(self._cum, target, side="right")
        pos = np.clip(pos, self._first[groups], self._last[groups] - 1)
        return self._items[pos]


@dataclass
class _Tastes:
    """Users' latent tastes [n_users, ...] and the show samplers they draw through."""

    main: np.ndarray  # main cluster
    mix_cum: np.ndarray  # [n_users, K] cumulative cluster mixture
    loyalty: np.ndarray  # chance that a main-cluster pick is on the favourite network
    favourite: np.ndarray  # favourite network
    activity: np.ndarray  # relative number of sessions
    by_cluster: _GroupSampler
    by_network: _GroupSampler  # group = cluster * n_networks + network
    watchlist: np.ndarray  # [n_users, WATCHLIST_SIZE] shows to come back to


def _draw_shows(users: np.ndarray, t: _Tastes, rng: np.random.Generator) -> np.ndarray:
    """One show per entry of `users` [n]: cluster from the taste mix, then popularity."""
    n, k_max = len(users), t.mix_cum.shape[1] - 1
    k = np.minimum((rng.random(n)[:, None] >= t.mix_cum[users]).sum(axis=1), k_max)
    shows = t.by_cluster.draw(k, rng)
    loyal = (k == t.main[users]) & (rng.random(n) < t.loyalty[users])
    groups = k[loyal] * len(NETWORKS) + t.favourite[users[loyal]]
    shows[loyal] = t.by_network.draw(groups, rng)
    return shows


def _tastes(cfg: WorldConfig, shows: _Shows, rng: np.random.Generator) -> _Tastes:
    """Main cluster (65-92% of a user's picks), a Dirichlet mix of the rest, a favourite
    network with 0-50% loyalty, lognormal activity and a watchlist drawn the same way."""
    n, k = cfg.n_users, cfg.n_clusters
    main = rng.choice(k, n, p=rng.dirichlet(np.full(k, 5.0)))
    p_main = rng.uniform(0.65, 0.92, n)
    rest = rng.dirichlet(np.full(k - 1, 0.6), n) * (1 - p_main)[:, None]  # [n, k-1]
    mix = np.zeros((n, k))  # [n, k] cluster mixture: p_main on the main cluster, rest around
    others = (main[:, None] + 1 + np.arange(k - 1)[None, :]) % k  # [n, k-1]
    mix[np.arange(n)[:, None], others] = rest
    mix[np.arange(n), main] = p_main
    by_cluster = _GroupSampler(shows.cluster, shows.popularity, k)
    by_network = _GroupSampler(
        shows.cluster * len(NETWORKS) + shows.network, shows.popularity, k * len(NETWORKS)
    )
    favourite = shows.network[by_cluster.draw(main, rng)]  # a network of the main cluster
    t = _Tastes(
        main,
        np.cumsum(mix, axis=1),
        rng.uniform(0.0, 0.5, n),
        favourite,
        rng.lognormal(0.0, 1.1, n),
        by_cluster,
        by_network,
        np.zeros((n, WATCHLIST_SIZE), dtype=np.int64),
    )
    t.watchlist = _draw_shows(np.repeat(np.arange(n), WATCHLIST_SIZE), t, rng).reshape(
        n, WATCHLIST_SIZE
    )
    return t


def _users_frame(cfg: WorldConfig, user_ids: list[str], rng: np.random.Generator) -> pl.DataFrame:
    """Profile attributes, independent of taste (all signed up before the window)."""
    n = len(user_ids)
    signup = [cfg.start - timedelta(days=int(d)) for d in rng.integers(1, 5 * YEAR_D, n)]
    return pl.DataFrame(
        {
            "user_id": user_ids,
            "country": rng.choice(
                ["US", "GB", "CA", "DE", "ES", "JP", "KR"],
                n,
                p=[0.45, 0.2, 0.1, 0.08, 0.07, 0.05, 0.05],
            ).tolist(),
            "age_band": rng.choice(["18-24", "25-34", "35-44", "45-54", "55+"], n).tolist(),
            "plan": rng.choice(["basic", "standard", "premium"], n, p=[0.3, 0.5, 0.2]).tolist(),
            "signup_date": [d.isoformat() for d in signup],
        }
    )


# ---- events ---------------------------------------------------------------------------------
@dataclass
class _Calendar:
    """Per-day facts of the window [days]."""

    cum_weight: np.ndarray  # cumulative day weights (weekday, holidays, season, growth)
    weekend: np.ndarray
    december: np.ndarray

    def draw_days(self, n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(n) * self.cum_weight[-1]
        return np.minimum(
            np.searchsorted(self.cum_weight, u, side="right"), len(self.cum_weight) - 1
        )


def _calendar(cfg: WorldConfig) -> _Calendar:
    d = np.arange(cfg.days)
    dates = np.datetime64(cfg.start, "D") + d
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    weekday = (cfg.start.weekday() + d) % 7  # Monday = 0
    holiday = ((month == 12) & (dom >= 20)) | ((month == 1) & (dom <= 2))
    weight = (
        WEEKDAY_FACTOR[weekday]
        * np.where(holiday, HOLIDAY_FACTOR, 1.0)
        * (1 + WINTER_AMPLITUDE * np.cos(2 * np.pi * (doy - 15) / 365.25))
        * (1 + GROWTH * d / cfg.days)
    )
    return _Calendar(np.cumsum(weight), weekday >= 5, month == 12)


def _interest(shows: _Shows, cal: _Calendar, show: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Acceptance probability in [0, 1] of watching `show` on `day` (both [n]).

    0 before the premiere; Christmas specials mostly in December; other shows peak right after
    their premiere and each yearly new season, decaying to 1 / (1 + BUMP_HEIGHT).
    """
    since = day - shows.premiere[show]
    season = np.clip(since // YEAR_D, 0, shows.seasons[show] - 1)
    since_season = np.maximum(since - YEAR_D * season, 0)
    bump = (1 + BUMP_HEIGHT * np.exp(-since_season / BUMP_DAYS)) / (1 + BUMP_HEIGHT)
    december = np.where(cal.december[day], 1.0, DECEMBER_OFF_SEASON)
    p = np.where(shows.kind[show] == DECEMBER, december, bump)
    return np.where(since >= 0, p, 0.0)


def _sessions(
    users: np.ndarray, shows: _Shows, t: _Tastes, cal: _Calendar, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(show, day) [n] per session: draw from the tastes and calendar, keep with `_interest`."""
    n = len(users)
    show, day = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    slot_cum = np.cumsum(1.0 / np.arange(1, WATCHLIST_SIZE + 1))
    todo = np.arange(n)
    for _ in range(10_000):
        if not todo.size:
            return show, day
        u = users[todo]
        s = _draw_shows(u, t, rng)
        listed = rng.random(len(u)) < P_WATCHLIST
        slot = np.searchsorted(slot_cum, rng.random(listed.sum()) * slot_cum[-1], side="right")
        s[listed] = t.watchlist[u[listed], slot]
        d = cal.draw_days(len(u), rng)
        ok = rng.random(len(u)) < _interest(shows, cal, s, d)
        show[todo[ok]], day[todo[ok]] = s[ok], d[ok]
        todo = todo[~ok]
    raise RuntimeError("session sampling did not converge")  # cannot happen: p >= 1/3


def _session_lengths(n_events: int, rng: np.random.Generator) -> np.ndarray:
    """Episodes per session, summing to exactly n_events."""
    if n_events == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.minimum(rng.geometric(BINGE_P, n_events), BINGE_MAX)
    cum = np.cumsum(lengths)
    n_sessions = int(np.searchsorted(cum, n_events)) + 1
    lengths = lengths[:n_sessions]
    lengths[-1] -= int(cum[n_sessions - 1]) - n_events
    return lengths


def _session_starts(cal: _Calendar, day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seconds since the window start [n]: an evening-heavy hour, weekends more by day."""
    n = len(day)
    wd = np.searchsorted(np.cumsum(WEEKDAY_HOURS), rng.random(n) * WEEKDAY_HOURS.sum(), "right")
    we = np.searchsorted(np.cumsum(WEEKEND_HOURS), rng.random(n) * WEEKEND_HOURS.sum(), "right")
    hour = np.where(cal.weekend[day], we, wd)
    return day * DAY_S + hour * 3600 + rng.integers(0, 3600, n)


def _events_frame(
    cfg: WorldConfig,
    shows: _Shows,
    t: _Tastes,
    show_ids: list[str],
    user_ids: list[str],
    rng: np.random.Generator,
) -> pl.DataFrame:
    cal = _calendar(cfg)
    lengths = _session_lengths(cfg.n_events, rng)  # [S]
    users = np.searchsorted(np.cumsum(t.activity), rng.random(len(lengths)) * t.activity.sum())
    users = np.minimum(users, cfg.n_users - 1)
    show, day = _sessions(users, shows, t, cal, rng)
    start = _session_starts(cal, day, rng)
    seg = np.repeat(np.arange(len(lengths)), lengths)  # [E] session of each event
    first = np.cumsum(lengths) - lengths  # [S] index of each session's first event
    complete = rng.random(len(seg)) < P_COMPLETE
    weight = np.round(
        np.where(complete, rng.uniform(0.9, 1.0, len(seg)), rng.uniform(0.1, 0.9, len(seg))), 3
    )
    watch = np.round(weight * shows.runtime[show[seg]] * 60, 1)
    step = np.ceil(watch) + rng.integers(30, 300, len(seg))  # episode, then a short break
    before = np.cumsum(step) - step
    offset = before - before[first][seg]  # seconds since the session start
    # a binge that would run past the window's end starts earlier instead (by hours at most;
    # every watchable show premiered a week or more before the end, so premieres still hold)
    end = np.maximum.reduceat(offset + watch, first) if len(seg) else np.zeros(0)
    overflow = np.maximum(start + end - cfg.days * DAY_S + 1, 0)
    secs = (start - overflow)[seg] + offset
    epoch_s = (cfg.start - date(1970, 1, 1)).days * DAY_S
    return pl.DataFrame(
        {
            "user_id": pl.Series(user_ids).gather(users[seg]),
            "show_id": pl.Series(show_ids).gather(show[seg]),
            "event_timestamp": pl.Series((epoch_s + secs.astype(np.int64)) * 1_000_000).cast(
                pl.Datetime("us", "UTC")
            ),
            "weight": weight,
            "event_type": pl.repeat("play", len(seg), eager=True, dtype=pl.String),
            "watch_seconds": watch,
        }
    ).sort("event_timestamp", "user_id", "show_id", maintain_order=True)


# ---- the world ------------------------------------------------------------------------------
def _ids(prefix: str, n: int, order: np.ndarray) -> list[str]:
    """Zero-padded ids; item i gets number order[i] + 1 (a permutation hides internal order)."""
    width = len(str(n)) + 1
    return [f"{prefix}{int(o) + 1:0{width}d}" for o in order]


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent random streams per part, so changing one part leaves the others alone."""
    names = ("shows", "text", "credits", "tastes", "users", "events")
    seqs = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(s) for n, s in zip(names, seqs, strict=True)}


def generate_world(cfg: WorldConfig = WorldConfig()) -> tuple[RawDataset, PlantedTruth]:
    """The world's tables (contract layout, canonical types) and its planted truth.

    Shows carry one extra column, `status` (Running/Ended/In Development), and users carry
    country, age_band, plan and signup_date; `canonicalize` folds them into `attributes`.
    """
    rng = _streams(cfg.seed)
    shows = _plan_shows(cfg, rng["shows"])
    show_ids = _ids("s", len(shows.kind), rng["shows"].permutation(len(shows.kind)))
    user_ids = _ids("u", cfg.n_users, np.arange(cfg.n_users))
    tastes = _tastes(cfg, shows, rng["tastes"])
    credits, leads = _credits_frame(shows, show_ids, rng["credits"])
    raw = RawDataset(
        name="synthetic",
        shows=_shows_frame(cfg, shows, show_ids, leads, rng["text"]).sort("show_id"),
        events=_events_frame(cfg, shows, tastes, show_ids, user_ids, rng["events"]),
        credits=credits,
        users=_users_frame(cfg, user_ids, rng["users"]),
        notes=[f"synthetic world: seed {cfg.seed}, {cfg.n_clusters} taste clusters"],
    )
    return raw, _truth(cfg, shows, tastes, show_ids, user_ids)


def _truth(
    cfg: WorldConfig, shows: _Shows, t: _Tastes, show_ids: list[str], user_ids: list[str]
) -> PlantedTruth:
    def ids_of(kind: int) -> list[str]:
        return sorted(show_ids[i] for i in np.flatnonzero(shows.kind == kind))

    copies = np.flatnonzero(shows.kind == COPY)
    return PlantedTruth(
        user_cluster={u: int(c) for u, c in zip(user_ids, t.main, strict=True)},
        show_cluster={s: int(c) for s, c in zip(show_ids, shows.cluster, strict=True)},
        cluster_genres={c: list(GENRE_FAMILIES[c].genres) for c in range(cfg.n_clusters)},
        near_duplicate_pairs=sorted((show_ids[shows.original[i]], show_ids[i]) for i in copies),
        december_shows=ids_of(DECEMBER),
        cold_start_shows=ids_of(COLD),
        upcoming_shows=ids_of(UPCOMING),
    )


def write_world(directory: Path, cfg: WorldConfig = WorldConfig()) -> PlantedTruth:
    """Write shows/events/credits/users as Parquet plus truth.json into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    raw, truth = generate_world(cfg)
    for name in ("shows", "events", "credits", "users"):
        getattr(raw, name).write_parquet(directory / f"{name}.parquet")
    (directory / "truth.json").write_text(json.dumps(truth.to_json(), indent=1))
    return truth
