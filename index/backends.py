"""Nearest-neighbour search over show embeddings, on whatever hardware this machine has.

One factory, `build_index`, picks the backend from the data size, `IndexConfig` and the
detected `Hardware`:

* faiss sees a GPU          -> faiss GPU: flat up to `exact_max` shows, IVF-Flat above
  (faiss has no GPU HNSW, so `approximate` = "hnsw" also becomes IVF-Flat there);
* torch sees CUDA, faiss not -> exact matmul + top-k in torch on the GPU;
* otherwise                 -> faiss CPU: flat up to `exact_max`, HNSW or IVF-Flat above.

Whatever the device, vectors whose full float32 copy would not fit in `memory_budget_mb`
(default: half the memory available as the index is built) get IVF-PQ: `pq_bytes` bytes of
product-quantised code per vector instead of 4 * d. `measure_recall` reports what an
approximate index loses against exact search.

Every backend answers `search(queries, k, exclude)` with `(scores, ids)` where ids are row
positions, best first, padded with -1. With metric "ip" vectors and queries are
L2-normalised, so scores are cosine similarities (higher is better); with "l2" scores are
squared L2 distances (lower is better).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import faiss
import numpy as np
from pydantic import Field

from tvrec.pipelines.config import IndexSettings

from .hardware import Hardware, detect_hardware, pick_profile

if TYPE_CHECKING:
    import torch

# "ip": cosine (vectors and queries L2-normalised); "dot": raw inner product, for models whose
# score is <user, show> with a bias folded into the vectors; "l2": squared distance.
Metric = Literal["ip", "dot", "l2"]
BackendKind = Literal["faiss-cpu", "faiss-gpu", "torch"]
IndexType = Literal["flat", "hnsw", "ivf", "ivfpq"]

GPU_MAX_K = 2048  # faiss GPU k-selection limit, for both k and nprobe
_MIN_POINTS_PER_LIST = 39  # faiss k-means wants >= 39 training points per centroid
_MAX_POINTS_PER_LIST = 256  # ... and samples down to 256 per centroid anyway
_SEED = 1234


class IndexConfig(IndexSettings):
    """How to index show vectors: the user's `[index]` knobs (IndexSettings) and the
    structure's own. On load only device / ef_search / nprobe apply."""

    metric: Metric = "ip"
    hnsw_m: int = Field(32, ge=4, le=256)
    hnsw_ef_construction: int = Field(40, ge=8)
    ivf_nlist: int | None = Field(None, ge=1, description="None: ~4*sqrt(n)")
    gpu_device: int = Field(0, ge=0, description="CUDA ordinal for the GPU backends")
    torch_chunk_mb: int = Field(256, ge=1, description="bound on one torch score block")

    def nlist_for(self, n: int) -> int:
        """IVF list count: the setting, else ~4*sqrt(n) with >= 39 points per list."""
        if self.ivf_nlist is not None:
            return max(1, min(self.ivf_nlist, n))
        return max(1, min(round(4 * math.sqrt(n)), n // _MIN_POINTS_PER_LIST))

    def nprobe_for(self, nlist: int) -> int:
        if self.nprobe is not None:
            return min(self.nprobe, nlist)
        return min(nlist, max(8, nlist // 8))


@dataclass(frozen=True)
class BackendPlan:
    """What the factory decided: which library, which index structure, which device."""

    kind: BackendKind
    index_type: IndexType
    device: str = "cpu"  # "cpu", or a torch device such as "cuda:0"
    gpu_id: int = 0  # faiss GPU ordinal


# ----------------------------------------------------------------------------- protocol


class VectorIndex(ABC):
    """A searchable set of `ntotal` vectors of size `dim`; ids are row positions."""

    backend_name: str = "abstract"
    index_type: IndexType = "flat"  # the search structure: exact, or how it approximates
    max_k: int | None = None  # largest k the backend can search at once (None: unbounded)

    def __init__(self, dim: int, metric: Metric) -> None:
        self._dim = dim
        self._metric: Metric = metric

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> Metric:
        return self._metric

    @property
    @abstractmethod
    def ntotal(self) -> int: ...

    @abstractmethod
    def to_cpu_faiss(self) -> faiss.Index | None:
        """A CPU faiss index with the same vectors (what `save_index` writes)."""

    @abstractmethod
    def _search_raw(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of prepared queries (q, d); 1 <= k <= ntotal (and <= max_k)."""

    def _search_unbounded(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for k above `max_k`; backends with a limit override this."""
        return self._search_raw(queries, k)

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[set[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, k) float32, ids (q, k) int64), best first, -1 ids where too few.

        `exclude[i]` holds row ids query i must never get back; the search fetches
        k + max(len(exclude)) candidates and filters, so k still come back when possible.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = self._prepare_queries(queries)  # (q, d) float32, normalised for "ip"
        if exclude is not None and len(exclude) != len(q):
            raise ValueError(f"exclude has {len(exclude)} sets for {len(q)} queries")
        extra = max((len(s) for s in exclude), default=0) if exclude else 0
        wanted = min(k + extra, self.ntotal)
        if wanted == 0 or len(q) == 0:
            return _padded(len(q), k, self.metric)
        if self.max_k is not None and wanted > self.max_k:
            scores, ids = self._search_unbounded(q, wanted)
        else:
            scores, ids = self._search_raw(q, wanted)
        scores, ids = _ties_by_id(scores, ids, self.metric)
        if extra:
            return _drop_excluded(scores, ids, exclude or [], k, self.metric)
        return _fit(scores, ids, k, self.metric)

    def _prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (q, {self.dim}), got {q.shape}")
        if self.metric == "ip":
            return l2_normalise(q)
        return np.ascontiguousarray(q)

    def __repr__(self) -> str:
        return f"<{self.backend_name} ntotal={self.ntotal} dim={self.dim} metric={self.metric}>"


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); a new C-contiguous float32 array."""
    x = np.array(x, dtype=np.float32, order="C", copy=True)  # (n, d)
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    np.divide(x, norms, out=x, where=norms > 0)
    return x


def _ties_by_id(
    scores: np.ndarray, ids: np.ndarray, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """(q, k') results best first with equal scores in id order (FAISS leaves their order to
    its heap), so a query's answer does not depend on the batch it was searched in: a user
    gets the same list from one process and from any user shard. -1 ids stay last."""
    worse = scores if metric == "l2" else -scores  # ascending = best first
    missing = ids < 0
    order = np.lexsort(
        (np.where(missing, np.iinfo(np.int64).max, ids), np.where(missing, np.inf, worse)), axis=-1
    )  # (q, k')
    return np.take_along_axis(scores, order, -1), np.take_along_axis(ids, order, -1)


def _pad_score(metric: Metric) -> float:
    """Score given to -1 padding: the worst possible under the metric."""
    return math.inf if metric == "l2" else -math.inf


def _padded(nq: int, k: int, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    scores = np.full((nq, k), _pad_score(metric), dtype=np.float32)  # (q, k)
    ids = np.full((nq, k), -1, dtype=np.int64)  # (q, k)
    return scores, ids


def _fit(
    scores: np.ndarray, ids: np.ndarray, k: int, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """Cut or pad (q, k') results to (q, k), with worst-score padding wherever id is -1."""
    out_s, out_i = _padded(len(ids), k, metric)
    width = min(k, ids.shape[1])
    out_i[:, :width] = ids[:, :width]
    out_s[:, :width] = scores[:, :width]
    out_s[out_i < 0] = _pad_score(metric)
    return out_s, out_i


def _drop_excluded(
    scores: np.ndarray,
    ids: np.ndarray,
    exclude: Sequence[set[int]],
    k: int,
    metric: Metric,
) -> tuple[np.ndarray, np.ndarray]:
    """Per query, drop excluded and -1 ids from (q, k') candidates and keep the first k.

    Vectorised: a (q, k') "banned" mask from the exclusion pairs, then a stable sort that
    moves kept candidates to the front in their original (best-first) order.
    """
    q, width = ids.shape
    pair_rows = np.repeat(np.arange(q), [len(b) for b in exclude])  # (n_pairs,)
    pair_ids = np.fromiter((i for b in exclude for i in b), dtype=np.int64, count=len(pair_rows))
    # candidates banned for their own query: match (row, id) pairs through one sorted key
    n = int(max(ids.max(initial=0), pair_ids.max(initial=0))) + 1
    banned_keys = np.sort(pair_rows.astype(np.int64) * n + pair_ids)
    cand_keys = np.arange(q, dtype=np.int64)[:, None] * n + ids  # (q, k')
    pos = np.searchsorted(banned_keys, cand_keys).clip(max=max(len(banned_keys) - 1, 0))
    banned = (ids < 0) | (
        (banned_keys[pos] == cand_keys) if len(banned_keys) else np.zeros_like(ids, bool)
    )
    order = np.argsort(banned, axis=1, kind="stable")[:, :k]  # (q, k) kept first
    out_i = np.take_along_axis(ids, order, axis=1)
    out_s = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    gone = np.take_along_axis(banned, order, axis=1)
    out_i[gone] = -1
    out_s[gone] = _pad_score(metric)
    if out_i.shape[1] < k:  # fewer candidates than k: pad
        pad_s, pad_i = _padded(q, k, metric)
        pad_s[:, :width], pad_i[:, :width] = out_s, out_i
        return pad_s, pad_i
    return out_s, out_i


# ----------------------------------------------------------------------------- backends


class FaissCpuIndex(VectorIndex):
    """A faiss CPU index (flat, HNSW or IVF-Flat)."""

    def __init__(self, index: faiss.Index, metric: Metric | None = None) -> None:
        # faiss stores "ip" and "dot" alike; the caller says which one it is
        super().__init__(index.d, metric or faiss_metric_name(index))
        self._index = index
        self.index_type = faiss_index_type(index)
        self.backend_name = f"faiss-cpu-{self.index_type}"

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def to_cpu_faiss(self) -> faiss.Index:
        return self._index

    def _search_raw(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self._index.search(queries, k)  # (q, k), (q, k)
        return scores, ids


class FaissGpuIndex(VectorIndex):
    """A faiss index cloned onto one GPU (flat or IVF-Flat); needs a faiss-gpu build."""

    max_k = GPU_MAX_K

    def __init__(
        self, cpu_index: faiss.Index, gpu_id: int = 0, metric: Metric | None = None
    ) -> None:
        super().__init__(cpu_index.d, metric or faiss_metric_name(cpu_index))
        if not hasattr(faiss, "StandardGpuResources"):
            raise RuntimeError("this faiss build has no GPU support (install faiss-gpu)")
        kind = faiss_index_type(cpu_index)
        if kind == "hnsw":
            raise ValueError("faiss has no GPU HNSW; keep HNSW indexes on the CPU backend")
        if kind == "ivf":  # the GPU k-selection also bounds nprobe
            ivf = faiss.extract_index_ivf(cpu_index)
            ivf.nprobe = min(int(ivf.nprobe), GPU_MAX_K)
        self._res = faiss.StandardGpuResources()  # must outlive the GPU index
        self._index = faiss.index_cpu_to_gpu(self._res, gpu_id, cpu_index)
        self._cpu_copy: faiss.Index | None = None
        self.index_type = kind
        self.backend_name = f"faiss-gpu-{kind}"

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def to_cpu_faiss(self) -> faiss.Index:
        return faiss.index_gpu_to_cpu(self._index)

    def _search_raw(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = self._index.search(queries, k)  # (q, k), (q, k)
        return scores, ids

    def _search_unbounded(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k > 2048 cannot run on the GPU: answer from a CPU copy, made once."""
        if self._cpu_copy is None:
            self._cpu_copy = self.to_cpu_faiss()
        scores, ids = self._cpu_copy.search(queries, k)
        return scores, ids


class TorchExactIndex(VectorIndex):
    """Exact search as matmul + top-k in torch, in query chunks of bounded memory.

    Used on CUDA machines whose faiss has no GPU support; `device="cpu"` runs it anywhere.
    """

    def __init__(
        self, vectors: np.ndarray, metric: Metric, device: str = "cuda", chunk_mb: int = 256
    ) -> None:
        import torch

        x = np.asarray(vectors, dtype=np.float32)  # (n, d)
        super().__init__(x.shape[1], metric)
        self._device = torch.device(device)
        self._x = torch.from_numpy(np.ascontiguousarray(x)).to(self._device)  # (n, d)
        self._sq_norms = (self._x * self._x).sum(dim=1) if metric == "l2" else None  # (n,)
        self._chunk_bytes = chunk_mb << 20
        self.backend_name = f"torch-exact-{self._device.type}"

    @property
    def ntotal(self) -> int:
        return int(self._x.shape[0])

    def to_cpu_faiss(self) -> faiss.Index:
        index = faiss.IndexFlat(self.dim, faiss_metric(self.metric))
        index.add(np.ascontiguousarray(self._x.cpu().numpy()))
        return index

    def _search_raw(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        rows = max(1, self._chunk_bytes // (4 * max(1, self.ntotal)))  # queries per block
        scores = np.empty((len(queries), k), dtype=np.float32)  # (q, k)
        ids = np.empty((len(queries), k), dtype=np.int64)  # (q, k)
        with torch.inference_mode():
            for start in range(0, len(queries), rows):
                block = torch.from_numpy(queries[start : start + rows]).to(self._device)
                vals, idx = self._topk(block, k)  # (b, k), (b, k)
                scores[start : start + rows] = vals.cpu().numpy()
                ids[start : start + rows] = idx.cpu().numpy()
        return scores, ids

    def _topk(self, block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        sims = block @ self._x.T  # (b, n)
        if self._sq_norms is None:
            return sims.topk(k, dim=1)
        # squared L2 = |q|^2 - 2 q.x + |x|^2, the same quantity faiss reports
        dists = (block * block).sum(dim=1, keepdim=True) - 2 * sims + self._sq_norms  # (b, n)
        vals, idx = dists.topk(k, dim=1, largest=False)
        return vals.clamp_min_(0), idx


# ----------------------------------------------------------------------------- factory


def choose_backend(
    n_items: int, cfg: IndexConfig, hw: Hardware | None = None, dim: int | None = None
) -> BackendPlan:
    """Decide the backend; probes the hardware only when `cfg.device` is not "cpu".
    With `dim`, vectors past the memory budget get IVF-PQ on any device."""
    exact = n_items <= cfg.exact_max
    compressed = dim is not None and not fits_in_memory(n_items, dim, cfg)
    if cfg.device == "cpu":
        return BackendPlan("faiss-cpu", _cpu_type(exact, compressed, cfg))
    hw = hw if hw is not None else detect_hardware()
    if pick_profile(cfg.device, hw) == "cpu":
        return BackendPlan("faiss-cpu", _cpu_type(exact, compressed, cfg))
    if hw.faiss_gpus > 0:
        gpu_id = min(cfg.gpu_device, hw.faiss_gpus - 1)
        kind: IndexType = "ivfpq" if compressed else "flat" if exact else "ivf"
        return BackendPlan("faiss-gpu", kind, f"cuda:{gpu_id}", gpu_id)
    if compressed:  # torch keeps full vectors: faiss CPU codes instead
        return BackendPlan("faiss-cpu", "ivfpq")
    return BackendPlan("torch", "flat", f"cuda:{cfg.gpu_device}", cfg.gpu_device)


def _cpu_type(exact: bool, compressed: bool, cfg: IndexConfig) -> IndexType:
    return "ivfpq" if compressed else "flat" if exact else cfg.approximate


def fits_in_memory(n_items: int, dim: int, cfg: IndexConfig) -> bool:
    """Whether n full float32 vectors fit the budget (default: half the available memory)."""
    if cfg.memory_budget_mb is not None:
        budget = cfg.memory_budget_mb << 20
    else:
        import psutil

        budget = psutil.virtual_memory().available // 2
    return n_items * dim * 4 <= budget


def build_index(
    vectors: np.ndarray, cfg: IndexConfig | None = None, hw: Hardware | None = None
) -> VectorIndex:
    """Index `vectors` (n, d) on the backend `choose_backend` picks for this machine."""
    cfg = cfg or IndexConfig()
    x = _checked_vectors(vectors, cfg.metric)  # (n, d) float32, normalised for "ip"
    return build_from_plan(x, choose_backend(len(x), cfg, hw, dim=x.shape[1]), cfg)


def build_from_plan(vectors: np.ndarray, plan: BackendPlan, cfg: IndexConfig) -> VectorIndex:
    """Index prepared vectors (n, d) exactly as `plan` says (tests use this to pick devices)."""
    x = _checked_vectors(vectors, cfg.metric)  # idempotent for prepared input
    if plan.kind == "torch":
        return TorchExactIndex(x, cfg.metric, device=plan.device, chunk_mb=cfg.torch_chunk_mb)
    cpu_index = _build_cpu_faiss(x, plan.index_type, cfg)
    if plan.kind == "faiss-gpu":
        return FaissGpuIndex(cpu_index, plan.gpu_id, cfg.metric)
    return FaissCpuIndex(cpu_index, cfg.metric)


def place_index(
    cpu_index: faiss.Index,
    cfg: IndexConfig | None = None,
    hw: Hardware | None = None,
    metric: Metric | None = None,
) -> VectorIndex:
    """Wrap a CPU faiss index (e.g. read from disk) on the backend this machine would pick.

    `metric` tells "dot" from "ip" (faiss stores both as inner product); None: from faiss.
    """
    cfg = cfg or IndexConfig()
    kind = faiss_index_type(cpu_index)
    plan = choose_backend(int(cpu_index.ntotal), cfg, hw)
    return place_on_plan(
        cpu_index, BackendPlan(plan.kind, kind, plan.device, plan.gpu_id), cfg, metric
    )


def place_on_plan(
    cpu_index: faiss.Index, plan: BackendPlan, cfg: IndexConfig, metric: Metric | None = None
) -> VectorIndex:
    """Tune a CPU faiss index's search knobs and move it where `plan` says."""
    tune_search(cpu_index, cfg)
    metric = metric or faiss_metric_name(cpu_index)
    if plan.kind == "torch" and faiss_index_type(cpu_index) != "ivfpq":
        vectors = cpu_vectors(cpu_index)  # (n, d), already normalised for "ip"
        return TorchExactIndex(vectors, metric, device=plan.device, chunk_mb=cfg.torch_chunk_mb)
    if plan.kind == "faiss-gpu" and faiss_index_type(cpu_index) != "hnsw":
        return FaissGpuIndex(cpu_index, plan.gpu_id, metric)
    return FaissCpuIndex(cpu_index, metric)  # CPU profile, or HNSW (no GPU version in faiss)


# ----------------------------------------------------------------------------- faiss helpers


def faiss_metric(metric: Metric) -> int:
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def faiss_metric_name(index: faiss.Index) -> Metric:
    if index.metric_type == faiss.METRIC_INNER_PRODUCT:
        return "ip"
    if index.metric_type == faiss.METRIC_L2:
        return "l2"
    raise ValueError(f"unsupported faiss metric type {index.metric_type}")


def faiss_index_type(index: faiss.Index) -> IndexType:
    """flat / hnsw / ivf / ivfpq for the CPU index structures this module builds."""
    if isinstance(index, faiss.IndexPreTransform):  # IVF-PQ over zero-padded vectors
        index = faiss.downcast_index(index.index)
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    raise ValueError(f"unsupported faiss index type {type(index).__name__}")


def tune_search(index: faiss.Index, cfg: IndexConfig) -> None:
    """Apply ef_search (HNSW) or nprobe (IVF) from `cfg` to a CPU index."""
    kind = faiss_index_type(index)
    if kind == "hnsw":
        index.hnsw.efSearch = cfg.ef_search
    elif kind in ("ivf", "ivfpq"):
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = cfg.nprobe_for(int(ivf.nlist))


def cpu_vectors(index: faiss.Index) -> np.ndarray:
    """All stored vectors (n, d) of a CPU index (IVF-PQ: decoded from their codes)."""
    if faiss_index_type(index) in ("ivf", "ivfpq"):
        faiss.extract_index_ivf(index).make_direct_map()
    return index.reconstruct_n(0, int(index.ntotal))


def _checked_vectors(vectors: np.ndarray, metric: Metric) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"vectors must have shape (n, d) with d >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("vectors contain NaN or infinite values")
    return l2_normalise(x) if metric == "ip" else np.ascontiguousarray(x)


def _build_cpu_faiss(x: np.ndarray, index_type: IndexType, cfg: IndexConfig) -> faiss.Index:
    """A filled CPU faiss index of `index_type` over prepared vectors x (n, d)."""
    d = x.shape[1]
    metric = faiss_metric(cfg.metric)
    if index_type == "flat":
        index = faiss.IndexFlat(d, metric)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, metric)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
    elif index_type == "ivf":
        index = _trained_ivf(x, cfg)
    else:
        index = _trained_ivfpq(x, cfg)
    index.add(x)
    tune_search(index, cfg)
    return index


def _trained_ivf(x: np.ndarray, cfg: IndexConfig) -> faiss.IndexIVFFlat:
    """An IVF-Flat index whose coarse k-means is trained on (a sample of) x (n, d)."""
    n, d = x.shape
    nlist = cfg.nlist_for(max(n, 1))
    metric = faiss_metric(cfg.metric)
    index = faiss.IndexIVFFlat(faiss.IndexFlat(d, metric), d, nlist, metric)
    index.cp.spherical = cfg.metric == "ip"  # unit-length centroids for cosine
    index.cp.seed = _SEED
    index.train(_training_sample(x, nlist * _MAX_POINTS_PER_LIST))
    return index


def _trained_ivfpq(x: np.ndarray, cfg: IndexConfig) -> faiss.Index:
    """IVF-PQ over x (n, d): `pq_bytes` sub-quantizers of 8 bits; vectors are zero-padded
    to a multiple of that count first (a faiss transform that queries go through too), so
    any dimension works and inner products and distances are unchanged by the padding."""
    n, d = x.shape
    m = cfg.pq_bytes
    padded = -(-d // m) * m
    nlist = cfg.nlist_for(max(n, 1))
    metric = faiss_metric(cfg.metric)
    ivfpq = faiss.IndexIVFPQ(faiss.IndexFlat(padded, metric), padded, nlist, m, 8, metric)
    ivfpq.cp.spherical = cfg.metric == "ip"
    ivfpq.cp.seed = _SEED
    index: faiss.Index = ivfpq
    if padded != d:
        index = faiss.IndexPreTransform(faiss.RemapDimensionsTransform(d, padded, False), ivfpq)
    # k-means of the coarse lists and of each sub-quantizer's 256 codes
    index.train(_training_sample(x, max(nlist * _MAX_POINTS_PER_LIST, 256 * _MAX_POINTS_PER_LIST)))
    return index


def _training_sample(x: np.ndarray, size: int) -> np.ndarray:
    n = len(x)
    if n <= size:
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(x[np.random.default_rng(_SEED).choice(n, size, replace=False)])


# ----------------------------------------------------------------------------- recall


def measure_recall(
    index: VectorIndex, vectors: np.ndarray, queries: np.ndarray, k: int
) -> float | None:
    """Recall@k of `index` against exact search over the same `vectors` (n, d) for
    `queries` (q, d): the share of the true top-k ids it returns. None for an exact index."""
    if index.index_type == "flat" or not len(queries):
        return None
    return recall_against_brute_force(index, vectors, queries, k)


def recall_against_brute_force(
    index: VectorIndex, vectors: np.ndarray, queries: np.ndarray, k: int
) -> float:
    """`measure_recall` for any index, an exact one included (the GPU benchmark measures
    torch's exact search so rather than taking it for 1.0); `queries` not empty."""
    k = min(k, index.ntotal)
    x = _checked_vectors(vectors, index.metric)  # (n, d) as indexed
    q = index._prepare_queries(queries)  # (q, d)
    _, want = faiss.knn(q, x, k, metric=faiss_metric(index.metric))  # (q, k) brute force
    _, got = index.search(queries, k)  # (q, k)
    hits = sum(len(set(w[w >= 0]) & set(g[g >= 0])) for w, g in zip(want, got, strict=True))
    return hits / max(int((want >= 0).sum()), 1)
