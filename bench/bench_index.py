"""Recall and speed of the index factory's structures on large synthetic catalogues: exact
(flat), HNSW, IVF-Flat and IVF-PQ at 10k, 100k and 1M show vectors.

Vectors are clustered (as learned show embeddings are: 1,000 centres, noise 0.3 of the
centre spread), dim 129 (the served ensemble's 128 + its prior column), raw inner product
(the user index's "dot" metric). Queries are 1,000 other draws from the same mixture. Each
structure is built by `build_index` with the settings that select it; recall@k is
`measure_recall` (the figure the nightly job writes to its run record) against brute force.
Search time is the median of `--repeats` batched searches of all queries; memory is the
serialised index size. The flat index at the same size is the baseline of each row.

    python bench/bench_index.py [--sizes 10000,100000,1000000] [--k 10,200] [--json]
        [--device cpu|auto|gpu]

`--device auto` (or `gpu`) builds on the backend the factory picks for this machine: on a CUDA
machine whose faiss has no GPU support, exact search in torch on the GPU; its recall is then
measured against faiss's CPU brute force too, not assumed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import faiss
import numpy as np

from tvrec.index.backends import IndexConfig, build_index, recall_against_brute_force
from tvrec.index.hardware import detect_hardware

DIM, CENTRES, QUERIES, SEED = 129, 1_000, 1_000, 3
STRUCTURES: dict[str, dict[str, Any]] = {
    "flat": {"exact_max": 10**9},
    "hnsw": {"exact_max": 0, "approximate": "hnsw"},
    "ivf": {"exact_max": 0, "approximate": "ivf"},
    "ivfpq": {"exact_max": 0, "memory_budget_mb": 1, "pq_bytes": 32},
}


def mixture(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """n vectors (n, DIM) around the centres."""
    pick = rng.integers(0, len(centres), n)
    x = centres[pick] + 0.3 * rng.standard_normal((n, DIM), dtype=np.float32)
    return x.astype(np.float32)


def one(
    x: np.ndarray, q: np.ndarray, name: str, ks: list[int], repeats: int, device: str = "cpu"
) -> dict[str, Any]:
    cfg = IndexConfig(device=device, metric="dot", **STRUCTURES[name])
    t0 = time.perf_counter()
    index = build_index(x, cfg)
    build = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.search(q, max(ks))
        times.append(time.perf_counter() - t0)
    exact_cpu = name == "flat" and index.backend_name.startswith("faiss-cpu")
    recall = {
        f"recall@{k}": 1.0 if exact_cpu else recall_against_brute_force(index, x, q, k) for k in ks
    }
    return {
        "structure": name,
        "backend": index.backend_name,
        "build_s": round(build, 2),
        "search_ms_per_query": round(1000 * statistics.median(times) / len(q), 4),
        "index_mb": round(faiss.serialize_index(index.to_cpu_faiss()).nbytes / 2**20, 1),
        **{key: None if v is None else round(v, 4) for key, v in recall.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--structures", default=",".join(STRUCTURES))
    ap.add_argument("--k", default="10,200", help="recall depths (top-k and the re-ranked N)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "auto", "gpu"])
    args = ap.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((CENTRES, DIM), dtype=np.float32)
    q = mixture(QUERIES, rng, centres)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        x = mixture(n, rng, centres)
        for name in args.structures.split(","):
            row = {"n": n, **one(x, q, name, ks, args.repeats, args.device)}
            rows.append(row)
            if not args.json:
                print(json.dumps(row), flush=True)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "device": args.device,
        "gpu": detect_hardware().device_name,
    }
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
        return
    print(f"\n{machine}\n")
    print("| shows | structure | build s | search ms/query | index MB | " +
          " | ".join(f"recall@{k}" for k in ks) + " |")  # fmt: skip
    print("|---:|---|---:|---:|---:|" + "---:|" * len(ks))
    for r in rows:
        rec = " | ".join(f"{r[f'recall@{k}']:.3f}" for k in ks)
        print(f"| {r['n']:,} | {r['structure']} | {r['build_s']} | "
              f"{r['search_ms_per_query']} | {r['index_mb']} | {rec} |")  # fmt: skip


if __name__ == "__main__":
    main()
