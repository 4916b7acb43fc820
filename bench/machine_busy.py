"""Share of the whole machine's CPU time that was busy over a window, from /proc/stat (stdlib only).

    busy = MachineBusy(); busy.start(); ...work...; share = busy.stop()   # in [0, 1]

Busy is every CPU-time field of the aggregate ``cpu`` line except idle and iowait, over all cores, so 0.5
on a 2-core machine means one core's worth of work (from any process, not only this one).
"""

from __future__ import annotations

_IDLE, _IOWAIT = 3, 4  # field positions after "cpu": user nice system idle iowait irq softirq steal guest...


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the aggregate ``cpu`` line. guest time is already counted in user."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    total = sum(fields[:8])  # user..steal; guest and guest_nice are part of user and nice
    return total - fields[_IDLE] - fields[_IOWAIT], total


class MachineBusy:
    def __init__(self) -> None:
        self._begin: tuple[int, int] | None = None

    def start(self) -> None:
        self._begin = _cpu_times()

    def stop(self) -> float:
        """Busy share of the machine's CPU time since ``start()``."""
        if self._begin is None:
            raise RuntimeError("MachineBusy.stop() before start()")
        busy, total = _cpu_times()
        busy, total = busy - self._begin[0], total - self._begin[1]
        return min(1.0, max(0.0, busy / total)) if total > 0 else 0.0
