"""The confidence's calibration (models/calibration.py): a logistic regression with known
answers, its features, and its saved state."""

from __future__ import annotations

import numpy as np
import torch

from tvrec.models.calibration import FEATURES, Calibration, confidence_features


def test_it_recovers_a_planted_chance() -> None:
    """Watched with chance sigmoid(2 x - 1); a second column is noise on another scale."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=20_000)
    feats = np.column_stack([x, rng.normal(5.0, 30.0, size=x.size)])
    watched = rng.random(x.size) < 1 / (1 + np.exp(-(2 * x - 1)))
    cal = Calibration.fit(feats, watched)
    assert cal is not None
    # standardised weights: x's is 2 x its sd (1); the noise's about 0
    assert abs(cal.weights[0] - 2.0) < 0.1 and abs(cal.weights[1]) < 0.05
    p = cal.probability(feats)
    assert abs(p.mean() - watched.mean()) < 0.005  # calibrated on average
    truth = 1 / (1 + np.exp(-(2 * x - 1)))
    assert np.abs(p - truth).max() < 0.05
    again = Calibration.from_state(cal.state())
    assert again is not None and np.allclose(again.probability(feats), p)
    assert Calibration.from_state(None) is None


def test_too_few_hits_or_misses_give_no_calibration() -> None:
    feats = np.random.default_rng(1).normal(size=(500, 3))
    watched = np.zeros(500, bool)
    watched[:9] = True
    assert Calibration.fit(feats, watched) is None
    assert Calibration.fit(feats, ~watched) is None


def test_features_of_the_chosen_candidates() -> None:
    """(b, k, F): the chosen candidates' score, log softmax, heads' spread, log noise sd, stay
    share, log place, then their context; a place past the candidates stays finite."""
    b, n, h, c = 2, 5, 3, 4
    logits = torch.arange(b * n * h, dtype=torch.float32).reshape(b, n, h) / 10
    log_var = torch.full((b, n), -2.0)
    score = logits.mean(-1)
    score[1, 4] = float("-inf")  # user 1 has four candidates
    top = torch.tensor([[4, 3, 0], [3, 2, 4]])
    context = torch.arange(b * n * c, dtype=torch.float32).reshape(b, n, c)
    stay = np.array([[1.0, 0.5, 0.25], [0.9, 0.8, 0.0]], np.float32)
    feats = confidence_features(logits, log_var, score, top, context, stay)
    assert feats.shape == (b, 3, len(FEATURES) + c) and np.isfinite(feats).all()
    assert feats[0, 0, 0] == score[0, 4] and feats[1, 1, 0] == score[1, 2]
    assert np.isclose(feats[0, :, 1], score[0].log_softmax(0)[[4, 3, 0]].numpy()).all()
    assert np.isclose(feats[0, 0, 2], logits[0, 4].std(unbiased=False).item())
    assert (feats[..., 3] == -1.0).all() and (feats[..., 4] == stay).all()
    assert np.allclose(feats[0, :, 5], np.log1p([0, 1, 2]))
    assert (feats[1, 0, 6:] == context[1, 3].numpy()).all()
