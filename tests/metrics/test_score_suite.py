"""What the evaluate stage gets from the metrics package, checked value by value against the
single scores it is made of: classification metrics, scored models and arm summaries, the score
suite, and source-vs-reference comparisons on tiny real networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from pipeline.data.domain import Split
from pipeline.metrics.classification import accuracy, classification_metrics, model_metrics
from pipeline.metrics.comparison import (
    ArmStats,
    ScoredModel,
    gaps,
    paired_gain,
    score_models,
    summarise_arms,
)
from pipeline.metrics.domain import mmd_permutation_test, proxy_a_distance
from pipeline.metrics.hscore import h_score
from pipeline.metrics.intervals import ACCURACY, DIFFERENCE, Interval
from pipeline.metrics.leep import leep
from pipeline.metrics.logme import logme
from pipeline.metrics.nce import nce
from pipeline.metrics.ntg import negative_transfer_gap
from pipeline.metrics.ranking import kendall_tau
from pipeline.metrics.source_scores import (
    compare_domain_scores,
    compare_label_scores,
    depth_ranking,
)
from pipeline.metrics.suite import (
    DOMAIN_READS,
    LABEL_READS,
    domain_scores,
    equal_samples,
    label_scores,
)
from pipeline.models.small_cnn import small_cnn

LOGITS = torch.tensor([[2.0, 0, 0], [0, 3, 0], [1, 0, 0], [0, 0, 1], [0, 2, 0], [0, 0, 5]])
Y = torch.tensor([0, 1, 2, 2, 0, 2])  # predictions 0 1 0 2 1 2


def test_classification_metrics_match_their_definitions():
    m = classification_metrics(LOGITS, Y, 3)
    assert m["acc"] == pytest.approx(4 / 6) == accuracy(LOGITS, Y, 3)
    assert m["macro_f1"] == pytest.approx(f1_score(Y, LOGITS.argmax(1), average="macro"))
    assert m["per_class_acc"] == pytest.approx([0.5, 1.0, 2 / 3])
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows: true class
    assert set(m) == {"acc", "macro_f1", "per_class_acc", "confusion"}


def _net(seed: int, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return small_cnn(classes, width=2)


def test_model_metrics_score_the_model_in_eval_mode_and_leave_its_mode():
    model = _net(0).train()
    x = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    m = model_metrics(model, x, y, 3)
    assert model.training
    with torch.no_grad():
        expected = classification_metrics(model.eval()(x), y, 3)
    assert m == expected


def test_score_models_scores_every_row_with_its_model():
    rows = [
        {"arm": a, "seed": s, "init_groups": 4, "freeze_groups": s, "model_id": f"m{a}{s}"}
        for a in ("t", "s")
        for s in (0, 1)
    ]
    rows = [{**r, "run_id": "r" + r["model_id"]} for r in rows]
    x = torch.randn(9, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2] * 3)
    models = {r["model_id"]: _net(i) for i, r in enumerate(rows)}
    scored = score_models(rows, lambda row: models[row["model_id"]], x, y)
    assert [(s.arm, s.seed, s.freeze_groups, s.run_id) for s in scored] == [
        (r["arm"], r["seed"], r["freeze_groups"], r["run_id"]) for r in rows
    ]
    for s, r in zip(scored, rows, strict=True):
        m = model_metrics(models[r["model_id"]], x, y, 3)
        assert (s.acc, s.macro_f1, s.confusion) == (m["acc"], m["macro_f1"], m["confusion"])
        assert (s.model_id, s.init_groups) == (r["model_id"], 4)


def test_arm_statistics_carry_every_field_at_the_requested_confidence():
    scored = [ScoredModel("t", s, a, f, [[1]], 4, 2) for s, a, f in ((1, 0.7, 0.6), (0, 0.9, 0.8))]
    scored += [ScoredModel("s", s, a, a, [[1]], 0, 0) for s, a in ((0, 0.5), (1, 0.6))]
    arms = summarise_arms(scored, 0.8)
    acc = Interval.of([0.9, 0.7], 0.8, ACCURACY)  # 0.8 +- 0.31: clipped at 1
    assert arms["t"] == ArmStats("t", acc, 0.7, (0, 1), 4, 2) and acc.high == 1.0
    gain = Interval.of([0.9 - 0.5, 0.7 - 0.6], 0.8, DIFFERENCE)
    assert paired_gain(arms["t"], arms["s"], 0.8) == gain
    expected = negative_transfer_gap([1 - 0.9, 1 - 0.7], [1 - 0.5, 1 - 0.6], 0.8)
    assert gaps(arms, "s", 0.8) == {"t": expected}


def test_label_scores_are_the_four_scores_on_the_same_arrays():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=30)
    feats = rng.normal(size=(30, 4))
    y = rng.integers(0, 3, 30)
    assert label_scores(probs, feats, list(y)) == {
        "leep": leep(probs, y),
        "nce": nce(probs.argmax(axis=1), y),
        "logme": logme(feats, y),
        "h_score": h_score(feats, y, shrinkage=True),
    }
    assert set(LABEL_READS) == {"leep", "nce", "logme", "h_score"}


def test_domain_scores_are_pad_and_the_mmd_test_with_the_same_seed():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(12, 3)), rng.normal(0.5, size=(12, 3))
    mmd2, p = mmd_permutation_test(a, b, n_permutations=30, seed=4)
    assert domain_scores(a, b, permutations=30, seed=4) == {
        "proxy_a_distance": proxy_a_distance(a, b, seed=4),
        "mmd2": mmd2,
        "mmd_p_value": p,
    }
    assert set(DOMAIN_READS) == {"proxy_a_distance", "mmd2", "mmd_p_value"}


def test_equal_samples_are_seeded_distinct_rows_of_each_at_the_smaller_size():
    a, b = np.arange(20)[:, None], 100 + np.arange(7)[:, None]
    sa, sb = equal_samples(a, b, 50, seed=3)
    assert len(sa) == len(sb) == 7
    assert len(set(sa.ravel())) == 7 and set(sb.ravel()) == set(b.ravel())
    assert set(sa.ravel()) <= set(a.ravel())
    again = equal_samples(a, b, 50, seed=3)
    assert np.array_equal(again[0], sa) and np.array_equal(again[1], sb)
    assert not np.array_equal(equal_samples(a, b, 50, seed=4)[0], sa)
    assert [len(s) for s in equal_samples(a, b, 5, seed=3)] == [5, 5]
    assert [len(s) for s in equal_samples(b, a, 50, seed=3)] == [7, 7]  # the first is smaller


def _outputs(model, x):
    with torch.no_grad():
        model.eval()
        t = torch.from_numpy(x)
        logits = model(t)
        return torch.softmax(logits, 1).double().numpy(), model.forward_features(t).double().numpy()


def _budgets():
    rng = np.random.default_rng(2)
    return {
        s: Split(rng.normal(size=(12, 1, 8, 8)).astype(np.float32), np.arange(12) % 3)
        for s in (5, 6, 7)
    }


def test_label_scores_of_source_and_reference_per_seed_and_their_difference():
    source, budgets = _net(0, classes=4), _budgets()
    references = {s: _net(100 + s, classes=4) for s in budgets}
    out = compare_label_scores(source, references.__getitem__, budgets, 0.9)
    assert [c.name for c in out] == list(LABEL_READS)
    for c in out:
        src = [label_scores(*_outputs(source, b.x), b.y)[c.name] for b in budgets.values()]
        ref = [label_scores(*_outputs(references[s], b.x), b.y)[c.name] for s, b in budgets.items()]
        assert c.reads == LABEL_READS[c.name]
        assert c.source == Interval.of(src, 0.9) and c.reference == Interval.of(ref, 0.9)
        assert c.difference == Interval.of([a - b for a, b in zip(src, ref, strict=True)], 0.9)


def test_domain_scores_of_source_and_reference_on_equal_samples():
    rng = np.random.default_rng(3)
    target = Split(rng.normal(size=(10, 1, 8, 8)).astype(np.float32))
    images = Split(rng.normal(1.0, size=(14, 1, 8, 8)).astype(np.float32))
    source, reference = _net(0), _net(1)
    out = compare_domain_scores(
        source, reference, target, images, max_samples=8, permutations=10, seed=2
    )
    xs, xt = equal_samples(images.x, target.x, 8, 2)
    for c in out:
        values = {}
        for role, model in (("source", source), ("reference", reference)):
            fs, ft = (_outputs(model, x)[1] for x in (xs, xt))
            values[role] = domain_scores(fs, ft, permutations=10, seed=2)[c.name]
        assert c.reads == DOMAIN_READS[c.name]
        assert (c.source.mean, c.reference.mean) == (values["source"], values["reference"])
        assert c.difference.mean == values["source"] - values["reference"]
    assert [c.name for c in out] == list(DOMAIN_READS)


def test_depth_ranking_ranks_the_gain_over_the_reference_at_every_depth():
    source, budgets = _net(0), _budgets()
    references = {s: _net(200 + s) for s in budgets}
    # per depth k = 1..4, each seed's accuracy
    realised = [(0.2, 0.25, 0.2), (0.5, 0.45, 0.4), (0.4, 0.35, 0.45), (0.3, 0.3, 0.3)]
    out = depth_ranking(source, references.__getitem__, budgets, realised)
    for name, score in (("logme", logme), ("h_score", lambda f, y: h_score(f, y, True))):
        gains = np.zeros(4)
        for seed, b in budgets.items():
            for sign, model in ((1, source), (-1, references[seed])):
                with torch.no_grad():
                    x = torch.from_numpy(b.x)
                    for k in range(1, 5):
                        f = model.eval().pool(model.forward_groups(x, 0, k)).double().numpy()
                        gains[k - 1] += sign * score(f, b.y) / len(budgets)
        means = [np.mean(r) for r in realised]
        assert out[name].tau == pytest.approx(kendall_tau(list(gains), means))
        assert -1 <= out[name].low <= out[name].high <= 1
    assert set(out) == {"logme", "h_score"}
    # a reference identical to the source gains nothing at any depth: nothing to rank
    same = depth_ranking(source, lambda seed: _net(0), budgets, realised)
    assert all(np.isnan(v.tau) and np.isnan(v.low) for v in same.values())


def test_the_domain_comparison_is_repeatable_by_its_seed():
    # same distribution: the permutation test's p-value is spread over (0, 1], so a comparison
    # that dropped its seed would not repeat it
    rng = np.random.default_rng(5)
    target = Split(rng.normal(size=(12, 1, 8, 8)).astype(np.float32))
    images = Split(rng.normal(size=(12, 1, 8, 8)).astype(np.float32))
    source, reference = _net(0), _net(1)

    def p_values(seed: int) -> tuple[float, float]:
        out = compare_domain_scores(
            source, reference, target, images, max_samples=12, permutations=200, seed=seed
        )
        (p,) = (c for c in out if c.name == "mmd_p_value")
        return p.source.mean, p.reference.mean

    xs, xt = equal_samples(images.x, target.x, 12, 4)
    fs, ft = (_outputs(source, x)[1] for x in (xs, xt))
    expected = domain_scores(fs, ft, permutations=200, seed=4)["mmd_p_value"]
    assert 0.05 < expected < 1.0 and p_values(4)[0] == expected and p_values(4) == p_values(4)
