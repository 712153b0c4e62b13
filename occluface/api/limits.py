"""Rate limits: token buckets per API key and per client address, kept in each server process.

``identify`` calls are limited per key and per client address, failed key attempts (missing, wrong, revoked or
expired keys) per client address. A bucket holds ``burst`` calls and refills at ``rate`` calls a second, so a gate
(a call every second or two) never meets the limit and a scraper firing hundreds of calls does at once. Over the
limit the answer is HTTP 429 with ``Retry-After``; the audit trail records it like every other call.
With ``occluface serve --workers N`` each process counts its own calls, so a client can reach N times the rate.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Rate:
    """``rate`` calls a second on average, ``burst`` at once; ``rate <= 0``: no limit."""

    rate: float
    burst: float

    @property
    def off(self) -> bool:
        return self.rate <= 0


class RateLimiter:
    """Token buckets by key (e.g. ``("key", "gate-1")``), thread-safe; ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000):
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[tuple, tuple[float, float]] = {}  # key -> (tokens, time of last update)
        self._lock = threading.Lock()

    def _level(self, key: tuple, limit: Rate, now: float) -> float:
        tokens, last = self._buckets.get(key, (limit.burst, now))
        return min(limit.burst, tokens + (now - last) * limit.rate)

    def take(self, key: tuple, limit: Rate) -> float:
        """Spend one call from ``key``'s bucket: 0.0 when allowed, else the seconds until the next one is."""
        if limit.off:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens = self._level(key, limit, now)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / limit.rate
            if len(self._buckets) >= self.max_buckets and key not in self._buckets:
                self._forget_full(limit, now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0

    def blocked(self, key: tuple, limit: Rate) -> float:
        """Seconds until ``key`` may spend a call again (0.0: it may now), without spending one."""
        if limit.off:
            return 0.0
        with self._lock:
            tokens = self._level(key, limit, self.clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / limit.rate

    def _forget_full(self, limit: Rate, now: float) -> None:
        """Drop the buckets that have refilled (they hold nothing a fresh one would not)."""
        for key in [k for k in self._buckets if self._level(k, limit, now) >= limit.burst]:
            del self._buckets[key]


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
