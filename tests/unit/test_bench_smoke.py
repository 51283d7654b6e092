"""The benchmark tooling runs: the load generator against the floor app, for one second.

No timing assertions: this only keeps ``hack/bench.sh``'s parts from rotting.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import trustme
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from irsa_webhook.tls import create_context
from loopback import run_server

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.floor import create_floor_app  # noqa: E402
from bench.loadgen import response_length  # noqa: E402
from bench.memory import rss_mb  # noqa: E402
from bench.reviews import review  # noqa: E402

pytestmark = pytest.mark.timeout(30)


def test_a_review_is_the_size_of_a_real_deployment_pod() -> None:
    assert 4_000 <= len(review(0)) <= 10_000


def streaming_app() -> FastAPI:
    """A webhook that streams its answer: uvicorn frames it with chunked transfer encoding."""
    app = FastAPI()

    @app.post("/mutate")
    async def mutate() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b'{"apiVersion": "admission.k8s.io/v1", '
            yield b'"kind": "AdmissionReview", "response": {"uid": "u", "allowed": true}}'

        return StreamingResponse(body(), media_type="application/json")

    return app


@pytest.mark.parametrize("chunked", [False, True])
def test_the_load_generator_completes_requests_against_the_floor(
    tmp_path: Path, chunked: bool
) -> None:
    ca = trustme.CA()
    cafile = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(cafile))
    context = create_context("1.2", ())
    ca.issue_cert("127.0.0.1").configure_cert(context)
    app = streaming_app() if chunked else create_floor_app()
    with run_server(app, context) as server:
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


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(
    ("response", "complete"),
    [
        (HEAD + b"Content-Length: 2\r\n\r\n{}", True),
        (HEAD + b"Content-Length: 2\r\n\r\n{", False),
        (HEAD + b"Content-Length: 2\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: 1\r\n\r\n", True),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n", False),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2;ext=1\r\n{", False),
    ],
)
def test_the_load_generator_finds_where_a_response_ends(response: bytes, complete: bool) -> None:
    if complete:
        # The next response may already follow on the same keep-alive connection.
        assert response_length(response + b"HTTP/1.1 200 OK\r\n") == len(response)
    else:
        assert response_length(response) is None


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


def test_the_memory_breakdown_reads_a_fresh_interpreters_rss() -> None:
    assert 1 < rss_mb(["json"], repeat=1) < rss_mb(["json", "asyncio", "ssl"], repeat=1)
