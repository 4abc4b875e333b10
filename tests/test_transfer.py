"""Target training: frozen-prefix caching is exact, L2-SP, paired seeds, NaN losses."""

import pytest
import torch

from pipeline.data.images.transforms import RandomShift
from pipeline.errors import TrainingError
from pipeline.models.predict import predict_logits
from pipeline.models.small_cnn import small_cnn
from pipeline.objectives.base import StepOutputs
from pipeline.objectives.l2sp import L2SP
from pipeline.transfer.arms import init_model
from pipeline.transfer.fit import fit
from pipeline.transfer.prefix_cache import PrefixCache, prefix_activations
from pipeline.transfer.settings import FitSettings

QUIET = {"enable_progress_bar": False}


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _source_state():
    torch.manual_seed(123)
    return small_cnn(10, width=8).state_dict()


def _small(c):
    return small_cnn(c, width=8)


def _run(k, cache, seed=0, shift=0, caching=True, factory=_small):
    model = init_model(factory, 10, seed=seed, source_state=_source_state(), init_groups=4)
    settings = FitSettings(
        epochs=3,
        batch_size=8,
        head_lr=0.05,
        backbone_lr=0.02,
        freeze_groups=k,
        seed=seed,
        augment=RandomShift(shift) if shift else None,
    )
    return fit(
        model,
        _data(32, 1),
        _data(16, 2),
        settings,
        trainer_kwargs=QUIET,
        cache=cache,
        cache_key="src" if cache else None,
        prefix_caching=caching,
    )


@pytest.mark.parametrize("k", [1, 2, 4])
def test_cached_and_uncached_training_agree(k):
    """Frozen-prefix caching is an optimisation only: same seed, same predictions."""
    cached = _run(k, PrefixCache())
    uncached = _run(k, None, caching=False)
    assert cached.cached_prefix and not uncached.cached_prefix
    x = _data(20, 3)[0]
    torch.testing.assert_close(
        predict_logits(cached.model, x), predict_logits(uncached.model, x), rtol=1e-4, atol=1e-5
    )
    assert [round(h["val/acc"], 6) for h in cached.history] == [
        round(h["val/acc"], 6) for h in uncached.history
    ]


def _with_pool(extra):
    def factory(c):
        net = _small(c)
        net.pool = torch.nn.Sequential(net.pool, extra())
        return net

    return factory


def _probe(factory, caching):
    """A linear probe (every group frozen) and what its prefix cache holds (tensor ranks)."""
    cache = PrefixCache()
    result = _run(4, cache, caching=caching, factory=factory)
    return result, [v.dim() for v in cache._store.values()]


def test_a_linear_probe_caches_what_the_head_sees():
    probe, dims = _probe(_small, True)
    assert dims == [2, 2]  # (n, feature_dim) for the train and val streams: steps run the head
    x = _data(32, 1)[0]
    features = prefix_activations(probe.model, x, probe.model.num_groups + 1)
    torch.testing.assert_close(features, probe.model.eval().forward_features(x))


@pytest.mark.parametrize(
    "extra",
    [
        lambda: torch.nn.Dropout(0.5),  # random in training
        lambda: torch.nn.BatchNorm1d(32, affine=False, track_running_stats=False),  # per batch
        lambda: torch.nn.Linear(32, 32),  # weights
    ],
)
def test_a_pool_that_is_not_a_fixed_function_runs_at_every_step(extra):
    cached, dims = _probe(_with_pool(extra), True)
    uncached, _ = _probe(_with_pool(extra), False)
    assert dims == [4, 4]  # the last group's maps; the pool runs in training as without a cache
    for key in ("train/loss", "val/acc"):
        assert [h[key] for h in cached.history] == [h[key] for h in uncached.history]
    x = _data(20, 3)[0]
    torch.testing.assert_close(predict_logits(cached.model, x), predict_logits(uncached.model, x))
    with pytest.raises(ValueError, match="not a fixed function"):
        prefix_activations(cached.model, x, cached.model.num_groups + 1)


