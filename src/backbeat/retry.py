"""Retry decisions: pure functions of the attempt count and the policy; no I/O, no clock."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits ``base * factor**(n-1)``, capped,
    minus up to ``jitter`` of itself at random, so a burst of failures spreads out."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("retry base and cap must be >= 0")
        if self.factor < 1:
            raise ValueError("retry factor must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("retry jitter must be between 0 and 1")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 64)
        delay = min(self.cap, self.base * self.factor**exponent)
        return delay * (1.0 - self.jitter * (rng or random).random())


def retry_delay(
    *, attempts: int, max_attempts: int, policy: RetryPolicy, requested: float | None = None
) -> float | None:
    """Seconds until the next attempt, or ``None`` when retries are exhausted.

    ``attempts`` counts the attempts made so far, the failed one included;
    ``requested`` is a delay the task asked for with ``Retry(in_=...)``.
    """
    if attempts >= max_attempts:
        return None
    return requested if requested is not None else policy.backoff(attempts)
