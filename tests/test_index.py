"""The show index: exact and approximate search against known answers, exclusion,
backend choice, the torch backend, and the on-disk store with its manifest checks."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from tvrec.index import (
    BackendPlan,
    Hardware,
    IndexConfig,
    IndexMismatchError,
    ShowIndex,
    TorchExactIndex,
    build_from_plan,
    build_index,
    choose_backend,
    detect_hardware,
    load_index,
    make_show_index,
    pick_profile,
    place_on_plan,
    save_index,
)
from tvrec.index.backends import cpu_vectors, measure_recall
from tvrec.pipelines.errors import ConfigError

CPU = IndexConfig(device="cpu")
NO_GPU = Hardware(has_cuda_torch=False, faiss_gpus=0, device_name=None, cpu_count=2)
TORCH_ONLY = Hardware(has_cuda_torch=True, faiss_gpus=0, device_name="fake", cpu_count=2)
FAISS_GPU = Hardware(has_cuda_torch=True, faiss_gpus=1, device_name="fake", cpu_count=2)
MODEL = {
    "model_name": "two_tower",
    "model_version": "v1",
    "feature_service": "show_features_v1",
    "data_snapshot": "snap-2024-05-01",
    "as_of": "2024-05-01T00:00:00+00:00",
}


def gaussian(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)  # (n, d)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_topk(x: np.ndarray, q: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force reference: (scores (q, k), ids (q, k)) best first."""
    if metric == "ip":
        scores = unit(q) @ unit(x).T  # (q, n) cosine
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    else:
        scores = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # (q, n) squared L2
        ids = np.argsort(scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, axis=1), ids


def recall_at(ids: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(a) & set(b)) for a, b in zip(ids, truth, strict=True)]
    return float(np.mean(hits)) / truth.shape[1]


@pytest.fixture(scope="module")
def big() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20k x 64 random vectors, 200 queries, and their exact top-10 ids."""
    x, q = gaussian(20_000, 64, 0), gaussian(200, 64, 1)
    _, truth = build_index(x, CPU).search(q, 10)
    return x, q, truth


# ----------------------------------------------------------------------------- search


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_flat_search_equals_numpy_topk(metric: str) -> None:
    x, q = gaussian(2_000, 32, 2), gaussian(50, 32, 3)
    index = build_index(x, IndexConfig(device="cpu", metric=metric))
    scores, ids = index.search(q, 10)
    want_scores, want_ids = numpy_topk(x, q, 10, metric)
    assert index.backend_name == "faiss-cpu-flat"
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)


def test_hnsw_recall_vs_exact(big: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, q, truth = big
    index = build_index(x, IndexConfig(device="cpu", exact_max=1_000, approximate="hnsw"))
    _, ids = index.search(q, 10)
    assert index.backend_name == "faiss-cpu-hnsw"
    assert recall_at(ids, truth) >= 0.95


def test_ivf_recall_vs_exact_with_enough_nprobe(
    big: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, q, truth = big
    cfg = IndexConfig(device="cpu", exact_max=1_000, approximate="ivf", ivf_nlist=64, nprobe=48)
    index = build_index(x, cfg)
    _, ids = index.search(q, 10)
    assert index.backend_name == "faiss-cpu-ivf"
    assert recall_at(ids, truth) >= 0.95


def test_exclude_removes_ids_and_still_returns_k() -> None:
    x, q = gaussian(1_000, 16, 4), gaussian(20, 16, 5)
    _, best = numpy_topk(x, q, 30, "ip")  # (20, 30)
    # query i bans its own true top-(i % 7 + 1) plus a few far ids
    exclude = [set(best[i, : i % 7 + 1].tolist()) | {1, 2, 3} for i in range(len(q))]
    _, ids = build_index(x, CPU).search(q, 10, exclude)
    for row, banned in zip(ids, exclude, strict=True):
        assert not banned & set(row.tolist())
        assert (row >= 0).all() and len(set(row.tolist())) == 10
    for i, row in enumerate(ids):  # known answer: the best 10 of the ids not banned
        allowed = [j for j in best[i].tolist() if j not in exclude[i]][:10]
        assert row.tolist() == allowed


def test_exclude_on_hnsw_never_returns_excluded() -> None:
    x, q = gaussian(3_000, 16, 6), gaussian(30, 16, 7)
    index = build_index(x, IndexConfig(device="cpu", exact_max=100))
    _, first = index.search(q, 20)
    exclude = [set(r[:15].tolist()) for r in first]
    _, ids = index.search(q, 10, exclude)
    for row, banned in zip(ids, exclude, strict=True):
        assert not banned & set(row.tolist())
        assert (row >= 0).all()


def test_k_larger_than_index_pads_with_minus_one() -> None:
    x = gaussian(5, 8, 8)
    scores, ids = build_index(x, CPU).search(x[:2], 8)
    assert sorted(ids[0, :5].tolist()) == list(range(5))
    assert (ids[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()


@pytest.mark.parametrize("exact_max", [10_000, 100])  # flat, then HNSW
def test_planted_near_duplicates_are_each_others_nearest(exact_max: int) -> None:
    base = gaussian(600, 32, 9)
    twins = base + 1e-3 * gaussian(600, 32, 10)  # row i + 600 is the twin of row i
    x = np.vstack([base, twins])  # (1200, 32)
    index = build_index(x, IndexConfig(device="cpu", exact_max=exact_max))
    self_ban = [{i} for i in range(len(x))]
    _, ids = index.search(x, 1, self_ban)
    partner = np.r_[np.arange(600, 1200), np.arange(600)]
    np.testing.assert_array_equal(ids[:, 0], partner)


def clustered(n: int, d: int, seed: int, centres: int = 100) -> np.ndarray:
    """Vectors around `centres` directions, as learned show embeddings are (n, d)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)  # (centres, d)
    return c[rng.integers(0, centres, n)] + 0.3 * gaussian(n, d, seed + 1)


