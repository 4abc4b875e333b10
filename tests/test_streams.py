"""Seeded on-device streams: whole batches, reshuffled each pass, several streams per step."""

import numpy as np
import pytest
import torch

from pipeline.data.images.transforms import RandomShift
from pipeline.data.streams import (
    StackedBatches,
    StepBatches,
    Stream,
    stack_members,
    stream_seed,
)


def _order(stream: Stream) -> list[int]:
    return [int(v) for x, _ in stream for v in x[:, 0]]


def _stream(n: int, batch: int, seed: int, **kw) -> Stream:
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    return Stream(x, torch.arange(n), batch, shuffle=True, seed=seed, **kw)


def test_a_pass_visits_every_row_once_and_reshuffles_on_the_next():
    s = _stream(10, 4, seed=3)
    assert len(s) == 3
    first, second = _order(s), _order(s)
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second


def test_same_seed_same_batches_other_seed_other_order():
    assert _order(_stream(20, 8, 1)) == _order(_stream(20, 8, 1))
    assert _order(_stream(20, 8, 1)) != _order(_stream(20, 8, 2))


def test_labels_follow_their_rows_and_unlabelled_streams_yield_none():
    s = _stream(9, 4, seed=0)
    for x, y in s:
        assert torch.equal(x[:, 0].long(), y)
    (x, y), *_ = Stream(torch.zeros(5, 2), None, 5)
    assert y is None and x.shape == (5, 2)


def test_each_step_draws_every_stream_and_an_epoch_is_one_pass_of_the_driver():
    target = _stream(6, 4, seed=0)
    other = _stream(5, 4, seed=stream_seed(0, "source"))
    steps = StepBatches({"target": target, "source": other}, "target")
    assert len(steps) == 2
    epochs = [list(steps) for _ in range(3)]
    assert all(len(e) == 2 and set(e[0]) == {"target", "source"} for e in epochs)
    # the other stream cycles across epochs without restarting: 6 draws of its 5 rows + reshuffle
    seen = [int(v) for e in epochs for step in e for v in step["source"][0][:, 0]]
    assert sorted(seen[:5]) == list(range(5))


def _members(source: np.ndarray, n: int = 3, **target_kw) -> list[StepBatches]:
    """``n`` members: labelled target rows and seeds of their own, one source array converted
    per member (separate tensors over the same memory, as the pipeline gives each seed), and
    unlabelled rows of their own (None labels). The source's 9 rows make 3 batches a pass
    against the target's 2 steps an epoch, so it cycles across epochs."""
    members = []
    for seed in range(n):
        target = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(seed))
        unlabelled = torch.randn(7, 2, 3, generator=torch.Generator().manual_seed(10 + seed))
        kw = {"shuffle": True, **target_kw}
        streams = {
            "target": Stream(target, torch.arange(6) + seed, 4, seed=seed, **kw),
            "source": Stream(
                torch.from_numpy(source),
                torch.arange(len(source)),
                4,
                shuffle=True,
                seed=stream_seed(seed, "source"),
            ),
            "unlabelled": Stream(
                unlabelled, None, 4, shuffle=True, seed=stream_seed(seed, "unlabelled")
            ),
        }
        members.append(StepBatches(streams, "target"))
    return members


def _assert_each_member_gets_its_own_batches(stacked, alone, epochs=4):
    for _ in range(epochs):
        together, apart = list(stacked), [list(m) for m in alone]
        assert len(together) == len(apart[0]) == 2
        for j, step in enumerate(together):
            assert set(step) == {"target", "source", "unlabelled"}
            for name, (x, y) in step.items():
                assert x.shape[1] == len(apart)
                for i, member in enumerate(apart):
                    own_x, own_y = member[j][name]
                    assert torch.equal(x[:, i], own_x)
                    assert (y is None) == (own_y is None)
                    if y is not None:
                        assert torch.equal(y[:, i], own_y)


def test_stacked_members_get_each_its_own_batches_epoch_after_epoch():
    """The stacked ensemble batches (one gather of every member's rows) are, member by member,
    the batches each member's own streams yield, over epochs in which the source cycles on
    without restarting."""
    source = np.random.default_rng(0).normal(size=(9, 2, 3)).astype(np.float32)
    stacked, alone = StackedBatches(_members(source)), _members(source)
    assert len(stacked) == 2
    assert stacked._stacked is not None  # one gather a step
    assert stacked._stacked.streams["source"].x.stride(1) == 0  # the shared source: a view
    _assert_each_member_gets_its_own_batches(stacked, alone)


@pytest.mark.parametrize("case", ["unshuffled", "unlike"])
def test_unshuffled_or_unlike_members_get_their_own_batches_too(case):
    """Unshuffled targets (slices of every member), and members whose streams differ in more
    than data and seeds (one unshuffled target: each step stacks the members' own batches)."""
    source = np.random.default_rng(1).normal(size=(9, 2, 3)).astype(np.float32)
    if case == "unshuffled":
        members = lambda: _members(source, shuffle=False)  # noqa: E731
    else:
        members = lambda: [*_members(source, 2), *_members(source, 1, shuffle=False)]  # noqa: E731
    stacked = StackedBatches(members())
    assert (stacked._stacked is None) == (case == "unlike")  # unlike: stacked step by step
    _assert_each_member_gets_its_own_batches(stacked, members())


def test_members_sharing_memory_stack_as_a_view_and_others_are_copied():
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    shared = stack_members([torch.from_numpy(a) for _ in range(5)])  # one array, 5 conversions
    assert shared.shape == (4, 5, 3) and shared.stride(1) == 0  # no copy
    assert shared.data_ptr() == torch.from_numpy(a).data_ptr()
    apart = stack_members([torch.from_numpy(a), torch.from_numpy(a.copy())])
    assert apart.stride(1) != 0 and torch.equal(apart[:, 0], apart[:, 1])
    # other rows of the same memory are other data
    rows = torch.from_numpy(np.arange(15, dtype=np.float32).reshape(5, 3))
    other = stack_members([rows[:4], rows[1:]])
    assert torch.equal(other[:, 0], rows[:4]) and torch.equal(other[:, 1], rows[1:])


def test_stream_seeds_differ_per_stream_and_keep_the_plain_seed_for_the_target():
    assert stream_seed(7, "target") == 7
    assert len({stream_seed(7, n) for n in ("target", "source", "unlabelled")}) == 3


def test_shift_augmentation_rolls_images_reproducibly():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    a = [b for b, _ in Stream(x, None, 2, seed=1, augment=RandomShift(1))]
    b = [b for b, _ in Stream(x, None, 2, seed=1, augment=RandomShift(1))]
    assert torch.equal(a[0], b[0])
    assert sorted(a[0].flatten().tolist()) == sorted(x.flatten().tolist())  # a roll, not a crop


def test_an_unshuffled_stream_yields_views_in_order():
    import torch

    from pipeline.data.streams import Stream

    x = torch.arange(10.0).view(10, 1).expand(10, 3)  # a view shared by 3 members
    y = torch.arange(10)
    batches = list(Stream(x, y, 4))
    assert [b.tolist() for _, b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(b.data_ptr() == x[4 * i :].data_ptr() for i, (b, _) in enumerate(batches))


def test_an_in_place_augmentation_never_changes_the_stream_data():
    import torch

    from pipeline.data.streams import Stream

    x = torch.zeros(6, 1, 2, 2)
    stream = Stream(x, None, 4, augment=lambda b, g: b.add_(1.0))
    assert [float(b.sum()) for b, _ in stream] == [16.0, 8.0]
    assert float(x.sum()) == 0.0
