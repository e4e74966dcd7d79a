"""The show prior (models/prior.py) on planted data: it must learn popularity from content (and
carry it to a show nobody watched), learn how watching depends on a show's age, and serve
vectors whose inner product is its score."""

from __future__ import annotations

import numpy as np
import torch

from tvrec.models.prior import (
    N_AGE_BUCKETS,
    PriorConfig,
    ShowPrior,
    age_buckets,
    fit_prior,
)

DIM = 8


def _no_taste(prefixes: list[np.ndarray]) -> torch.Tensor:
    """Users without taste: only the prior can explain what they watch."""
    return torch.zeros(len(prefixes), DIM)


def test_age_buckets_known_values() -> None:
    premiered = torch.tensor([-1, 100, 0, 200])  # unknown, day 100, day 0, day 200
    got = age_buckets(premiered, torch.tensor([100, 5000]))
    # unknown -> 0; age 0 -> [0, 30) = 2; age 100 -> [90, 180) = 4; not aired yet -> 1
    assert got.tolist() == [[0, 2, 4, 1], [0, 9, 9, 9]]
    assert int(got.max()) < N_AGE_BUCKETS


def test_the_age_term_has_the_gradient_of_an_embedding_lookup() -> None:
    """The age curve's lookup sums its gradient by bincount (models/layers.py: bucket_lookup);
    it must match what nn.Embedding's backward gives, bucket by bucket."""
    gen = torch.Generator().manual_seed(0)
    prior = ShowPrior(DIM, n_shows=40)
    with torch.no_grad():
        prior.age_curve.weight.normal_(generator=gen)
    shows = torch.randn(40, DIM, generator=gen)
    ages = torch.randint(0, N_AGE_BUCKETS, (16, 40), generator=gen)
    upstream = torch.randn(16, 40, generator=gen)
    (prior.content(shows, ages) * upstream).sum().backward()
    reference = torch.nn.Embedding(N_AGE_BUCKETS, 1)
    reference.weight.data.copy_(prior.age_curve.weight.data)
    (reference(ages).squeeze(-1) * upstream).sum().backward()
    assert prior.age_curve.weight.grad is not None and reference.weight.grad is not None
    assert torch.allclose(prior.age_curve.weight.grad, reference.weight.grad, atol=1e-5)
    assert torch.equal(prior.content(shows, ages) - prior.prior_mlp(shows).squeeze(-1)[None],
                       reference(ages).squeeze(-1))  # fmt: skip


def test_prior_learns_popularity_from_content_and_carries_it_to_unwatched_shows() -> None:
    gen = np.random.default_rng(0)
    n = 60
    shows = torch.as_tensor(gen.normal(size=(n, DIM)), dtype=torch.float32)
    shows[:10, 0] += 4.0  # shows 0-9 share a content trait ...
    shows = torch.nn.functional.normalize(shows, dim=1)
    hits = np.arange(8)  # ... and 0-7 are what everybody watches; 8 and 9 nobody watches
    others = np.arange(10, n)
    sequences = []
    for _ in range(300):
        pool = np.concatenate([gen.choice(hits, 4, replace=False), gen.choice(others, 1)])
        sequences.append(gen.permutation(pool))
    days = [np.zeros(len(s), dtype=np.int64) for s in sequences]
    premiered = torch.full((n,), -1, dtype=torch.long)  # ages unknown: content only
    prior = ShowPrior(DIM, n)
    losses = fit_prior(prior, shows, premiered, sequences, days, _no_taste, PriorConfig(steps=300))
    assert losses[-1] < losses[0]
    unknown_age = torch.zeros(1, n, dtype=torch.long)
    with torch.no_grad():
        content = prior.content(shows, unknown_age)[0].numpy()  # (n,)
        value = prior(shows, unknown_age)[0].numpy()  # (n,): + each watched show's own bias
    assert content[hits].min() > np.quantile(content[others], 0.9)
    # never a target, but with the hits' content: ranked above nearly all of the rest
    assert content[[8, 9]].min() > np.quantile(content[others], 0.8), content[[8, 9]]
    # the per-show bias: only watched shows have one, and it sharpens what content guessed
    assert prior.watched.tolist() == [i not in (8, 9) for i in range(n)]
    np.testing.assert_array_equal(value[[8, 9]], content[[8, 9]])
    assert value[hits].min() - value[others].max() > content[hits].min() - content[others].max()


def test_the_bias_of_each_watched_show_tracks_its_popularity() -> None:
    gen = np.random.default_rng(3)
    n = 40
    shows = torch.nn.functional.normalize(torch.ones(n, DIM), dim=1)  # content is no help
    weights = np.linspace(1.0, 0.05, n)  # show 0 most watched, show 39 least
    sequences = [gen.choice(n, 6, replace=False, p=weights / weights.sum()) for _ in range(400)]
    days = [np.zeros(6, dtype=np.int64) for _ in sequences]
    prior = ShowPrior(DIM, n)
    premiered = torch.full((n,), -1, dtype=torch.long)
    fit_prior(prior, shows, premiered, sequences, days, _no_taste, PriorConfig(steps=50))
    bias = prior.show_bias.weight.detach().squeeze(1).numpy()
    rank = np.corrcoef(np.argsort(np.argsort(-bias)), np.arange(n))[0, 1]
    assert rank > 0.9, rank  # the learned order is the popularity order


def test_prior_learns_that_new_shows_are_watched() -> None:
    gen = np.random.default_rng(1)
    n = 80
    shows = torch.nn.functional.normalize(torch.ones(n, DIM), dim=1)  # no content signal
    premiered = torch.as_tensor(gen.integers(0, 3000, n))  # days
    sequences, days = [], []
    for _ in range(300):  # each watch happens 0-20 days after the show's premiere
        rows = gen.choice(n, 4, replace=False)
        sequences.append(rows)
        days.append(premiered.numpy()[rows] + gen.integers(0, 20, len(rows)))
    prior = ShowPrior(DIM, n)
    fit_prior(prior, shows, premiered, sequences, days, _no_taste, PriorConfig(steps=300))
    curve = prior.age_curve.weight.detach().squeeze(1).numpy()  # (N_AGE_BUCKETS,)
    assert curve.argmax() == 2, curve  # [0, 30) days
    # every other age that occurs (not aired, 30 days to 10 years) is learned as unlikely
    assert curve[2] > curve[[1, 3, 4, 5, 6, 7, 8]].max() + 1.0, curve


def test_served_vectors_score_like_the_prior() -> None:
    gen = np.random.default_rng(2)
    shows = torch.nn.functional.normalize(torch.as_tensor(gen.normal(size=(30, DIM))), dim=1)
    shows = shows.float()
    users = torch.nn.functional.normalize(torch.as_tensor(gen.normal(size=(5, DIM))), dim=1)
    users = users.float()
    premiered = torch.as_tensor(gen.integers(-1, 500, 30))
    prior = ShowPrior(DIM, 30)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        day = 400
        ages = age_buckets(premiered, torch.full((5,), day))  # (5, 30)
        # a show that airs after `day` is served with the prior of its premiere day
        aired = age_buckets(premiered, premiered.clamp(min=day))  # (30, 30): diagonal is used
        ages = torch.where(premiered[None, :] > day, aired.diagonal()[None, :], ages)
        expected = prior.logits(users, shows, ages).numpy()
        prior.premiered_days.copy_(premiered)
        prior.as_of_day.fill_(day)
    got = prior.served_users(users) @ prior.served_shows(shows).T
    np.testing.assert_allclose(got, expected, atol=1e-5)