def test_ivfpq_beyond_the_memory_budget_keeps_recall_in_a_fraction_of_the_bytes() -> None:
    x, q = clustered(5_000, 129, 10), clustered(200, 129, 10)[::-1].copy()
    cfg = IndexConfig(device="cpu", metric="dot", memory_budget_mb=1, pq_bytes=16)  # x: 2.5 MB
    index = build_index(x, cfg)
    assert index.backend_name == "faiss-cpu-ivfpq" and index.dim == 129  # padded to 144 inside
    codes = faiss.serialize_index(index.to_cpu_faiss()).nbytes
    assert codes < x.nbytes / 4  # 16 bytes + an id per vector against 516
    recall = measure_recall(index, x, q, 10)
    truth = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]  # exact raw inner products
    _, got = index.search(q, 10)
    assert recall == pytest.approx(recall_at(got, truth))
    assert recall >= 0.67  # measured 0.696 (2026-12-01); exact flat would be 1.0
    assert measure_recall(build_index(x, CPU), x, q, 10) is None  # exact: nothing to report


def test_ivfpq_round_trip_and_stored_vectors(tmp_path: Path) -> None:
    x, q = clustered(4_500, 64, 11), gaussian(20, 64, 12)  # 1.1 MB of floats
    cfg = IndexConfig(device="cpu", memory_budget_mb=1, pq_bytes=8)
    built = make_show_index(x, [f"s{i}" for i in range(len(x))], cfg=cfg, **MODEL)
    save_index(built, tmp_path / "idx")
    loaded = load_index(tmp_path / "idx", cfg=cfg)
    assert loaded.index.backend_name == "faiss-cpu-ivfpq"
    np.testing.assert_array_equal(loaded.index.search(q, 10)[1], built.index.search(q, 10)[1])
    decoded = cpu_vectors(loaded.index.to_cpu_faiss())  # (n, d), from the codes
    cosine = (unit(decoded) * unit(x)).sum(1)
    assert decoded.shape == x.shape and np.median(cosine) > 0.9


# ----------------------------------------------------------------------------- factory


def test_factory_picks_faiss_cpu_here() -> None:
    hw = detect_hardware()
    plan = choose_backend(1_000, IndexConfig(), hw)
    if not hw.sees_cuda:
        assert plan == BackendPlan("faiss-cpu", "flat")
        assert build_index(gaussian(10, 4, 0)).backend_name == "faiss-cpu-flat"
    assert choose_backend(100_000, CPU, hw) == BackendPlan("faiss-cpu", "hnsw")


