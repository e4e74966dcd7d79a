"""Data layer of tvrec: dataset contract, adapters, synthetic world and feature builders."""

import importlib
import os
import warnings
from types import ModuleType

# Nothing downloads at run time: no Feast usage telemetry, no model-hub calls.
os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP's threads (torch's, MKL's, FAISS's) spin about 30 us when a parallel region ends, then
# sleep; OpenMP's own default spins up to ~3 ms, holding a core another process's threads wait
# for: training ran 2.6-5x slower beside another training or one busy process. Read as OpenMP
# loads, so set before anything imports torch or faiss; only where the environment leaves the
# wait policy open (OMP_WAIT_POLICY=PASSIVE sleeps at once: the fastest on a shared machine,
# about 5% slower alone; bench/bench_thread_waits.py).
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "3000")

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
    (
        DeprecationWarning,
        r"`torch\.jit\.script` is deprecated",
        "PyG scripts its pooling classes as `torch_geometric.nn` is imported (models/graph.py); "
        "Feast's import turns DeprecationWarnings on ('once'), so the graph stage printed it",
    ),
)


def silence_third_party_warnings() -> None:
    """Install the filters above (idempotent: `warnings.filterwarnings` drops duplicates)."""
    for category, message, _origin in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


silence_third_party_warnings()


def import_quietly(module: str) -> ModuleType:
    """Import `module` with the filters above in front for the import alone: Feast's modules
    put `simplefilter("once", DeprecationWarning)` in front of them as each is imported, so
    a warning raised while importing a library after Feast (PyG's) would otherwise show."""
    with warnings.catch_warnings():
        silence_third_party_warnings()
        return importlib.import_module(module)


def skip_feast_import_typechecks() -> None:
    """Feast wraps about 40 of its functions in typeguard's `@typechecked`, which re-parses
    and recompiles their source each time feast is imported: 2.7 s of the start of every
    process that touches Feast, on 2 cores (`import feast` 5.1 s -> 2.4 s without it). These
    are run-time type assertions on Feast's own calls, which typeguard documents as off in
    production (`python -O` turns them off everywhere). tvrec turns them off for Feast's
    modules only, and only if feast is not imported yet; TVREC_FEAST_TYPECHECKS=1 keeps them.
    Called by the modules that import feast (not here: `tvrec query` never imports typeguard).
    """
    import sys

    if os.environ.get("TVREC_FEAST_TYPECHECKS") == "1" or "feast" in sys.modules:
        return
    try:
        import typeguard
    except ImportError:  # pragma: no cover - feast depends on typeguard
        return
    checked = typeguard.typechecked
    if getattr(checked, "_tvrec_skips_feast", False):
        return

    def typechecked(target=None, **options):  # type: ignore[no-untyped-def]  # typeguard's own signature
        if target is None:
            return lambda t: typechecked(t, **options)
        if getattr(target, "__module__", "").startswith("feast."):
            return target
        return checked(target, **options)

    typechecked._tvrec_skips_feast = True  # type: ignore[attr-defined]
    typeguard.typechecked = typechecked
