"""Ranking candidate sources and measuring feature distances, value by value against the scores
they are made of (tiny real networks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.data.domain import Split
from pipeline.metrics.candidates import (
    Candidate,
    budget_scores,
    domain_distance,
    mean_scores,
    predicted_order,
    rank_agreement,
    realised_order,
)
from pipeline.metrics.domain import mmd2_unbiased, proxy_a_distance
from pipeline.metrics.feature_distance import feature_distances
from pipeline.metrics.hscore import h_score
from pipeline.metrics.leep import leep
from pipeline.metrics.logme import logme
from pipeline.metrics.nce import nce
from pipeline.metrics.ranking import kendall_tau, tau_over_seeds
from pipeline.models.small_cnn import small_cnn


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return small_cnn(4, width=2).eval()


def _features(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.forward_features(torch.from_numpy(x)).double().numpy()


def test_a_candidate_realised_the_mean_of_its_seeds_or_nothing():
    assert Candidate("a", realised=[0.5, 0.7]).accuracy == pytest.approx(0.6)
    assert math.isnan(Candidate("b").accuracy)


def test_budget_scores_are_the_four_scores_on_each_seeds_budget_and_their_mean():
    rng = np.random.default_rng(0)
    budgets = {
        s: Split(rng.normal(size=(12, 1, 8, 8)).astype(np.float32), np.arange(12) % 3)
        for s in (0, 1)
    }
    model = _net(0)
    per_seed = []
    for b in budgets.values():
        with torch.no_grad():
            probs = torch.softmax(model(torch.from_numpy(b.x)), 1).double().numpy()
        f = _features(model, b.x)
        per_seed.append(
            [leep(probs, b.y), nce(probs.argmax(1), b.y), logme(f, b.y), h_score(f, b.y)]
        )
    names = ("leep", "nce", "logme", "h_score")
    got = budget_scores(model, budgets)
    assert np.array([list(s.values()) for s in got]) == pytest.approx(np.array(per_seed))
    assert all(list(s) == list(names) for s in got)
    expected = dict(zip(names, np.mean(per_seed, axis=0), strict=True))
    assert mean_scores(got) == pytest.approx(expected)


def test_domain_distance_is_pad_on_equal_seeded_samples_of_the_features():
    rng = np.random.default_rng(1)
    big = rng.normal(size=(30, 1, 8, 8)).astype(np.float32)
    small = rng.normal(0.3, size=(21, 1, 8, 8)).astype(np.float32)  # overlapping: PAD in (0, 2)
    model = _net(1)

    def expected(source, target, n, seed):
        pick = np.random.default_rng(seed)
        xs = source[pick.permutation(len(source))[:n]]
        xt = target[pick.permutation(len(target))[:n]]
        return proxy_a_distance(_features(model, xs), _features(model, xt), seed=seed)

    for source, target in ((big, small), (small, big)):  # the smaller sets the sample size
        assert domain_distance(model, source, target, max_samples=50, seed=3) == expected(
            source, target, 21, 3
        )
    assert domain_distance(model, big, small, max_samples=12, seed=4) == expected(big, small, 12, 4)
    values = {domain_distance(model, big, small, 50, seed) for seed in (3, 4, 5)}
    assert len(values) > 1 and all(0 <= v < 2 for v in values), "the seed reaches PAD's split"


def test_orders_and_agreement_follow_each_scores_direction():
    cands = [
        Candidate("a", {"leep": -1.0, "proxy_a_distance": 0.2}, [0.9]),
        Candidate("b", {"leep": -2.0, "proxy_a_distance": 1.5}, [0.5]),
        Candidate("c", {"leep": -0.5, "proxy_a_distance": 0.9}, [0.7]),
    ]
    assert predicted_order(cands, "leep") == ["c", "a", "b"]
    assert predicted_order(cands, "proxy_a_distance") == ["a", "c", "b"]  # smaller is better
    assert realised_order(cands) == ["a", "c", "b"]
    agreement = rank_agreement(cands)
    assert set(agreement) == {"leep", "proxy_a_distance"}  # scores some candidate lacks: none
    realised = [0.9, 0.5, 0.7]
    assert agreement["leep"].tau == kendall_tau([-1.0, -2.0, -0.5], realised)
    assert agreement["proxy_a_distance"].tau == kendall_tau([-0.2, -1.5, -0.9], realised) == 1.0
    # one seed: no interval to speak of
    assert (agreement["leep"].low, agreement["leep"].high) == (-1.0, 1.0)


def test_agreement_resamples_per_seed_label_scores_and_holds_the_domain_score_fixed():
    per_seed = np.array([[3.0, 2.0, 1.0], [3.0, 1.0, 2.0]])  # LEEP (seeds, candidates)
    realised = np.array([[0.9, 0.5, 0.1], [0.3, 0.6, 0.8]])
    distance = [0.1, 0.2, 0.3]
    cands = [
        Candidate(
            name,
            {"leep": per_seed[:, i].mean(), "proxy_a_distance": distance[i]},
            list(realised[:, i]),
            [{"leep": v} for v in per_seed[:, i]],
        )
        for i, name in enumerate("abc")
    ]
    agreement = rank_agreement(cands)
    assert agreement["leep"] == tau_over_seeds(per_seed, realised)
    # seed 0 alone ranks perfectly, seed 1 alone not: the interval shows both
    assert agreement["leep"].high == 1.0 and agreement["leep"].low < 0
    # the distance reads no labels: one number per candidate, the same in every resample
    assert agreement["proxy_a_distance"] == tau_over_seeds(-np.array([distance] * 2), realised)


def test_feature_distances_are_pad_and_mmd_of_seeded_sorted_samples():
    rng = np.random.default_rng(2)
    source = torch.from_numpy(rng.normal(size=(15, 1, 8, 8)).astype(np.float32))
    target = torch.from_numpy(rng.normal(1.0, size=(11, 1, 8, 8)).astype(np.float32))
    model = _net(2)
    pick = np.random.default_rng(5)
    s = np.sort(pick.permutation(15)[:8])
    t = np.sort(pick.permutation(11)[:8])
    fs, ft = _features(model, source.numpy()[s]), _features(model, target.numpy()[t])
    out = feature_distances(model, source, target, max_samples=8, seed=5)
    assert out == {"pad": proxy_a_distance(fs, ft, seed=5), "mmd2": mmd2_unbiased(fs, ft)}
    whole = feature_distances(model, source, target)  # defaults: 600 rows at most, seed 0
    fs, ft = _features(model, source.numpy()), _features(model, target.numpy())
    assert whole == {"pad": proxy_a_distance(fs, ft, seed=0), "mmd2": mmd2_unbiased(fs, ft)}
    many = torch.from_numpy(rng.normal(size=(601, 1, 4, 4)).astype(np.float32))
    pick = np.random.default_rng(0)
    s, t = np.sort(pick.permutation(601)[:600]), np.sort(pick.permutation(601)[:600])
    fs, ft = _features(model, many.numpy()[s]), _features(model, many.numpy()[t] + 0.1)
    out = feature_distances(model, many, many + 0.1)
    assert out["mmd2"] == mmd2_unbiased(fs, ft), "600 rows at most by default"