def test_prefix_cache_computes_each_prefix_once():
    cache = PrefixCache()
    _run(2, cache)
    _run(2, cache)
    assert cache.misses == 2 and cache.hits == 2  # train + val, once each


def test_same_seed_gives_same_metrics():
    a, b = _run(0, None, seed=5), _run(0, None, seed=5)
    for key in ("train/loss", "val/loss", "val/acc"):
        assert [h[key] for h in a.history] == [h[key] for h in b.history]
    x = _data(20, 3)[0]
    assert torch.equal(predict_logits(a.model, x), predict_logits(b.model, x))


def test_l2sp_penalty_is_zero_at_the_source_weights_and_grows_away_from_them():
    torch.manual_seed(0)
    model = small_cnn(10, width=8)
    penalty = L2SP(alpha=0.1, beta=0.0)
    penalty.setup(model)
    step = StepOutputs(x={}, y={}, features={}, logits={}, model=model)
    assert float(penalty(step).detach()) == 0.0
    with torch.no_grad():
        model.groups[1][0].weight.add_(0.5)
    n = model.groups[1][0].weight.numel()
    assert float(penalty(step).detach()) == pytest.approx(0.5 * 0.1 * n * 0.25, rel=1e-5)


def test_paired_arms_share_the_random_init_of_what_they_do_not_copy():
    src = _source_state()
    a = init_model(lambda c: small_cnn(c, width=8), 3, seed=7, source_state=src, init_groups=2)
    b = init_model(lambda c: small_cnn(c, width=8), 3, seed=7, source_state=None, init_groups=0)
    for key in ("groups.3.0.weight", "head.weight"):
        assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert torch.equal(a.state_dict()["groups.0.0.weight"], src["groups.0.0.weight"])
    assert not torch.equal(b.state_dict()["groups.0.0.weight"], src["groups.0.0.weight"])


def test_nan_loss_stops_training_with_a_clear_error():
    model = small_cnn(10, width=8)
    settings = FitSettings(epochs=3, batch_size=8, head_lr=0.1, backbone_lr=0.1)
    x, y = _data(32, 1)
    x[5, 0, 3, 3] = float("nan")
    with pytest.raises(TrainingError, match=r"NaN/inf in epoch 0.*transfer\.head_lr=0\.1"):
        fit(model, (x, y), _data(16, 2), settings, trainer_kwargs=QUIET)


@pytest.mark.parametrize("members", [1, 3])
def test_validation_in_cache_sized_chunks_scores_as_one_batch(monkeypatch, members):
    import dataclasses

    import pipeline.models.predict as predict
    from pipeline.transfer.fit import Member, fit_ensemble

    g = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 4
    x = torch.randn(40, 1, 16, 16, generator=g) + y.view(-1, 1, 1, 1) / 2
    base = FitSettings(epochs=3, batch_size=8, head_lr=0.05, backbone_lr=0.01)

    def histories(chunk: int) -> list[list[dict]]:
        monkeypatch.setattr(predict, "CPU_BATCH", chunk)
        group = []
        for seed in range(members):
            torch.manual_seed(seed)
            s = dataclasses.replace(base, seed=seed)
            group.append(Member(small_cnn(4), (x[:12], y[:12]), s))
        kw = {"enable_progress_bar": False, "deterministic": True}
        return [r.history for r in fit_ensemble(group, (x, y), trainer_kwargs=kw)]

    whole, chunked = histories(1000), histories(16 * members)  # 40 images: 16 + 16 + 8
    for a, b in zip(whole, chunked, strict=True):
        assert [r["val/acc"] for r in a] == [r["val/acc"] for r in b]
        assert [r["val/loss"] for r in a] == pytest.approx([r["val/loss"] for r in b], rel=1e-5)
        assert [r["train/loss"] for r in a] == pytest.approx([r["train/loss"] for r in b])


