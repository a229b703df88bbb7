"""Time for the attestor: wall time for timestamps, monotonic time for pacing, both injectable.

Real mode uses :class:`SystemClock`. Tests and the demo hand in another :class:`Clock` (for example
:class:`ScaledClock`, which runs both clocks faster than real time, or a manual clock of their own).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def wall_ms(self) -> int:
        """Unix time in integer milliseconds (what samples and windows are stamped with)."""
        ...

    def wall_us(self) -> int:
        """Unix time in integer microseconds (what a simulated driver stamps its samples with)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (what loops are paced against)."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block up to ``seconds`` of this clock's time or until ``event`` is set; returns ``event.is_set()``."""
        ...


class SystemClock:
    """The machine's clocks."""

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def wall_us(self) -> int:
        return time.time_ns() // 1_000

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))


class ScaledClock:
    """Both clocks run ``speed`` times faster than real time from the moment of construction.

    For demos: a 60 s window closes every ``60 / speed`` real seconds and every timestamp stays consistent.
    """

    def __init__(self, speed: int, start_wall_ms: int | None = None) -> None:
        if speed < 1:
            raise ValueError("speed must be at least 1")
        self._speed = speed
        self._mono0 = time.monotonic()
        self._wall0 = time.time_ns() // 1_000_000 if start_wall_ms is None else start_wall_ms

    def monotonic(self) -> float:
        return self._mono0 + (time.monotonic() - self._mono0) * self._speed

    def wall_ms(self) -> int:
        return self.wall_us() // 1000

    def wall_us(self) -> int:
        return self._wall0 * 1000 + int((time.monotonic() - self._mono0) * 1_000_000 * self._speed)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds) / self._speed)
