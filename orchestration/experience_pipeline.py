"""Asynchronous experience: a producer thread keeps sampling and scoring while the learner trains.

Scored batches flow through a bounded queue (``pipeline.queue_size``); each completion carries the policy
version it was sampled with, and the controller drops a batch whose lag exceeds ``pipeline.max_policy_lag``
(counted). Weight pushes reach the engines between generation calls: Ray runs an actor's calls in order, so
a push waits for the generate in flight on each worker and the next generate sees the new weights.

For a checkpoint the producer is paused between batches; the batches it had queued but the learner had not
trained on are saved with the checkpoint (msgpack) and queued again first on resume.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class ExperienceItem:
    tag: int                 # production counter: the sampling seed's step
    indices: list[int]
    groups: list             # list[PreferenceGroup]
    metrics: dict


class ExperiencePipeline:
    def __init__(self, produce: Callable[[int], ExperienceItem], queue_size: int, first_tag: int) -> None:
        self._produce = produce
        self._queue: queue.Queue[ExperienceItem] = queue.Queue(maxsize=queue_size)
        self._next_tag = first_tag
        self._running = threading.Event()
        self._running.set()
        self._idle = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._restored: list[ExperienceItem] = []
        self._pending: ExperienceItem | None = None
        self._thread = threading.Thread(target=self._loop, name="experience-producer", daemon=True)

    @property
    def next_tag(self) -> int:
        return self._next_tag

    def start(self, restored: list[ExperienceItem] = ()) -> None:
        """``restored``: batches saved with a checkpoint, handed out before anything new."""
        self._restored = list(restored)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:  # the check and the idle flag change together (see pause_and_snapshot)
                    paused = not self._running.is_set()
                    if paused:
                        self._idle.set()
                    else:
                        self._idle.clear()
                if paused:
                    self._running.wait(0.1)
                    continue
                item = self._produce(self._next_tag)
                self._next_tag += 1
                with self._lock:
                    self._pending = item
                    self._idle.set()  # nothing is being produced: a snapshot sees the queue + this item
                while not self._stop.is_set():
                    with self._lock:
                        try:
                            self._queue.put_nowait(item)
                            self._pending = None
                            break
                        except queue.Full:
                            pass
                    self._stop.wait(0.05)
        except BaseException as exc:  # surfaced in the controller's thread by get()
            self._error = exc
        finally:
            self._idle.set()

    def get(self) -> ExperienceItem:
        if self._restored:
            return self._restored.pop(0)
        while True:
            if self._error is not None:
                raise self._error
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                if not self._thread.is_alive() and self._error is None:
                    raise RuntimeError("the experience producer stopped")

    def pause_and_snapshot(self) -> list[ExperienceItem]:
        """Stop producing after the batch in progress; return (without removing) every produced batch not yet
        handed to the learner, oldest first."""
        with self._lock:
            self._running.clear()
        while not self._idle.wait(0.1):
            if self._error is not None:
                raise self._error
        with self._lock:
            return (list(self._restored) + list(self._queue.queue)
                    + ([self._pending] if self._pending is not None else []))

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        self._thread.join(timeout=600)
