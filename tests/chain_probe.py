"""Which modules a snippet of Python loads, in a fresh interpreter (for import-boundary tests)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = {"boto3", "botocore", "irsa_webhook.aws"}
"""What the webhook (``serve``) and the AWS-free commands must never load."""


def loaded_after(snippet: str) -> set[str]:
    """The top-level modules and ``irsa_webhook.aws`` if loaded, after running ``snippet``."""
    program = (
        "import json, sys\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in snippet.splitlines())
        + "except SystemExit:\n    pass\n"
        "names = {name.split('.')[0] for name in sys.modules}\n"
        "names |= {name for name in sys.modules if name == 'irsa_webhook.aws'}\n"
        "print(json.dumps(sorted(names)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))
