"""Asynchronous experience: a producer thread keeps sampling and scoring while the learner trains.

Scored batches flow through a bounded queue (``pipeline.queue_size``); each completion carries the policy
version it was sampled with. Before starting a batch the producer asks ``may_start(ahead)``, with ``ahead``
the batches produced but not yet finished by the learner: the controller answers whether a batch started now
would still be within ``pipeline.max_policy_lag`` versions when its turn comes, so the producer waits instead
of sampling a batch that would be thrown away (on 2 shared cores that waste slowed the learner). The
controller still drops and counts any batch that arrives too old. Weight pushes reach the engines between
generation calls: Ray runs an actor's calls in order, so a push waits for the generate in flight on each
worker and the next generate sees the new weights.

For a checkpoint the producer is paused between batches; the batches it had queued but the learner had not
trained on are saved with the checkpoint (msgpack) and queued again first on resume.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ExperienceItem:
    tag: int                 # production counter: the sampling seed's step
    indices: list[int]
    groups: list             # list[PreferenceGroup]
    metrics: dict
    counts: dict[str, int] = field(default_factory=dict)  # what producing it cost (RunState counters' increments)


class ExperiencePipeline:
    def __init__(self, produce: Callable[[int], ExperienceItem], queue_size: int, first_tag: int,
                 may_start: Callable[[int], bool] | None = None) -> None:
        self._produce = produce
        self._may_start = may_start or (lambda ahead: True)
        self._size = queue_size
        self._queue: collections.deque[ExperienceItem] = collections.deque()
        self._next_tag = first_tag
        # One condition guards everything below; every change notifies, so nobody polls.
        self._cond = threading.Condition()
        self._paused = False
        self._idle = True        # the producer is between batches (a snapshot may be taken)
        self._stopping = False
        self._error: BaseException | None = None
        self._restored: list[ExperienceItem] = []
        self._pending: ExperienceItem | None = None
        self._outstanding = 0    # produced (or restored) and not yet finished by the learner
        self._thread = threading.Thread(target=self._loop, name="experience-producer", daemon=True)

    @property
    def next_tag(self) -> int:
        return self._next_tag

    def start(self, restored: list[ExperienceItem] = ()) -> None:
        """``restored``: batches saved with a checkpoint, handed out before anything new."""
        self._restored = list(restored)
        self._outstanding = len(self._restored)
        self._thread.start()

    def _wait(self, ready: Callable[[], bool]) -> bool:
        """Under the condition: wait until ``ready()`` or stopping; False when stopping."""
        while not self._stopping and not ready():
            self._cond.wait(0.5)  # the timeout only re-checks may_start, whose inputs live elsewhere
        return not self._stopping

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._idle = True
                    self._cond.notify_all()
                    if not self._wait(lambda: not self._paused and self._may_start(self._outstanding)):
                        return
                    self._idle = False
                    self._outstanding += 1
                item = self._produce(self._next_tag)
                with self._cond:
                    self._next_tag += 1
                    self._pending = item
                    self._idle = True  # nothing is being produced: a snapshot sees the queue + this item
                    self._cond.notify_all()
                    if not self._wait(lambda: len(self._queue) < self._size):
                        return
                    self._queue.append(item)
                    self._pending = None
                    self._cond.notify_all()
        except BaseException as exc:  # surfaced in the controller's thread by get()
            with self._cond:
                self._error = exc
                self._idle = True
                self._cond.notify_all()

    def get(self) -> ExperienceItem:
        with self._cond:
            if self._restored:
                return self._restored.pop(0)
            while not self._queue:
                if self._error is not None:
                    raise self._error
                if not self._thread.is_alive():
                    raise RuntimeError("the experience producer stopped")
                self._cond.wait(0.5)
            item = self._queue.popleft()
            self._cond.notify_all()
            return item

    def depth(self) -> int:
        """Batches ready for the learner (queued, restored, or produced and waiting for room)."""
        with self._cond:
            return len(self._queue) + len(self._restored) + (self._pending is not None)

    def task_done(self) -> None:
        """The learner has finished with a batch from ``get`` (trained and pushed, or dropped)."""
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def pause_and_snapshot(self) -> list[ExperienceItem]:
        """Stop producing after the batch in progress; return (without removing) every produced batch not yet
        handed to the learner, oldest first."""
        with self._cond:
            self._paused = True
            while not self._idle:
                self._cond.wait(0.5)
            # A producer that failed produced nothing more: what it had queued is still good (the error itself
            # is raised by the next get), so a run stopping on that error can checkpoint it.
            return (list(self._restored) + list(self._queue)
                    + ([self._pending] if self._pending is not None else []))

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=600)
