"""Handing freed heap memory back to the system after a list: glibc's malloc_trim, or nothing."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from typing import Any

import pytest

from irsa_webhook.heap import find_malloc_trim, malloc_trim_of, release_free_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_freed_heap_memory_goes_back_to_the_system() -> None:
    # Blocks over 512 bytes come from malloc, not from Python's own allocator. Keeping every
    # 64th alive, the last one included, stops glibc from shrinking the heap from its top, which
    # is all it does on its own: what the others freed stays resident until trimmed.
    blocks = [bytes(2048) + bytes([index % 256]) for index in range(16_384)]  # ~32 MB
    kept = [*blocks[::64], blocks[-1]]
    del blocks
    freed_but_resident = rss_bytes()
    assert release_free_memory() is True
    released = freed_but_resident - rss_bytes()
    assert released > 16 * 2**20, f"only {released / 2**20:.1f} MB went back to the system"
    assert len(kept) == 257


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_on_glibc_the_process_c_library_has_malloc_trim() -> None:
    trim = find_malloc_trim("linux", lambda: ctypes.CDLL(None))
    assert trim is not None
    assert trim(0) in (0, 1)


def test_elsewhere_nothing_is_loaded_and_nothing_trimmed() -> None:
    def must_not_load() -> Any:
        raise AssertionError("no C library is loaded off Linux")

    assert find_malloc_trim("darwin", must_not_load) is None
    assert find_malloc_trim("win32", must_not_load) is None


def test_a_c_library_without_malloc_trim_or_one_that_cannot_be_loaded_is_no_error() -> None:
    class Musl:
        """A C library without malloc_trim, as musl (Alpine) is."""

    def unloadable() -> Any:
        raise OSError("libc.so: cannot open shared object file")

    assert malloc_trim_of(Musl()) is None
    assert find_malloc_trim("linux", Musl) is None
    assert find_malloc_trim("linux", unloadable) is None