def test_factory_compresses_what_does_not_fit_on_any_device() -> None:
    small = IndexConfig(memory_budget_mb=100)  # 10**6 x 128 floats: 488 MiB
    for hw in (NO_GPU, TORCH_ONLY):
        assert choose_backend(10**6, small, hw, dim=128) == BackendPlan("faiss-cpu", "ivfpq")
    assert choose_backend(10**6, small, FAISS_GPU, dim=128).index_type == "ivfpq"
    assert choose_backend(10**6, small, FAISS_GPU, dim=128).kind == "faiss-gpu"
    assert choose_backend(10**5, small, NO_GPU, dim=128).index_type == "hnsw"  # 49 MiB fits
    assert choose_backend(10**6, small, NO_GPU).index_type == "hnsw"  # no size given


def test_factory_decisions_for_fake_hardware() -> None:
    ivf = IndexConfig(approximate="ivf")
    assert choose_backend(10, IndexConfig(), TORCH_ONLY).kind == "torch"
    assert choose_backend(10**6, IndexConfig(), TORCH_ONLY) == BackendPlan(
        "torch", "flat", "cuda:0", 0
    )
    assert choose_backend(10, IndexConfig(), FAISS_GPU) == BackendPlan(
        "faiss-gpu", "flat", "cuda:0", 0
    )
    assert choose_backend(10**6, IndexConfig(), FAISS_GPU).index_type == "ivf"
    assert choose_backend(10**6, ivf, NO_GPU) == BackendPlan("faiss-cpu", "ivf")
    assert choose_backend(10, CPU, FAISS_GPU).kind == "faiss-cpu"  # forced profile wins


def test_pick_profile() -> None:
    assert pick_profile("auto", NO_GPU) == "cpu"
    assert pick_profile("auto", TORCH_ONLY) == "gpu"
    assert pick_profile("cpu", FAISS_GPU) == "cpu"
    assert pick_profile("gpu", FAISS_GPU) == "gpu"
    with pytest.raises(ConfigError, match="CUDA"):
        pick_profile("gpu", NO_GPU)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_torch_backend_on_cpu_equals_flat(metric: str) -> None:
    x, q = gaussian(2_000, 24, 11), gaussian(300, 24, 12)
    cfg = IndexConfig(metric=metric, torch_chunk_mb=1)  # 1 MiB blocks: ~130 queries each
    plan = dataclasses.replace(choose_backend(len(x), cfg, TORCH_ONLY), device="cpu")
    torch_index = build_from_plan(x, plan, cfg)
    flat = build_index(x, cfg.model_copy(update={"device": "cpu"}))
    exclude = [{int(i)} for i in range(len(q))]
    for ex in (None, exclude):
        t_scores, t_ids = torch_index.search(q, 10, ex)
        f_scores, f_ids = flat.search(q, 10, ex)
        np.testing.assert_array_equal(t_ids, f_ids)
        np.testing.assert_allclose(t_scores, f_scores, rtol=1e-4, atol=1e-4)
    assert isinstance(torch_index, TorchExactIndex)
    assert torch_index.backend_name == "torch-exact-cpu"


def test_loaded_hnsw_placed_on_torch_is_exact(tmp_path: Path) -> None:
    x, q = gaussian(3_000, 16, 13), gaussian(40, 16, 14)
    cfg = IndexConfig(device="cpu", exact_max=100)
    save_index(make_show_index(x, _ids(len(x)), cfg=cfg, **MODEL), tmp_path / "idx")
    cpu_index = load_index(tmp_path / "idx", cfg=cfg).index.to_cpu_faiss()
    torch_index = place_on_plan(cpu_index, BackendPlan("torch", "flat", "cpu"), cfg)
    _, want = numpy_topk(x, q, 10, "ip")
    np.testing.assert_array_equal(torch_index.search(q, 10)[1], want)


def test_importing_index_does_not_import_torch() -> None:
    code = "import tvrec.index, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------------------- store


