"""Running a test's code on a thread of its own, its exception re-raised in the caller."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def on_a_thread(fn: Callable[[], T], *, timeout: float | None = 30.0) -> T:
    """``fn()`` on a new thread (no event loop runs there, as in a web app's request
    thread); its result, or its exception raised here."""
    out: list[T] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(timeout)
    if errors:
        raise errors[0]
    assert out, f"{fn!r} did not return within {timeout} s"  # (never with timeout=None)
    return out[0]
