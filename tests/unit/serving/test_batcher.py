"""The batcher as a state machine: time passed in, no model, no event loop."""

from __future__ import annotations

import numpy as np
import pytest

from modelbay.serving.batcher import Batch, Batcher, Pending, QueueFull


def req(
    rows: int = 1,
    at: float = 0.0,
    *,
    cols: int = 3,
    dtype: type = np.float32,
    deadline: float | None = None,
    outputs: tuple[str, ...] | None = None,
    fill: float = 0.0,
) -> Pending:
    x: np.ndarray = np.full((rows, cols), fill, dtype=dtype)
    return Pending({"x": x}, at, deadline=deadline, outputs=outputs)


def tagged(rows: int, tag: int, at: float, dtype: type, deadline: float | None) -> Pending:
    """A request whose rows hold `tag * 1000 + row`, so rows can be traced back."""
    x: np.ndarray = (tag * 1000 + np.arange(rows)).astype(dtype).reshape(rows, 1)
    return Pending({"x": x, "y": x * 2}, at, deadline=deadline)


def test_pending_rejects_inputs_with_different_row_counts() -> None:
    with pytest.raises(ValueError, match="'a' has 2, 'b' has 3"):
        Pending({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}, 0.0)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [({}, "at least one input"), ({"s": np.zeros(())}, "'s' is a scalar")],
)
def test_pending_rejects_requests_without_a_row_dimension(
    inputs: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Pending(inputs, 0.0)


def test_key_ignores_row_count_and_input_order() -> None:
    a = Pending({"a": np.zeros((1, 4)), "b": np.zeros((1,), np.int8)}, 0.0)
    b = Pending({"b": np.zeros((7,), np.int8), "a": np.zeros((7, 4))}, 0.0)
    assert a.key == b.key
    assert a.rows == 1
    assert b.rows == 7


def test_empty_output_list_means_all_outputs() -> None:
    assert req(outputs=()).outputs is None


@pytest.mark.parametrize(
    ("max_batch_size", "max_delay_s", "capacity"), [(0, 0.1, 1), (1, -0.1, 1), (1, 0.1, 0)]
)
def test_batcher_rejects_invalid_settings(
    max_batch_size: int, max_delay_s: float, capacity: int
) -> None:
    with pytest.raises(ValueError, match="must be >="):
        Batcher(max_batch_size, max_delay_s, capacity)


def test_batch_waits_for_the_delay_when_not_full() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.01, capacity=100)
    b.add(req(2, at=1.0))
    b.add(req(3, at=1.005))
    assert b.next_batch(1.009) is None
    batch = b.next_batch(1.01)
    assert batch is not None
    assert batch.rows == 5
    assert len(batch.items) == 2
    assert len(b) == 0


def test_batch_is_released_when_full_before_the_delay() -> None:
    b = Batcher(max_batch_size=4, max_delay_s=10.0, capacity=100)
    for _ in range(5):
        b.add(req(1, at=0.0))
    batch = b.next_batch(0.0)
    assert batch is not None
    assert batch.rows == 4
    assert b.next_batch(0.0) is None
    assert len(b) == 1


def test_zero_delay_releases_whatever_is_queued_at_once() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.0, capacity=100)
    b.add(req(1))
    b.add(req(2))
    batch = b.next_batch(0.0)
    assert batch is not None
    assert batch.rows == 3


def test_request_larger_than_max_batch_runs_alone() -> None:
    b = Batcher(max_batch_size=4, max_delay_s=10.0, capacity=100)
    big, small = req(9), req(1)
    b.add(big)
    b.add(small)
    batch = b.next_batch(0.0)
    assert batch is not None
    assert batch.items == [big]
    assert batch.rows == 9
    assert b.next_batch(0.0) is None


def test_batch_stops_before_a_request_that_would_overflow_it() -> None:
    b = Batcher(max_batch_size=4, max_delay_s=0.0, capacity=100)
    first, second, third = req(3), req(2), req(1)
    for p in (first, second, third):
        b.add(p)
    batches = [b.next_batch(0.0), b.next_batch(0.0)]
    assert [x.items if x else None for x in batches] == [[first], [second, third]]


def test_requests_with_different_trailing_shapes_never_share_a_batch() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.0, capacity=100)
    three, four = req(1, cols=3), req(1, cols=4)
    b.add(three)
    b.add(four)
    first, second = b.next_batch(0.0), b.next_batch(0.0)
    assert first is not None
    assert second is not None
    assert (first.items, second.items) == ([three], [four])


