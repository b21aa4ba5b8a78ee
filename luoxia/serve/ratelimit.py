"""Per-caller rate limits: a token bucket per caller, refilled continuously. The server keeps two:
requests a minute, and request-body bytes a minute (so that a few huge requests cost what they
weigh, not what a small one does)."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable


class RateLimiter:
    """``per_minute`` units a minute per caller, with bursts up to the same number."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity, self.rate = float(per_minute), per_minute / 60.0
        self.clock = clock
        self.buckets: dict[Hashable, tuple[float, float]] = {}  # caller → (tokens, last refill time)
        self.lock = threading.Lock()

    def acquire(self, caller: Hashable, amount: float = 1.0) -> float:
        """Take ``amount`` units: 0 when allowed, else the seconds until they are there (none taken)."""
        with self.lock:
            now = self.clock()
            tokens, last = self.buckets.get(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= amount:
                self.buckets[caller] = (tokens - amount, now)
                return 0.0
            self.buckets[caller] = (tokens, now)
            return (amount - tokens) / self.rate
