"""Reading RFC 7240 ``Prefer: wait=N``: capped, and ignored (never an error) when unreadable."""

from __future__ import annotations

import pytest

from gateway.api.jobs import MAX_PREFER_WAIT_S, prefer_wait_s


@pytest.mark.parametrize("header, seconds", [
    ("wait=5", 5.0), ("respond-async, wait=2.5", 2.5), ("WAIT = 3", 3.0), ('wait="4"', 4.0),
    ("wait=100000", MAX_PREFER_WAIT_S), ("wait=-1", 0.0),
    (None, None), ("", None), ("respond-async", None), ("wait=soon", None), ("wait=nan", None), ("wait=inf", None),
])
def test_prefer_wait(header: str | None, seconds: float | None) -> None:
    assert prefer_wait_s(header) == seconds