def test_requests_with_different_dtypes_never_share_a_batch() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.0, capacity=100)
    b.add(req(1, dtype=np.float32))
    b.add(req(1, dtype=np.float64))
    sizes = [len(x.items) for x in (b.next_batch(0.0), b.next_batch(0.0)) if x]
    assert sizes == [1, 1]


def test_ready_key_with_the_oldest_request_is_served_first() -> None:
    b = Batcher(max_batch_size=2, max_delay_s=1.0, capacity=100)
    old = req(1, at=0.0, cols=3)
    full = [req(1, at=0.5, cols=4), req(1, at=0.5, cols=4)]
    b.add(old)
    for p in full:
        b.add(p)
    # Only the full key is ready at 0.6; at 1.0 both are and the older one goes first.
    early = b.next_batch(0.6)
    assert early is not None
    assert early.items == full
    b.add(req(1, at=0.7, cols=4))
    b.add(req(1, at=0.7, cols=4))
    late = b.next_batch(1.0)
    assert late is not None
    assert late.items == [old]


def test_expired_requests_are_reported_not_batched() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.0, capacity=100)
    late, fine = req(1, deadline=1.0), req(1, deadline=5.0)
    b.add(late)
    b.add(fine)
    batch = b.next_batch(1.0)
    assert batch is not None
    assert batch.items == [fine]
    assert b.expired(1.0) == [late]
    assert b.expired(1.0) == []


def test_expired_removes_requests_whose_deadline_passed() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=10.0, capacity=100)
    soon, later, never = req(1, deadline=1.0), req(1, deadline=2.0), req(1)
    for p in (later, soon, never):
        b.add(p)
    assert b.expired(0.5) == []
    assert b.expired(2.0) == [soon, later]
    assert len(b) == 1


def test_cancelled_request_is_not_run() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.0, capacity=100)
    gone, kept = req(1), req(2)
    b.add(gone)
    b.add(kept)
    assert b.cancel(gone.token) is True
    assert len(b) == 1
    assert b.queued_rows == 2
    batch = b.next_batch(0.0)
    assert batch is not None
    assert batch.items == [kept]


def test_cancel_of_a_request_no_longer_queued_returns_false() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.0, capacity=100)
    p = req(1)
    b.add(p)
    assert b.next_batch(0.0) is not None
    assert b.cancel(p.token) is False
    assert b.cancel(object()) is False


def test_cancelled_request_is_not_reported_as_expired() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=10.0, capacity=100)
    p = req(1, deadline=1.0)
    b.add(p)
    b.cancel(p.token)
    assert b.expired(2.0) == []
    assert b.wait_time(2.0) is None


def test_adding_the_same_token_twice_is_an_error() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.0, capacity=100)
    p = req(1)
    b.add(p)
    with pytest.raises(ValueError, match="already queued"):
        b.add(Pending(p.inputs, 0.0, token=p.token))


def test_full_queue_raises_queue_full_with_retry_after() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.02, capacity=2)
    b.add(req(1))
    b.add(req(1))
    with pytest.raises(QueueFull, match="capacity 2") as caught:
        b.add(req(1))
    assert caught.value.retry_after_s == pytest.approx(0.05)
    assert len(b) == 2


def test_retry_after_estimates_the_time_to_serve_the_backlog() -> None:
    b = Batcher(max_batch_size=2, max_delay_s=0.0, capacity=4)
    b.add(req(2))
    first = b.next_batch(0.0)
    assert first is not None
    b.complete(first, 0.5)  # batches take 0.5 s
    for _ in range(4):
        b.add(req(1))
    two_replicas = [b.next_batch(1.0), b.next_batch(1.0)]
    assert all(two_replicas)
    for _ in range(4):
        b.add(req(2))
    with pytest.raises(QueueFull) as caught:
        b.add(req(1))
    # Eight rows wait (four batches) and two replicas are busy: 4 * 0.5 s / 2.
    assert caught.value.retry_after_s == pytest.approx(1.0)


def test_cancel_frees_room_in_a_full_queue() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.0, capacity=1)
    p = req(1)
    b.add(p)
    b.cancel(p.token)
    b.add(req(1))
    assert len(b) == 1


def test_running_counts_requests_until_their_batch_completes() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.0, capacity=100)
    b.add(req(1))
    b.add(req(1))
    batch = b.next_batch(0.0)
    assert batch is not None
    assert b.running == 2
    b.complete(batch, 0.1)
    assert b.running == 0
    with pytest.raises(ValueError, match="not running"):
        b.complete(batch, 0.2)


def test_wait_time_is_none_when_nothing_is_queued() -> None:
    assert Batcher(8, 0.01, 100).wait_time(0.0) is None


