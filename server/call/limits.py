"""Limits that keep one caller (or a crowd of them) from exhausting the service. Pure decision code: `now` is an
argument, so the tests run them on a virtual clock.

- `TokenBucket`: a burst allowance refilled at a steady rate. Used for caller audio (the bucket holds seconds of
  audio and refills at one second per second: real time) and for control events (DTMF, marks, protocol errors).
- `Admission`: how many calls are connected, overall and per client address; a call over either limit is refused.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """`capacity` tokens at most, `rate` tokens added a second. `take(n, now)` is False when `n` is not there."""

    capacity: float
    rate: float
    tokens: float | None = None  # starts full
    last: float | None = None

    def take(self, n: float, now: float) -> bool:
        if self.tokens is None:
            self.tokens = self.capacity
        if self.last is not None and now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now if self.last is None else max(self.last, now)
        if n > self.tokens:
            return False
        self.tokens -= n
        return True


class AudioPacer:
    """Caller audio paced to real time with a tolerance of `burst_s` seconds.

    A real caller (a phone, a browser microphone, Twilio) sends audio at the speed it is spoken; network jitter can
    bunch a few seconds together. A client that sends faster than that for longer is not a caller: without a check
    it fills memory and disk as fast as it can write (minutes of "audio" a second).
    """

    def __init__(self, *, burst_s: float, sample_rate: int = 16000) -> None:
        self.bytes_per_s = sample_rate * 2
        self.bucket = TokenBucket(capacity=burst_s, rate=1.0)

    def accept(self, pcm_bytes: int, now: float) -> bool:
        return self.bucket.take(pcm_bytes / self.bytes_per_s, now)


@dataclass
class Admission:
    """Calls connected now, overall and per client address. `enter` says why a call is refused, or None."""

    max_calls: int
    max_per_address: int
    by_address: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.by_address.values())

    def enter(self, address: str) -> str | None:
        if self.total >= self.max_calls:
            return "busy"
        if self.by_address[address] >= self.max_per_address:
            return "too_many_from_address"
        self.by_address[address] += 1
        return None

    def leave(self, address: str) -> None:
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]
