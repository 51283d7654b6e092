"""Handing the memory a full list freed back to the operating system.

A list reads pages of a few hundred kilobytes (about 280 KB per 500 ServiceAccounts), parses them
and lets them go. glibc's malloc keeps what they freed: it returns memory to the system only from
the top of its heap, and after the first large free it raises its mmap threshold, so the later
pages are allocated inside the heap too. ``malloc_trim(0)`` hands the free pages back: after a
paginated list of 1,000 ServiceAccounts, 1.0-1.2 MB of idle RSS net of what ctypes costs. A
streamed list reads no large bodies; there it saves 0.55 MB at 50,000 ServiceAccounts and about
pays for ctypes at 1,000. Other C libraries (musl, macOS's) have no such call and follow their
own policy; there this does nothing.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Trim = Callable[[int], int]


def malloc_trim_of(library: Any) -> Trim | None:
    """``library``'s ``malloc_trim``, or None when it has none (any C library but glibc)."""
    try:
        function = library.malloc_trim
    except AttributeError:
        return None
    import ctypes

    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim: Trim = function
    return trim


def _process_c_library() -> Any:
    # ctypes (~0.4 MB, a few ms) is imported here, after the first list, not on serve's path.
    import ctypes

    return ctypes.CDLL(None)  # the symbols already loaded into the process: its C library


@functools.cache
def _trim() -> Trim | None:
    return find_malloc_trim(sys.platform, _process_c_library)


def find_malloc_trim(platform: str, load: Callable[[], Any]) -> Trim | None:
    """The process's ``malloc_trim`` on Linux with glibc; None elsewhere or when it cannot be
    loaded (no ctypes, no C library), which only costs the memory it would have released."""
    if not platform.startswith("linux"):
        return None
    try:
        return malloc_trim_of(load())
    except (ImportError, OSError) as exc:
        logger.debug("malloc_trim unavailable", extra={"detail": str(exc)})
        return None


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; False where the C library cannot."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
