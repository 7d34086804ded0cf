"""The limiters alone, on a fake clock."""

from __future__ import annotations

from gateway.edge.rate_limit import TokenBucketLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=60, burst=3, clock=clock)
    decisions = [limiter.take("alice") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[2].remaining == 0 and decisions[3].retry_after_s == 1
    assert decisions[3].headers()["Retry-After"] == "1"
    clock.now += 1.0  # one token a second
    assert limiter.take("alice").allowed
    assert not limiter.take("alice").allowed


def test_keys_have_their_own_budgets() -> None:
    limiter = TokenBucketLimiter(per_minute=6, burst=1, clock=Clock())
    assert limiter.take("alice").allowed
    refused = limiter.take("alice")
    assert not refused.allowed and refused.retry_after_s == 10
    assert limiter.take("bob").allowed
