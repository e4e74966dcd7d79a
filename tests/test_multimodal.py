"""MTTV, the multimodal transformer, on the planted synthetic world.

One model is trained on the small world as of the day the first planted cold-start show
premieres, so those shows have no viewer in its training set. It must find the planted
near-duplicates from content, score a cold-start show for the users of its taste cluster,
answer a text query with the right genre family through its saved text tower, recover the
genre families as genre clusters, export its text projection to ONNX exactly, and serve a
learned cold-user vector after save/load. The GPU profile's fine-tuning path (run on CPU, a
couple of steps) and an encoder named by path are checked on their own small runs. What every
model must do (save/load, unknown users, the show encoder's ONNX export, checkpoint resume)
is in test_model_contract.py.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import polars as pl
import pytest
import torch

from tvrec.jobs.train import load_model
from tvrec.models.base import ModelFormatError, TrainingData
from tvrec.models.content import content_of
from tvrec.models.layers import FineTunedText
from tvrec.models.multimodal import (
    MultimodalConfig,
    MultimodalModel,
    _cowatch_loss,
    _text_loss,
    padded,
)
from tvrec.models.runtime import Runtime
from tvrec.models.text_tower import encode_query, load_encoder, resolve_encoder
from tvrec.pipelines.errors import DataError
from tvrec.pipelines.features.text import MODEL_NAME, content_hash
from tvrec.pipelines.model_inputs import catalogue_content
from tvrec.pipelines.synthetic import GENRE_FAMILIES, PlantedTruth
from tvrec.pipelines.workdir import Workdir

SERVICE = MultimodalModel.feature_service

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(inputs_of: Callable[[str], TrainingData]) -> TrainingData:
    return inputs_of(MultimodalModel.name)


@pytest.fixture(scope="module")
def cold_data(data: TrainingData, built_workdir: Workdir, truth: PlantedTruth) -> TrainingData:
    """The training set as of the first cold-start premiere (every row strictly before it,
    each already joined with its features point in time), and the catalogue's content as of
    then."""
    shows = pd.read_parquet(built_workdir.lake / "shows.parquet").set_index("show_id")
    first = min(shows.loc[truth.cold_start_shows, "premiered"])
    cut = datetime(first.year, first.month, first.day, tzinfo=UTC)
    frame = data.frame[data.frame["event_timestamp"] < cut]
    content = catalogue_content(built_workdir, SERVICE, data.show_ids, cut)
    return dataclasses.replace(data, frame=frame, as_of=cut, content=content)


@pytest.fixture(scope="module")
def model(cold_data: TrainingData, tmp_path_factory: pytest.TempPathFactory) -> MultimodalModel:
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    mm = MultimodalModel(MultimodalConfig(), Runtime.cpu())
    mm.fit(dataclasses.replace(cold_data, checkpoint_dir=checkpoints))
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


def test_fine_tuned_text_is_the_text_feast_embedded(
    cold_data: TrainingData, built_workdir: Workdir
) -> None:
    """A fine-tuning encoder (GPU profile) reads the same text as the Feast embedding."""
    content = cold_data.content
    assert content is not None
    stored = pl.read_parquet(built_workdir.features / "show_text.parquet")
    stored = dict(stored.select("show_id", "content_hash").unique("show_id").iter_rows())
    hashes = [content_hash(t, MODEL_NAME) for t in content.raw_text]
    assert hashes == [stored[s] for s in content.show_ids]
    shows = pl.read_parquet(built_workdir.lake / "shows.parquet").select("show_id", "genres")
    genres = dict(shows.iter_rows())
    endings = [", ".join(genres[s]) for s in content.show_ids]
    assert all(e and t.endswith(e) for t, e in zip(content.raw_text, endings, strict=True))


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
def test_onnx_text_projection_matches_torch(model: MultimodalModel, tmp_path: Path) -> None:
    """Beside the show encoder (the contract's test), the text projection: pooled text ->
    query vector, what `tvrec query --text` serves."""
    paths = model.export_onnx(tmp_path)  # checks the whole catalogue itself
    assert set(paths) == {"show_encoder", "text_projection"}
    batch = model._catalogue().take(torch.arange(37))  # another batch size than the traced one
    session = ort.InferenceSession(str(paths["text_projection"]))
    query = session.run(None, {"text": batch.text.numpy()})[0]
    with torch.no_grad():
        expected = model._net().embed_text(batch.text).numpy()
    np.testing.assert_allclose(query, expected, atol=1e-4)


def test_cold_user_vector_and_reencoding_after_load(model: MultimodalModel, saved: Path) -> None:
    again = load_model(saved)
    assert isinstance(again, MultimodalModel)
    vectors = again.user_embeddings(["nobody-1", "nobody-2"])
    # users without history get the learned cold-user vector: served as [scale * unit, 1]
    scale = float(again._net().prior_arch.log_scale.detach().exp())
    assert np.linalg.norm(vectors[-1][:-1]) == pytest.approx(scale, rel=1e-5)
    assert vectors[-1][-1] == 1.0
    np.testing.assert_allclose(vectors, model.user_embeddings(["nobody-1", "nobody-2"]), atol=1e-6)
    # the reloaded net re-encodes the saved content into the saved vectors
    encoded = again._encode_catalogue(again._net()).numpy()
    np.testing.assert_allclose(encoded, again.similarity_vectors(), atol=1e-5)


# ---- the fine-tuning path and an encoder by path ----------------------------------------------
def _small(**overrides: object) -> MultimodalConfig:
    base = {"dim": 32, "meta_layers": 1, "epochs": 4, "val_users": 50}
    return MultimodalConfig(**(base | overrides))  # type: ignore[arg-type]


def test_encoder_named_by_path_is_used_frozen(data: TrainingData, tmp_path: Path) -> None:
    """An encoder given by path (here the bundled MiniLM's directory) embeds the catalogue
    once, by mean pooling, which for MiniLM reproduces the Feast text feature; the text
    tower then points at that encoder."""
    path = resolve_encoder(None)
    mm = MultimodalModel(_small(epochs=1, text_model=path, prior_steps=0), Runtime.cpu())
    mm.fit(data)
    feast = content_of(data).tensors.text  # (n_shows, 384)
    np.testing.assert_allclose(mm._catalogue().text.numpy(), feast.numpy(), atol=1e-4)
    mm.save(tmp_path / "model")
    tower = json.loads((tmp_path / "model" / "text_tower" / "tower.json").read_text())
    assert tower["encoder"] == str(Path(path).resolve()) and tower["text_dim"] == 384


def test_gpu_profile_fine_tunes_top_layers(data: TrainingData, tmp_path: Path) -> None:
    """The GPU profile's path, on CPU: top layer trained with activation checkpointing under
    bf16 autocast; the saved text tower then embeds text with the fine-tuned encoder."""
    gpu_like = Runtime("gpu", torch.device("cpu"), 1, True)
    cfg = _small(
        epochs=1,
        steps_per_epoch=2,
        min_steps_per_epoch=60,
        finetune_layers=1,
        text_max_length=16,  # each step encodes the whole catalogue: short texts keep it cheap
        prior_steps=0,  # the show prior is not what this test is about
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

    # a loaded copy (the ensemble publishes its content model's tower so) carries the encoder
    # along: without it `tvrec query --text` failed on the GPU profile (H200, 2026-12-04)
    again = MultimodalModel.load(tmp_path / "model")
    assert again._net().text_arch.encoder is None  # the state holds no encoder
    again.save_artifacts(tmp_path / "copy")
    copied = encode_query(tmp_path / "copy" / "text_tower", words)
    np.testing.assert_allclose(copied, got, atol=1e-6)
    shutil.rmtree(tmp_path / "model" / "text_tower" / "encoder")
    with pytest.raises(ModelFormatError, match="fine-tuned text encoder is missing"):
        MultimodalModel.load(tmp_path / "model").save_artifacts(tmp_path / "copy2")


def test_a_step_is_padded_to_a_bucket_with_masked_copies() -> None:
    """A step's shows are padded with copies of the last up to the next multiple of the
    bucket (a row's first position stays its real one); the padded losses and their
    gradients are exactly those of the unpadded step."""
    rows = np.array([3, 7, 8, 40, 41])
    np.testing.assert_array_equal(padded(rows, 8), [3, 7, 8, 40, 41, 41, 41, 41])
    np.testing.assert_array_equal(padded(rows, 5), rows)
    np.testing.assert_array_equal(padded(rows, 1), rows)  # 1: no padding
    gen = torch.Generator().manual_seed(0)
    shows = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen), dim=1)
    texts = torch.nn.functional.normalize(torch.randn(5, 8, generator=gen), dim=1)
    pairs = torch.tensor([[0, 1], [2, 4], [3, 1]])

    def losses(n_pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s, t = shows.clone().requires_grad_(), texts.clone().requires_grad_()
        pad = torch.arange(5 + n_pad) >= 5
        s_step, t_step = (
            torch.cat([s, s[-1:].expand(n_pad, -1)]),
            torch.cat([t, t[-1:].expand(n_pad, -1)]),
        )
        total = _cowatch_loss(s_step, pairs, pad, 0.1) + _text_loss(s_step, t_step, pad, 0.1)
        total.backward()
        return total.detach(), s.grad, t.grad

    for got, want in zip(losses(3), losses(0), strict=True):
        torch.testing.assert_close(got, want)


def test_tiny_data_trains_or_says_what_is_missing(data: TrainingData) -> None:
    """One user with five shows (fewer users than steps an epoch) trains without an empty
    step; five users with one show each leave nothing to learn: a DataError that says so
    (it was a reshape traceback from an empty step)."""
    frame = data.frame.sort_values(["user_id", "event_timestamp"])
    cfg = _small(epochs=1, prior_steps=0, val_users=1)
    one_user = frame[frame["user_id"] == frame["user_id"].iloc[0]].head(5)
    mm = MultimodalModel(cfg, Runtime.cpu())
    metrics = mm.fit(dataclasses.replace(data, frame=one_user))
    assert np.isfinite(metrics["train_loss"]).all() and mm.show_vectors is not None
    singles = frame.drop_duplicates("user_id").head(5)
    with pytest.raises(DataError, match=r"5 positives from 5 users .* no user with two shows"):
        MultimodalModel(cfg, Runtime.cpu()).fit(dataclasses.replace(data, frame=singles))


def test_fine_tuned_rows_match_the_texts_encoded_one_by_one() -> None:
    """`FineTunedText.rows` (the catalogue tokenized once, chunks cut to their longest text)
    gives what encoding the same texts afresh gives, and tokenizes a list only once."""
    texts = ["Hollow Verdict. Crime", "A much longer description of a show. " * 6, "Why?", "x"]
    encoder = FineTunedText(resolve_encoder(None), 64, 1, chunk=2).eval()
    rows = torch.tensor([3, 1, 1, 0, 2])
    with torch.no_grad():
        got = encoder.rows(texts, rows)  # (5, 384)
        want = encoder([texts[r] for r in rows.tolist()])
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=2e-6)
        cached = encoder._catalogue
        encoder.rows(texts, rows[:2])
        assert encoder._catalogue is cached  # the same list: not tokenized again
        encoder.rows(list(texts), rows[:2])
        assert encoder._catalogue is not cached
