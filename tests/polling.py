"""Waiting on a condition that a job in another process makes true (shared by every test folder)."""
from __future__ import annotations

import time


def wait_for(predicate, timeout: float, every: float = 2.0, what: str = "condition"):
    """`predicate()`'s first truthy value, polled every `every` s; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
