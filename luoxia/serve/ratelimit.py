"""Per-key request rate limits: a token bucket per caller, refilled continuously."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable


class RateLimiter:
    """``per_minute`` requests a minute per caller, with bursts up to the same number."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity, self.rate = float(per_minute), per_minute / 60.0
        self.clock = clock
        self.buckets: dict[Hashable, tuple[float, float]] = {}  # caller → (tokens, last refill time)
        self.lock = threading.Lock()

    def acquire(self, caller: Hashable) -> float:
        """Take one request's token: 0 when allowed, else the seconds until the next one."""
        with self.lock:
            now = self.clock()
            tokens, last = self.buckets.get(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.buckets[caller] = (tokens - 1, now)
                return 0.0
            self.buckets[caller] = (tokens, now)
            return (1 - tokens) / self.rate
