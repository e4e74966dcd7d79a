"""MTTV, the multimodal transformer, on the planted synthetic world.

One model is trained on the small world as of the day the first planted cold-start show
premieres, so those shows have no viewer in its training set. It must find the planted
near-duplicates from content, score a cold-start show for the users of its taste cluster,
answer a text query with the right genre family through its saved text tower, recover the
genre families as genre clusters, export to ONNX exactly, and survive save/load. Checkpoint
resume and the GPU profile's fine-tuning path (run on CPU, a couple of steps) are checked on
their own small runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from tvrec.jobs.train import load_model, training_data
from tvrec.models.base import TrainingData
from tvrec.models.content import ShowTensors, load_show_content
from tvrec.models.multimodal import CHECKPOINT, MultimodalConfig, MultimodalModel
from tvrec.models.runtime import Runtime
from tvrec.models.text_tower import encode_query, load_encoder, resolve_encoder
from tvrec.pipelines.synthetic import GENRE_FAMILIES, PlantedTruth
from tvrec.pipelines.workdir import Workdir

SERVICE = "multimodal_v1"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """These models are small: on a shared 2-core machine one intra-op thread is several
    times faster than two fighting other jobs for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(built_workdir: Workdir) -> TrainingData:
    return training_data(built_workdir, SERVICE)


@pytest.fixture(scope="module")
def cold_data(data: TrainingData, built_workdir: Workdir, truth: PlantedTruth) -> TrainingData:
    """The training set as of the first cold-start premiere (every row strictly before it,
    each already joined with its features point in time)."""
    shows = pd.read_parquet(built_workdir.lake / "shows.parquet").set_index("show_id")
    first = min(shows.loc[truth.cold_start_shows, "premiered"])
    cut = datetime(first.year, first.month, first.day, tzinfo=UTC)
    frame = data.frame[data.frame["event_timestamp"] < cut]
    return dataclasses.replace(data, frame=frame, as_of=cut)


@pytest.fixture(scope="module")
def model(cold_data: TrainingData, tmp_path_factory: pytest.TempPathFactory) -> MultimodalModel:
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    mm = MultimodalModel(MultimodalConfig(checkpoint_dir=str(checkpoints)), Runtime.cpu())
    mm.fit(cold_data)
    return mm