def _ids(n: int) -> list[str]:
    return [f"show-{i:05d}" for i in range(n)]


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, ShowIndex, np.ndarray]:
    x = gaussian(500, 16, 15)
    show_index = make_show_index(x, _ids(len(x)), cfg=CPU, **MODEL)
    return save_index(show_index, tmp_path / "index"), show_index, x


def test_save_load_round_trip_gives_identical_results(
    saved: tuple[Path, ShowIndex, np.ndarray],
) -> None:
    path, original, x = saved
    q = gaussian(25, 16, 16)
    exclude = [{"show-00001", "not-a-show"}] * len(q)
    loaded = load_index(path, expect={**MODEL, "dim": 16}, cfg=CPU)
    assert loaded.manifest == original.manifest
    assert loaded.ids == original.ids
    assert loaded.search_ids(q, 7, exclude) == original.search_ids(q, 7, exclude)
    got = loaded.search_ids(x[3:4], 1)  # a stored vector finds its own show
    assert got[0][0][0] == "show-00003" and got[0][0][1] == pytest.approx(1.0, abs=1e-5)
    assert all("show-00001" not in [s for s, _ in row] for row in loaded.search_ids(q, 7, exclude))


def test_hnsw_round_trip_identical(tmp_path: Path) -> None:
    x, q = gaussian(2_000, 16, 17), gaussian(30, 16, 18)
    cfg = IndexConfig(device="cpu", exact_max=100, ef_search=64)
    original = make_show_index(x, _ids(len(x)), cfg=cfg, **MODEL)
    loaded = load_index(save_index(original, tmp_path / "i"), cfg=cfg)
    assert loaded.index.backend_name == original.manifest.backend == "faiss-cpu-hnsw"
    assert loaded.search_ids(q, 10) == original.search_ids(q, 10)


def test_save_replaces_previous_index_atomically(
    saved: tuple[Path, ShowIndex, np.ndarray],
) -> None:
    path, _, _ = saved
    x2 = gaussian(40, 16, 19)
    newer = make_show_index(x2, _ids(40), cfg=CPU, **{**MODEL, "model_version": "v2"})
    save_index(newer, path)
    assert load_index(path, expect={"model_version": "v2"}).manifest.n_items == 40
    assert sorted(p.name for p in path.parent.iterdir()) == ["index"]  # no temp dirs left


