"""An actor's start-up runs without automatic garbage collections, and what it made is frozen afterwards."""

import gc

from selfplay.actors.startup_gc import collector_paused


def test_no_automatic_collections_inside_and_the_start_up_objects_frozen_after():
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    gc.unfreeze()
    gc.callbacks.append(count)
    try:
        with collector_paused():
            made = [[object()] for _ in range(200_000)]  # far past the first generation's threshold
            assert not gc.isenabled()
        assert collections == []
        assert gc.isenabled() and gc.get_freeze_count() >= len(made)
        [[object()] for _ in range(200_000)]  # what comes after is collected again
        assert collections
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()
