"""The async producer thread with a small fake producer (the real one is exercised end to end)."""

import time

import pytest

from selfplay.orchestration.loop.pipeline import ExperienceItem, ExperiencePipeline


def _producer(delay=0.0, fail_at=None):
    def produce(tag):
        if tag == fail_at:
            raise ValueError("engine died")
        time.sleep(delay)
        return ExperienceItem(tag, [tag], [f"g{tag}"], {})
    return produce


def test_items_arrive_in_order_and_the_producer_runs_ahead_boundedly():
    p = ExperiencePipeline(_producer(), queue_size=2, first_tag=1)
    p.start()
    try:
        assert [p.get().tag for _ in range(5)] == [1, 2, 3, 4, 5]
        time.sleep(0.3)
        # queue of 2 full plus one produced item waiting for room: never more than that
        assert p.next_tag - 6 <= 3
    finally:
        p.stop()


def test_snapshot_holds_every_unconsumed_item_and_resume_continues():
    p = ExperiencePipeline(_producer(delay=0.01), queue_size=2, first_tag=1)
    p.start()
    try:
        assert p.get().tag == 1
        snapshot = p.pause_and_snapshot()
        tags = [i.tag for i in snapshot]
        assert tags == list(range(2, 2 + len(tags))) and len(tags) >= 1
        assert p.next_tag == tags[-1] + 1  # nothing produced beyond the snapshot while paused
        time.sleep(0.2)
        assert p.next_tag == tags[-1] + 1
        p.resume()
        got = [p.get().tag for _ in range(len(tags) + 2)]
        assert got == list(range(2, 2 + len(tags) + 2))
    finally:
        p.stop()


def test_restored_items_come_first():
    restored = [ExperienceItem(7, [0], ["old"], {}), ExperienceItem(8, [1], ["old"], {})]
    p = ExperiencePipeline(_producer(), queue_size=1, first_tag=9)
    p.start(restored)
    try:
        assert [p.get().tag for _ in range(4)] == [7, 8, 9, 10]
    finally:
        p.stop()


def test_producer_waits_while_may_start_says_no_and_task_done_wakes_it():
    seen = []

    def may_start(ahead):
        seen.append(ahead)
        return ahead < 2  # at most two batches produced and not yet finished

    p = ExperiencePipeline(_producer(), queue_size=5, first_tag=1, may_start=may_start)
    p.start()
    try:
        first = p.get()
        time.sleep(0.3)
        assert first.tag == 1 and p.next_tag == 3  # batches 1 and 2 made; 3 waits for a batch to finish
        p.task_done()
        assert p.get().tag == 2 and p.get().tag == 3
        time.sleep(0.3)
        assert p.next_tag == 4 and max(seen) == 2
    finally:
        p.stop()


def test_producer_errors_reach_the_consumer():
    p = ExperiencePipeline(_producer(fail_at=2), queue_size=1, first_tag=1)
    p.start()
    try:
        assert p.get().tag == 1
        with pytest.raises(ValueError, match="engine died"):
            p.get()
    finally:
        p.stop()