@pytest.fixture(scope="module")
def saved(model: MultimodalModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("multimodal") / "model"
    model.save(directory)
    return directory


def _rows(model: MultimodalModel) -> dict[str, int]:
    return {s: i for i, s in enumerate(model.show_embeddings()[0])}


# ---- what the model learned ------------------------------------------------------------------
def test_near_duplicates_are_nearest_neighbours(
    model: MultimodalModel, truth: PlantedTruth
) -> None:
    shows = model.similarity_vectors()  # the served vectors minus the show prior
    unit = shows / np.linalg.norm(shows, axis=1, keepdims=True)
    cosine = unit @ unit.T  # (n_shows, n_shows)
    np.fill_diagonal(cosine, -np.inf)
    rows = _rows(model)
    found = [
        rows[copy] in np.argsort(-cosine[rows[original]])[:3]
        for original, copy in truth.near_duplicate_pairs
    ]
    assert np.mean(found) > 0.6, found  # most pairs (measured: all 6)


def test_cold_start_show_reaches_its_cluster(
    model: MultimodalModel, cold_data: TrainingData, truth: PlantedTruth
) -> None:
    assert not cold_data.positives()["show_id"].isin(truth.cold_start_shows).any()
    _, shows = model.show_embeddings()
    users = model.known_users()
    scores = model.user_embeddings(users) @ shows.T  # (n_users, n_shows)
    cluster = np.array([truth.user_cluster[u] for u in users])
    rows = _rows(model)
    inside, outside = [], []
    for show in truth.cold_start_shows:
        percentile = (scores < scores[:, [rows[show]]]).mean(1)  # (n_users,)
        mine = cluster == truth.show_cluster[show]
        inside.append(percentile[mine].mean())
        outside.append(percentile[~mine].mean())
    # chance is 0.5 for both; the planted cluster's users put a new show near their top
    assert np.mean(inside) > 0.65 and np.mean(inside) - np.mean(outside) > 0.2, (
        inside,
        outside,
    )


def test_text_query_retrieves_its_genre_family(
    model: MultimodalModel, saved: Path, truth: PlantedTruth
) -> None:
    ids, shows = model.show_embeddings()
    precision = {}
    for cluster in sorted(truth.cluster_genres):
        words = " ".join(GENRE_FAMILIES[cluster].vocabulary[:8])
        query = encode_query(saved / "text_tower", words)  # (dim,)
        assert query.shape == (shows.shape[1],) and query.dtype == np.float32
        top = np.argsort(-(shows @ query))[:10]  # the index's raw inner product
        name = GENRE_FAMILIES[cluster].name
        precision[name] = np.mean([truth.show_cluster[ids[i]] == cluster for i in top])
    # chance is about 1/8; every family's query finds mostly its own shows
    assert np.mean(list(precision.values())) > 0.85 and min(precision.values()) >= 0.7, precision


def test_genre_clusters_recover_the_genre_families(
    model: MultimodalModel, built_workdir: Workdir, truth: PlantedTruth
) -> None:
    genres = json.loads((built_workdir.features / "vocab.json").read_text())["genres"]
    cluster_of = model._net().meta_arch.cluster_of.tolist()
    of = {g: cluster_of[i + 1] for i, g in enumerate(genres)}
    families = [{of[g] for g in fam if g in of} for fam in truth.cluster_genres.values()]
    assert all(len(f) == 1 for f in families), families  # a family stays together
    assert len(set().union(*families)) == len(families)  # families do not merge


def test_training_logs_loss_and_recall_per_epoch(model: MultimodalModel) -> None:
    assert model.manifest is not None
    metrics, epochs = model.manifest.metrics, model.config.epochs
    assert len(metrics["train_loss"]) == len(metrics["val_recall_at_10"]) == epochs
    assert metrics["train_loss"][-1] < metrics["train_loss"][0]
    chance = 10 / len(model.show_ids)
    assert metrics["val_recall_at_10"][-1] > 5 * chance, metrics["val_recall_at_10"]


# ---- export and persistence --------------------------------------------------------------------
def test_onnx_export_matches_torch(model: MultimodalModel, tmp_path: Path) -> None:
    paths = model.export_onnx(tmp_path)  # checks the whole catalogue itself
    assert set(paths) == {"show_encoder", "text_projection"}
    catalogue = model._catalogue()
    rows = torch.arange(37)  # another batch size than the traced one
    batch = catalogue.take(rows)
    session = ort.InferenceSession(str(paths["show_encoder"]))
    feeds = {n: t.numpy() for n, t in zip(ShowTensors.names(), batch.tensors(), strict=True)}
    got = session.run(None, feeds)[0]
    np.testing.assert_allclose(got, model.similarity_vectors()[:37], atol=1e-4)  # the encoder
    session = ort.InferenceSession(str(paths["text_projection"]))
    query = session.run(None, {"text": batch.text.numpy()})[0]
    with torch.no_grad():
        expected = model._net().embed_text(batch.text).numpy()
    np.testing.assert_allclose(query, expected, atol=1e-4)


def test_save_load_round_trip(model: MultimodalModel, saved: Path) -> None:
    again = load_model(saved)
    assert isinstance(again, MultimodalModel)
    assert again.manifest == model.manifest
    ids, shows = model.show_embeddings()
    assert again.show_embeddings()[0] == ids
    np.testing.assert_array_equal(again.show_embeddings()[1], shows)
    users = [*model.known_users()[:20], "nobody-1", "nobody-2"]
    vectors = again.user_embeddings(users)
    np.testing.assert_allclose(vectors, model.user_embeddings(users), atol=1e-6)
    np.testing.assert_array_equal(vectors[-1], vectors[-2])  # the learned cold-user vector
    # served user = [scale * unit tower vector, 1]; served show = [unit vector, prior]
    scale = float(again._net().prior_arch.log_scale.detach().exp())
    assert np.linalg.norm(vectors[-1][:-1]) == pytest.approx(scale, rel=1e-5)
    assert vectors[-1][-1] == 1.0
    # serving searches the index by raw inner product: score(u, s) = <user, show>
    score = again.score(users[:5], ids[:5])
    np.testing.assert_allclose(score, np.einsum("nd,nd->n", vectors[:5], shows[:5]), atol=1e-6)
    # the reloaded net re-encodes the saved content into the saved vectors
    encoded = again._encode_catalogue(again._net()).numpy()
    np.testing.assert_allclose(encoded, again.similarity_vectors(), atol=1e-5)


# ---- resume and the fine-tuning path ----------------------------------------------------------
def _small(directory: Path, **overrides: object) -> MultimodalConfig:
    base = {"dim": 32, "meta_layers": 1, "epochs": 4, "val_users": 50}
    return MultimodalConfig(checkpoint_dir=str(directory), **(base | overrides))  # type: ignore[arg-type]


def test_resume_after_interruption(
    data: TrainingData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = MultimodalModel._save_checkpoint

    def interrupt_after_two(self: MultimodalModel, path: Path, epoch: int, *rest: object) -> None:
        original(self, path, epoch, *rest)  # type: ignore[arg-type]
        if epoch == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(MultimodalModel, "_save_checkpoint", interrupt_after_two)
        with pytest.raises(KeyboardInterrupt):
            MultimodalModel(_small(tmp_path / "ckpt"), Runtime.cpu()).fit(data)
    assert (tmp_path / "ckpt" / CHECKPOINT).exists()
    done = torch.load(tmp_path / "ckpt" / CHECKPOINT, weights_only=True)
    assert done["epoch"] == 2

    resumed = MultimodalModel(_small(tmp_path / "ckpt"), Runtime.cpu())
    metrics = resumed.fit(data)
    assert metrics["resumed_from_epoch"] == 2  # epochs 3 and 4 ran, 1 and 2 came from disk
    assert len(metrics["train_loss"]) == 4
    assert metrics["train_loss"][:2] == done["metrics"]["train_loss"]
    assert not (tmp_path / "ckpt" / CHECKPOINT).exists()  # removed once training finished

    straight = MultimodalModel(_small(tmp_path / "other"), Runtime.cpu())
    assert straight.fit(data)["train_loss"] == pytest.approx(metrics["train_loss"], rel=1e-5)
    np.testing.assert_allclose(
        straight.show_embeddings()[1], resumed.show_embeddings()[1], atol=1e-5
    )


def test_checkpoint_of_another_run_is_ignored(data: TrainingData, tmp_path: Path) -> None:
    stale = _small(tmp_path, dim=16)
    torch.save({"epoch": 3, "fingerprint": "another run"}, tmp_path / CHECKPOINT)
    metrics = MultimodalModel(dataclasses.replace(stale, epochs=1), Runtime.cpu()).fit(data)
    assert metrics["resumed_from_epoch"] == 0 and len(metrics["train_loss"]) == 1


def test_encoder_named_by_path_is_used_frozen(data: TrainingData, tmp_path: Path) -> None:
    """An encoder given by path (here the bundled MiniLM's directory) embeds the catalogue
    once, by mean pooling, which for MiniLM reproduces the Feast text feature; the text
    tower then points at that encoder."""
    path = resolve_encoder(None)
    mm = MultimodalModel(_small(tmp_path / "ckpt", epochs=1, text_model=path), Runtime.cpu())
    mm.fit(data)
    feast = load_show_content(data, SERVICE).text  # (n_shows, 384)
    np.testing.assert_allclose(mm._catalogue().text.numpy(), feast.numpy(), atol=1e-4)
    mm.save(tmp_path / "model")
    tower = json.loads((tmp_path / "model" / "text_tower" / "tower.json").read_text())
    assert tower["encoder"] == str(Path(path).resolve()) and tower["text_dim"] == 384


def test_gpu_profile_fine_tunes_top_layers(data: TrainingData, tmp_path: Path) -> None:
    """The GPU profile's path, on CPU: top layer trained with activation checkpointing under
    bf16 autocast; the saved text tower then embeds text with the fine-tuned encoder."""
    gpu_like = Runtime("gpu", torch.device("cpu"), 1, True)
    cfg = _small(
        tmp_path / "ckpt",
        epochs=1,
        steps_per_epoch=2,
        min_steps_per_epoch=60,
        finetune_layers=1,
        text_max_length=48,
    )
    mm = MultimodalModel(cfg, gpu_like)
    assert mm.finetune  # auto: the GPU profile fine-tunes
    metrics = mm.fit(data)
    assert metrics["text_finetuned"] and np.isfinite(metrics["train_loss"][0])
    encoder = mm._net().text_arch.encoder
    assert encoder is not None and encoder.transformer.is_gradient_checkpointing
    _, fresh = load_encoder(resolve_encoder(None))
    tuned, before = dict(encoder.transformer.named_parameters()), dict(fresh.named_parameters())
    last = len([n for n in before if n.endswith("attention.self.query.weight")]) - 1
    top = [n for n in tuned if f".{last}." in n]
    assert top and all(not torch.equal(tuned[n], before[n]) for n in top if "weight" in n)
    rest = [n for n in tuned if n not in top]
    assert all(torch.equal(tuned[n], before[n]) for n in rest)

    mm.save(tmp_path / "model")
    assert (tmp_path / "model" / "text_tower" / "encoder").is_dir()
    words = " ".join(GENRE_FAMILIES[0].vocabulary[:8])
    with torch.no_grad():  # the fine-tuned encoder and head, in float32
        expected = mm._net().embed_text(encoder.eval()([words])).numpy()[0]
    got = encode_query(tmp_path / "model" / "text_tower", words)  # (dim + 1,): prior column 0
    np.testing.assert_allclose(got, np.append(expected, 0.0), atol=1e-5)
