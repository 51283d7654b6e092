"""Where ``serve``'s idle memory goes, layer by layer: each row is a fresh interpreter that imports
everything the rows above it did plus its own modules, and reports its RSS (``VmRSS``).

What the running process adds on top (the cache, connections, what the first list leaves
behind) is the gap between the last row and ``hack/bench.sh --startup``'s idle RSS.

``python -m bench.memory``; no control plane needed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

LAYERS = (
    ("interpreter", ()),
    (
        "the floor's stack: asyncio, ssl, uvicorn, FastAPI (Starlette, pydantic)",
        ("bench.floor",),
    ),
    ("+ httpx (the API client)", ("httpx",)),
    ("+ prometheus_client", ("prometheus_client",)),
    ("+ the webhook's own modules (serve's import set)", ("irsa_webhook.server",)),
    (
        "+ what the first API request loads (httpcore, h11, anyio's asyncio backend)",
        ("httpcore._async.connection_pool", "h11", "anyio._backends._asyncio"),
    ),
    ("+ PyYAML (only with --kubeconfig)", ("yaml",)),
    ("+ ctypes (after the first list, for malloc_trim: heap.py)", ("ctypes",)),
)

PROBE = (
    "import importlib, sys\n"
    "for name in sys.argv[1:]: importlib.import_module(name)\n"
    "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmRSS')][0])"
)


def rss_mb(modules: list[str], repeat: int = 3) -> float:
    """Median RSS in MB of a fresh interpreter that imported ``modules``."""
    values = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, check=True
        ).stdout
        values.append(int(out) / 1024)
    return statistics.median(values)


def main() -> int:
    print("idle memory by layer (fresh interpreters, median of 3)")
    print(f"  {'layer':<78} {'RSS MB':>7} {'adds':>6}")
    modules: list[str] = []
    previous = 0.0
    for title, names in LAYERS:
        modules += names
        total = rss_mb(modules)
        print(f"  {title:<78} {total:>7.1f} {total - previous:>+6.1f}")
        previous = total
    return 0


if __name__ == "__main__":
    sys.exit(main())