def test_wait_time_counts_down_to_the_oldest_requests_delay() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=0.01, capacity=100)
    b.add(req(1, at=1.0))
    b.add(req(1, at=1.004))
    assert b.wait_time(1.004) == pytest.approx(0.006)
    assert b.wait_time(1.02) == 0.0


def test_waking_after_wait_time_finds_the_batch_ready() -> None:
    rng = np.random.default_rng(1)
    for _ in range(1000):
        at, delay = float(rng.uniform(0, 1e5)), float(rng.uniform(0, 1))
        b = Batcher(max_batch_size=8, max_delay_s=delay, capacity=1)
        b.add(req(1, at=at))
        now = at + float(rng.uniform(0, delay))
        wait = b.wait_time(now)
        assert wait is not None
        assert b.next_batch(now + wait) is not None


def test_wait_time_is_zero_when_a_key_is_full() -> None:
    b = Batcher(max_batch_size=2, max_delay_s=10.0, capacity=100)
    b.add(req(2))
    assert b.wait_time(0.0) == 0.0


def test_wait_time_wakes_the_loop_for_the_next_deadline() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=10.0, capacity=100)
    b.add(req(1, at=0.0, deadline=3.0))
    assert b.wait_time(1.0) == pytest.approx(2.0)
    assert b.next_batch(3.0) is None
    # Expired but not yet collected: the loop must come back at once to answer it.
    assert b.wait_time(3.0) == 0.0
    assert len(b.expired(3.0)) == 1
    assert b.wait_time(3.0) is None


def test_deadlines_of_batched_requests_do_not_pile_up() -> None:
    b = Batcher(max_batch_size=2, max_delay_s=1000.0, capacity=10)
    slow = req(1, at=0.0, cols=7, deadline=100.0)
    b.add(slow)
    for _ in range(200):
        full = req(2, deadline=1000.0)
        b.add(full)
        batch = b.next_batch(0.0)
        assert batch is not None
        assert batch.items == [full]
    # Batched requests' deadline entries are dropped, not kept until their deadline.
    assert len(b._deadlines) <= 64
    assert b.expired(2000.0) == [slow]


def test_len_queued_rows_and_oldest_wait_track_the_queue() -> None:
    b = Batcher(max_batch_size=8, max_delay_s=10.0, capacity=100)
    assert (len(b), b.queued_rows, b.oldest_wait(5.0)) == (0, 0, 0.0)
    b.add(req(3, at=1.0))
    b.add(req(2, at=2.0, cols=5))
    assert (len(b), b.queued_rows, b.oldest_wait(5.0)) == (2, 5, 4.0)


def test_concatenated_batch_matches_unbatched_inputs() -> None:
    rng = np.random.default_rng(0)
    items = [
        Pending({"a": rng.normal(size=(n, 3)), "b": rng.integers(0, 9, size=(n,))}, 0.0)
        for n in (1, 4, 2)
    ]
    batch = Batch.of(items)
    assert batch.rows == 7
    for name in ("a", "b"):
        np.testing.assert_array_equal(
            batch.inputs[name], np.concatenate([p.inputs[name] for p in items])
        )


def test_single_request_batch_passes_its_arrays_without_copying() -> None:
    p = req(3)
    batch = Batch.of([p])
    assert batch.inputs["x"] is p.inputs["x"]


def test_batch_outputs_are_the_union_or_none_when_any_wants_all() -> None:
    a, b, c = req(1, outputs=("p", "q")), req(1, outputs=("q", "r")), req(1)
    assert Batch.of([a, b]).outputs == ("p", "q", "r")
    assert Batch.of([a, c]).outputs is None


def test_split_returns_each_request_its_rows_and_requested_outputs() -> None:
    a, b, c = req(2, outputs=("label",)), req(1), req(3, outputs=("score", "label"))
    batch = Batch.of([a, b, c])
    label, score = np.arange(6), np.arange(12.0).reshape(6, 2)
    parts = batch.split({"label": label, "score": score})
    assert [sorted(part) for part in parts] == [["label"], ["label", "score"], ["label", "score"]]
    np.testing.assert_array_equal(parts[0]["label"], [0, 1])
    np.testing.assert_array_equal(parts[1]["score"], [[4.0, 5.0]])
    np.testing.assert_array_equal(parts[2]["label"], [3, 4, 5])
    assert all(np.shares_memory(part["label"], label) for part in parts)


def test_split_rejects_an_output_whose_rows_differ_from_the_batch() -> None:
    batch = Batch.of([req(2), req(1)])
    with pytest.raises(ValueError, match="output 'bad' has 2 rows; the batch has 3"):
        batch.split({"good": np.zeros(3), "bad": np.zeros((2, 1))})
    with pytest.raises(ValueError, match="output 's' has a scalar"):
        batch.split({"s": np.zeros(())})


