"""Retry back-off for failed work."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from nexus.errors import InvalidArgumentError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter: ``base * factor**(attempt-1)``, capped, ±``jitter``.

    The default waits about 1 s after the first failure, 2 s after the second, 4 s after the
    third... never more than 5 minutes, each delay spread by ±20 % so that items failing
    together do not all come back at the same instant.
    """

    base_seconds: float = 1.0
    factor: float = 2.0
    max_seconds: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        for name in ("base_seconds", "factor", "max_seconds", "jitter"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise InvalidArgumentError("retry_policy", self, f"{name} must be a finite number")
        if self.base_seconds < 0 or self.max_seconds < 0:
            raise InvalidArgumentError("retry_policy", self, "delays must be non-negative")
        if self.factor < 1:
            raise InvalidArgumentError("retry_policy", self, "factor must be >= 1")
        if not 0 <= self.jitter < 1:
            raise InvalidArgumentError("retry_policy", self, "jitter must be in [0, 1)")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the next try, after ``attempt`` tries have failed."""
        raw = min(self.max_seconds, self.base_seconds * self.factor ** max(0, attempt - 1))
        spread = raw * self.jitter
        return max(0.0, min(self.max_seconds, raw + random.uniform(-spread, spread)))