def test_the_startup_objects_are_frozen_once_per_process_after_a_collection():
    import subprocess
    import sys

    # in a fresh process: garbage alive before the freeze is collected, not frozen for good
    script = """
import gc, weakref
from pipeline.startup import freeze_startup_objects
class Node: pass
a = Node(); a.self = a; dead = weakref.ref(a); del a
freeze_startup_objects()
frozen = gc.get_freeze_count()
b = Node(); b.self = b; later = weakref.ref(b); del b
freeze_startup_objects()
gc.collect()
print(dead() is None, frozen > 0, gc.get_freeze_count() == frozen, later() is None)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True", "True"]


def test_a_fractional_limit_val_batches_still_validates():
    # validation is one Lightning batch unless the user limits validation batches; then they
    # are inference batches (256 images on CPUs): 600 images, 3 batches, half of them validated
    g = torch.Generator().manual_seed(0)
    y = torch.arange(600) % 4
    x = torch.randn(600, 1, 16, 16, generator=g)
    settings = FitSettings(epochs=2, batch_size=8, head_lr=0.05, backbone_lr=0.01)
    kw = {"enable_progress_bar": False, "limit_val_batches": 0.5}
    torch.manual_seed(0)
    result = fit(small_cnn(4), (x[:16], y[:16]), (x, y), settings, trainer_kwargs=kw)
    assert len(result.history) == 2 and all(0 <= r["val/acc"] <= 1 for r in result.history)


def test_a_stop_whose_exception_was_swallowed_still_stops_training():
    # a SIGTERM handled inside a finalizer: Python prints "Exception ignored in" and carries on
    from pipeline import stops
    from pipeline.errors import Interrupted

    g = torch.Generator().manual_seed(0)
    y = torch.arange(16) % 4
    x = torch.randn(16, 1, 16, 16, generator=g)
    settings = FitSettings(epochs=50, batch_size=8, head_lr=0.05, backbone_lr=0.01)
    kw = {"enable_progress_bar": False}
    stops.request(Interrupted(15))
    try:
        with pytest.raises(Interrupted):
            fit(small_cnn(4), (x, y), (x, y), settings, trainer_kwargs=kw)
    finally:
        stops.clear()
    stops.raise_if_requested()  # cleared: nothing pending


@pytest.mark.parametrize("kept", [True, False], ids=["trainer-dicts", "self.log-fallback"])
def test_callbacks_and_the_progress_bar_see_each_epochs_val_acc(kept, monkeypatch):
    # val/acc is written into the trainer's metric dicts (or, where Lightning would not keep
    # that, logged with self.log): Lightning's own callbacks and the progress bar read it there
    from lightning.pytorch.callbacks import Callback, EarlyStopping

    from pipeline.transfer import module

    if not kept:
        monkeypatch.setattr(module, "_writes_kept", lambda trainer: False)

    class Seen(Callback):
        def __init__(self):
            self.callback, self.bar = [], []

        def on_validation_end(self, trainer, _):
            self.callback.append(trainer.callback_metrics["val/acc"])
            self.bar.append(trainer.progress_bar_metrics["val/acc"])

    def run(callback):
        settings = FitSettings(epochs=4, batch_size=8, head_lr=0.05, backbone_lr=0.02)
        torch.manual_seed(0)
        model = small_cnn(10, width=8)
        return fit(
            model, _data(24, 1), _data(40, 2), settings, trainer_kwargs=QUIET, callbacks=[callback]
        )

    seen = Seen()
    result = run(seen)
    history = [r["val/acc"] for r in result.history]
    assert len(history) == 4 and len(set(history)) > 1  # it changes over the epochs
    assert [float(t) for t in seen.callback] == pytest.approx(history)  # float32 tensors
    assert all(isinstance(t, torch.Tensor) for t in seen.callback)
    assert seen.bar == pytest.approx(history)
    # Lightning's EarlyStopping raises when its monitor is missing; a threshold every accuracy
    # reaches stops training after the first epoch
    stop = EarlyStopping(monitor="val/acc", mode="max", stopping_threshold=0.0)
    result = run(stop)
    assert len(result.history) == 1 and stop.stopped_epoch == 0