def test_save_refuses_a_non_index_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    show_index = make_show_index(gaussian(3, 4, 0), _ids(3), cfg=CPU, **MODEL)
    with pytest.raises(ConfigError, match="non-empty directory"):
        save_index(show_index, tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_manifest_mismatch_names_each_field(saved: tuple[Path, ShowIndex, np.ndarray]) -> None:
    path, _, _ = saved
    with pytest.raises(IndexMismatchError) as info:
        load_index(path, expect={"model_version": "v2", "dim": 32, "model_name": "two_tower"})
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert set(info.value.diffs) == {"model_version", "dim"}
    assert "model_version" in message and "'v1'" in message and "'v2'" in message
    assert "dim" in message and "32" in message and "16" in message
    assert "tvrec run" in message and "model_name" not in message


def test_same_time_in_another_spelling_matches(saved: tuple[Path, ShowIndex, np.ndarray]) -> None:
    path, _, _ = saved
    load_index(path, expect={"as_of": "2024-05-01T00:00:00Z", "dim": "16"})
    with pytest.raises(IndexMismatchError, match="as_of"):
        load_index(path, expect={"as_of": "2024-05-02T00:00:00Z"})
    with pytest.raises(ConfigError, match="unknown manifest field"):
        load_index(path, expect={"modle_version": "v1"})


def _truncate_index(path: Path) -> None:
    file = path / "index.faiss"
    file.write_bytes(file.read_bytes()[:100])


CORRUPTIONS = {
    "corrupt": _truncate_index,
    "is missing": lambda p: (p / "ids.json").unlink(),
    "content_hash": lambda p: (p / "ids.json").write_text(json.dumps([*_ids(499), "x"])),
    "row counts": lambda p: (p / "ids.json").write_text(json.dumps(_ids(499))),
    "not a valid index manifest": lambda p: (p / "manifest.json").write_text("{not json"),
    "list of show id": lambda p: (p / "ids.json").write_text('{"a": 1}'),
}


@pytest.mark.parametrize("expected", list(CORRUPTIONS))
def test_missing_and_corrupt_files_raise_config_error(
    saved: tuple[Path, ShowIndex, np.ndarray], expected: str
) -> None:
    path, _, _ = saved
    CORRUPTIONS[expected](path)
    with pytest.raises(ConfigError, match=expected):
        load_index(path)


def test_missing_directory_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no index at .*tvrec run"):
        load_index(tmp_path / "nowhere")


def test_ids_must_match_vectors() -> None:
    with pytest.raises(ValueError, match="ids"):
        make_show_index(gaussian(3, 4, 0), _ids(2), cfg=CPU, **MODEL)
    with pytest.raises(ValueError, match="unique"):
        make_show_index(gaussian(2, 4, 0), ["a", "a"], cfg=CPU, **MODEL)


# ----------------------------------------------------------------------------- GPU only


def _faiss_gpus() -> int:
    return detect_hardware().faiss_gpus


@pytest.mark.skipif(_faiss_gpus() == 0, reason="needs faiss-gpu and a GPU")
def test_faiss_gpu_backend_equals_flat(tmp_path: Path) -> None:
    x, q = gaussian(30_000, 32, 20), gaussian(100, 32, 21)
    for exact_max in (100_000, 1_000):  # GPU flat, then GPU IVF
        cfg = IndexConfig(device="gpu", exact_max=exact_max, ivf_nlist=64, nprobe=64)
        index = build_index(x, cfg)
        assert index.backend_name.startswith("faiss-gpu-")
        _, ids = index.search(q, 10, [{0}] * len(q))
        _, want = build_index(x, CPU).search(q, 10, [{0}] * len(q))
        assert recall_at(ids, want) >= 0.99  # nprobe == nlist: exhaustive, float noise only
        assert not (ids == 0).any()
    show = make_show_index(x, _ids(len(x)), cfg=IndexConfig(device="gpu"), **MODEL)
    loaded = load_index(save_index(show, tmp_path / "g"), cfg=IndexConfig(device="gpu"))
    assert loaded.search_ids(q, 5) == show.search_ids(q, 5)
    assert show.index.search(q, 3_000)[1].shape == (100, 3_000)  # k above the GPU limit


def test_torch_backend_on_cuda_equals_flat() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x, q = gaussian(5_000, 32, 22), gaussian(100, 32, 23)
    cfg = IndexConfig(device="gpu")
    index = build_from_plan(x, BackendPlan("torch", "flat", "cuda:0"), cfg)
    _, want = build_index(x, CPU).search(q, 10)
    assert recall_at(index.search(q, 10)[1], want) >= 0.99


def test_dot_metric_keeps_raw_inner_products(tmp_path: Path) -> None:
    """Models that fold a bias into their vectors need raw inner products, not cosines."""
    from tvrec.index import IndexConfig, load_index, make_show_index, save_index

    rng = np.random.default_rng(5)
    shows = rng.normal(size=(300, 9)).astype(np.float32)  # (n_shows, dim)
    users = rng.normal(size=(7, 9)).astype(np.float32)  # (n_users, dim)
    expected = users @ shows.T  # (n_users, n_shows)
    ids = [f"s{i}" for i in range(300)]
    built = make_show_index(
        shows,
        ids,
        model_name="m",
        model_version="v",
        feature_service="f",
        data_snapshot="d",
        as_of="2024-01-01T00:00:00+00:00",
        cfg=IndexConfig(metric="dot", device="cpu"),
    )
    save_index(built, tmp_path / "idx")
    for index in (built, load_index(tmp_path / "idx", cfg=IndexConfig(device="cpu"))):
        scores, rows = index.index.search(users, 5)
        np.testing.assert_array_equal(rows, np.argsort(-expected, axis=1)[:, :5])
        np.testing.assert_allclose(scores, np.sort(expected, axis=1)[:, ::-1][:, :5], rtol=1e-5)
