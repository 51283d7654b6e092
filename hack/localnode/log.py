"""Progress lines on stderr: one per step, with the seconds since the command began."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def step(message: str, *args: object) -> None:
    text = message % args if args else message
    print(f"[node {time.monotonic() - _START:5.1f}s] {text}", file=sys.stderr, flush=True)
