"""Data layer of tvrec: dataset contract, adapters, synthetic world and feature builders."""

import os
import warnings

# Nothing downloads at run time: no Feast usage telemetry, no model-hub calls.
os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Warnings third-party libraries raise about each other or about our use of them that a
# `tvrec` user can do nothing about. Each is matched narrowly (its message, and its category),
# so any other warning still shows. (category, message regex, where it comes from)
THIRD_PARTY_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (
        DeprecationWarning,
        r"fetch_(arrow_table|record_batch|arrow_reader)\(\) is deprecated",
        "ibis calls DuckDB APIs that DuckDB 2 deprecates, in Feast's stock DuckDB offline store",
    ),
    (
        UserWarning,
        r"Arrow output on a DB-API result makes an extra copy",
        "DuckDB 2 on `con.execute(sql).to_arrow_table()` (pipelines/feast_offline.py)",
    ),
)


def silence_third_party_warnings() -> None:
    """Install the filters above (idempotent: `warnings.filterwarnings` drops duplicates)."""
    for category, message, _origin in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


silence_third_party_warnings()
