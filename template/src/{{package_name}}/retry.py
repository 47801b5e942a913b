"""Bounded retry: how long to wait before the next attempt of a failed message."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from .settings import Settings

_RANDOM = random.Random()  # noqa: S311 - spreading retries needs no cryptographic randomness
# 2**62 seconds is already "the cap"; clamping the exponent keeps the float finite.
_MAX_EXPONENT = 62


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    backoff: Literal["exponential", "fixed"]
    initial_delay_s: float
    max_delay_s: float
    jitter: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.retry_max_attempts,
            backoff=settings.retry_backoff,
            initial_delay_s=settings.retry_initial_delay_s,
            max_delay_s=settings.retry_max_delay_s,
            jitter=settings.retry_jitter,
        )

    def delay_s(self, failed_attempts: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after `failed_attempts` (>= 1) failures, before the next attempt.

        Exponential doubles from the initial delay; both kinds are capped at the max delay.
        Jitter is "full jitter": a uniform draw in [0, delay], which spreads retries of many
        messages that failed together.
        """
        if failed_attempts < 1:
            raise ValueError(f"failed_attempts must be >= 1, got {failed_attempts}")
        exponent = 0 if self.backoff == "fixed" else min(failed_attempts - 1, _MAX_EXPONENT)
        delay = min(self.initial_delay_s * 2.0**exponent, self.max_delay_s)
        if self.jitter:
            return (rng or _RANDOM).uniform(0, delay)
        return delay
