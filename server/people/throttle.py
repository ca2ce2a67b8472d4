"""Sign-in throttling: failed sign-ins counted per account and per client address over a sliding window.

Past `per_account` failures for one name, or `per_address` from one address, within `window_s`, further attempts
are refused (429 with Retry-After) until the oldest failure leaves the window — whether or not the password would
have been right, so a guesser learns nothing while throttled. Per account stops a slow guess spread over many
addresses; per address stops one address walking many names. A success clears the account's failures.

Pure: `now` is an argument. In memory (a restart forgets); at most `max_keys` names and addresses are tracked, the
least recently failed dropped first, so a flood of made-up names cannot fill memory.
"""
from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass
class LoginThrottle:
    window_s: float = 900.0
    per_account: int = 5
    per_address: int = 20
    max_keys: int = 50_000
    _failures: OrderedDict[tuple[str, str], deque[float]] = field(default_factory=OrderedDict)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> float:
        times = self._recent(key, now)
        if len(times) < limit:
            return 0.0
        return times[len(times) - limit] + self.window_s - now

    def retry_after(self, *, name: str, address: str, now: float) -> int | None:
        """Seconds to wait before this attempt may be tried, or None when it may go ahead."""
        wait = max(self._wait(("name", name.lower()), self.per_account, now),
                   self._wait(("addr", address), self.per_address, now))
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, *, name: str, address: str, now: float) -> None:
        for key in (("name", name.lower()), ("addr", address)):
            times = self._failures.pop(key, None) or deque()
            times.append(now)
            self._failures[key] = times  # most recently failed last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, *, name: str) -> None:
        self._failures.pop(("name", name.lower()), None)
