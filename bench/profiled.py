"""``irsa-webhook`` under pyinstrument: ``python -m bench.profiled OUT.txt serve ...``.

pyinstrument is not a project dependency: hack/bench.sh --profile installs it into a scratch
venv and puts that venv's site-packages on PYTHONPATH. The text profile is written at exit.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pyinstrument import Profiler  # type: ignore[import-not-found]  # not a dependency

from irsa_webhook.cli import main


def run() -> int:
    out = Path(sys.argv[1])
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        return main(sys.argv[2:])
    finally:
        profiler.stop()
        out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    sys.exit(run())
