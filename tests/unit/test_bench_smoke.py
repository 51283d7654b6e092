"""The benchmark tooling runs: the load generator against the floor app, for one second.

No timing assertions: this only keeps ``hack/bench.sh``'s parts from rotting.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import trustme

from irsa_webhook.tls import create_context
from loopback import run_server

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.floor import create_floor_app  # noqa: E402
from bench.reviews import review  # noqa: E402

pytestmark = pytest.mark.timeout(30)


def test_a_review_is_the_size_of_a_real_deployment_pod() -> None:
    assert 4_000 <= len(review(0)) <= 10_000


def test_the_load_generator_completes_requests_against_the_floor(tmp_path: Path) -> None:
    ca = trustme.CA()
    cafile = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(cafile))
    context = create_context("1.2", ())
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with run_server(create_floor_app(), context) as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--url",
                f"{server.url}/mutate",
                "--cafile",
                str(cafile),
                "--connections",
                "2",
                "--duration",
                "1",
                "--warmup",
                "0.1",
                "--rate",
                "100",
                "--accounts",
                "10",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=20,
            check=True,
        )
    figures = orjson.loads(result.stdout)
    assert figures["requests"] > 0
    assert figures["errors"] == 0


def test_the_hot_path_breakdown_runs_and_prints_every_row() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.hotpath", "--requests", "20", "--rounds", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 8, result.stdout
    assert lines[-1].startswith("  => decide ")
