"""Memory and time of EASE's closed form and the item-kNN cosine, against the textbook code.

Each variant runs in its own process on the same co-occurrence matrix (a seeded random binary
users x shows log, 1 % dense) and reports its wall time and its peak RSS above the process's
RSS just before the call (the kernel's high-water mark, reset first):

- `textbook`: Cholesky inverse on a copy, then `np.triu(P) + np.triu(P, 1).T` and
  `-P / diag(P)` (what models/ease.py did before 2026-12-03);
- `ease_weights`: the solve as it is now, on a copy of G; `ease_weights overwrite`: in G's
  own buffer (the fit's last solve, where G is not needed again);
- `cosine whole` (all columns at once, as before) and `cosine_knn` (blocks of 1,024 columns).

    python bench/bench_ease_solve.py [--shows 7390] [--users 5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import linalg

from tvrec.models.ease import cosine_knn, ease_weights, gram

VARIANTS = ("textbook", "ease_weights", "ease_weights overwrite", "cosine whole", "cosine_knn")


def textbook(G: np.ndarray, l2: float) -> np.ndarray:
    """The closed form as it was written before: four (n, n) temporaries besides G."""
    from threadpoolctl import threadpool_limits

    A = G.copy()
    A[np.diag_indices_from(A)] += l2
    with threadpool_limits(1, "blas"):  # as the solve ran then and runs now
        c, _ = linalg.lapack.dpotrf(A, lower=False, clean=False, overwrite_a=True)
        P, _ = linalg.lapack.dpotri(c, lower=False, overwrite_c=True)
    P = np.triu(P)
    P += np.triu(P, 1).T
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def cosine_whole(G: np.ndarray, neighbours: int) -> sp.csc_matrix:
    """Item-kNN over the whole (n, n) cosine at once, as before."""
    norms = np.sqrt(np.diag(G))
    S = G / (np.outer(norms, norms) + 1e-12)
    np.fill_diagonal(S, 0.0)
    rows = np.argpartition(-S, neighbours - 1, axis=0)[:neighbours]
    vals = np.take_along_axis(S, rows, axis=0)
    cols = np.broadcast_to(np.arange(len(G)), rows.shape)
    return sp.csc_matrix((vals.ravel().astype(np.float32), (rows.ravel(), cols.ravel())))


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(key))
    return int(line.split()[1]) / 1024


def run_one(variant: str, shows: int, users: int) -> dict[str, Any]:
    """One variant in this process: its seconds and peak RSS above the RSS before the call."""
    X = sp.random(users, shows, density=0.01, random_state=0, format="csr", dtype=np.float32)
    X.data[:] = 1.0
    G = gram(X)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    if variant == "textbook":
        textbook(G, 100.0)
    elif variant.startswith("ease_weights"):
        ease_weights(G, 100.0, overwrite=variant.endswith("overwrite"))
    elif variant == "cosine whole":
        cosine_whole(G, 100)
    else:
        cosine_knn(G, 100)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "peak_mib": round(_status_mib("VmHWM") - before)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shows", type=int, default=7390, help="the anime catalogue's size")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one, in-process
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_one(args.variant, args.shows, args.users)))
        return
    results = {}
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", variant, "--shows", str(args.shows)]
        out = subprocess.run([*cmd, "--users", str(args.users)], capture_output=True, text=True)
        out.check_returncode()
        results[variant] = json.loads(out.stdout)
    matrix = args.shows**2 * 8 / 2**20
    if args.json:
        print(json.dumps({"shows": args.shows, "matrix_mib": matrix, "results": results}))
        return
    print(f"{args.shows:,} shows: one dense float64 matrix is {matrix:,.0f} MiB")
    for variant, r in results.items():
        print(f"  {variant:24s} {r['seconds']:6.2f} s  peak +{r['peak_mib']:,} MiB")


if __name__ == "__main__":
    main()