def test_split_rejects_a_requested_output_the_model_did_not_return() -> None:
    batch = Batch.of([req(1, outputs=("missing",))])
    with pytest.raises(ValueError, match="output 'missing' not returned; outputs are 'y'"):
        batch.split({"y": np.zeros(1)})


def test_random_sequences_preserve_every_request_exactly_once_with_its_own_rows() -> None:
    for seed in range(25):
        rng = np.random.default_rng(seed)
        max_batch = int(rng.integers(1, 9))
        b = Batcher(
            max_batch_size=max_batch, max_delay_s=float(rng.choice([0.0, 0.5])), capacity=40
        )
        now, tag = 0.0, 0
        added: dict[int, Pending] = {}
        order: dict[object, list[int]] = {}  # per key, tags in the order they were added
        done: dict[int, str] = {}
        for _ in range(400):
            op = rng.integers(0, 10)
            if op < 5:
                tag += 1
                rows = int(rng.integers(1, 6))
                dtype = np.int64 if rng.random() < 0.5 else np.float64
                deadline = now + float(rng.uniform(0.0, 2.0)) if rng.random() < 0.5 else None
                p = tagged(rows, tag, now, dtype, deadline)
                try:
                    b.add(p)
                except QueueFull:
                    assert len(b) == 40
                    continue
                added[tag] = p
                order.setdefault(p.key, []).append(tag)
            elif op < 7 and added:
                victim = int(rng.integers(max(1, tag - 20), tag + 1))
                if victim in added and b.cancel(added[victim].token):
                    assert victim not in done
                    done[victim] = "cancelled"
            elif op < 9:
                now += float(rng.uniform(0.0, 0.4))
            wait = b.wait_time(now)
            batch = b.next_batch(now)
            if wait is not None and wait > 0:
                assert batch is None
                assert b.expired(now) == []
            for p in b.expired(now):
                assert p.deadline is not None
                assert p.deadline <= now
                done[_tag_of(p)] = "expired"
            if batch is None:
                continue
            assert len({p.key for p in batch.items}) == 1
            assert batch.rows <= max_batch or len(batch.items) == 1
            outputs = {name: array.copy() for name, array in batch.inputs.items()}
            for p, part in zip(batch.items, batch.split(outputs), strict=True):
                t = _tag_of(p)
                assert t not in done
                assert p.deadline is None or p.deadline > now
                done[t] = "batched"
                for name, array in part.items():
                    np.testing.assert_array_equal(array, p.inputs[name])
            b.complete(batch, now)
        _drain(b, now, done)
        assert sorted(done) == sorted(added)
        for tags in order.values():
            batched = [t for t in tags if done[t] == "batched"]
            assert batched == sorted(batched)


def _tag_of(p: Pending) -> int:
    return int(p.inputs["x"][0, 0]) // 1000


def _drain(b: Batcher, now: float, done: dict[int, str]) -> None:
    while (wait := b.wait_time(now)) is not None:
        now += wait
        for p in b.expired(now):
            done[_tag_of(p)] = "expired"
        batch = b.next_batch(now)
        if batch is not None:
            for p in batch.items:
                done[_tag_of(p)] = "batched"
    assert len(b) == 0
    assert b.queued_rows == 0


def test_requests_of_a_model_without_a_batch_axis_run_alone_and_whole() -> None:
    # A model whose tensors have no variable first axis cannot have requests stacked: each
    # runs alone, scalars included, and its outputs come back as the model gave them.
    batcher = Batcher(16, 0.01, 100)
    first = Pending({"x": np.float32(1.0).reshape(())}, 0.0, alone=True)
    second = Pending({"x": np.ones((2, 3), np.float32)}, 0.0, alone=True)
    batcher.add(first)
    batcher.add(second)
    batches = [batcher.next_batch(1.0), batcher.next_batch(1.0)]
    assert [b.items for b in batches if b is not None] == [[first], [second]]
    scalar = np.float32(7.0).reshape(())
    assert batches[0] is not None
    assert batches[0].split({"y": scalar, "z": scalar}) == [{"y": scalar, "z": scalar}]


def test_take_all_empties_the_queue_oldest_first() -> None:
    batcher = Batcher(16, 1.0, 100)
    late, early = req(at=2.0), req(at=1.0)
    batcher.add(late)
    batcher.add(early)
    assert batcher.take_all() == [early, late]
    assert len(batcher) == 0
    assert batcher.next_batch(10.0) is None
