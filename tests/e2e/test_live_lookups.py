"""Live lookups against the real kube-apiserver: a flood of misses stays within the rate limit,
counted by the API server itself, while the watch and ordinary admissions carry on."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cluster import (
    WEBHOOK_NAMESPACE,
    WEBHOOK_SERVICE_ACCOUNT,
    ControlPlane,
    Webhook,
    make_namespace,
    service_account,
    start_webhook,
    token_kubeconfig,
)

pytestmark = pytest.mark.timeout(180)

ROLE = "arn:aws:iam::111122223333:role/flood"
MISSES = 400
GRACE_PERIOD = 3.0
"""``start_webhook``'s --service-account-lookup-grace-period."""
LOOKUP_RATE = 10.0
LOOKUP_BURST = 20
"""The reference's limiter, which ours follows: 10 GETs a second, bursts of 20."""


@pytest.fixture(scope="module")
def flooded_webhook(
    control_plane: ControlPlane, webhook: Webhook, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    """A webhook of its own (the session's bucket is not drained for other tests); ``webhook``
    is requested for the RBAC it applies."""
    directory: Path = tmp_path_factory.mktemp("flood-webhook")
    kubeconfig = token_kubeconfig(
        control_plane, directory / "kubeconfig", WEBHOOK_NAMESPACE, WEBHOOK_SERVICE_ACCOUNT
    )
    running = start_webhook(control_plane, directory, kubeconfig, "--enable-debugging-handlers")
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(timeout=30)


def service_account_gets(plane: ControlPlane) -> float:
    """GETs of single ServiceAccounts the API server has served, by its own /metrics."""
    with plane.client() as client:
        text = client.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and 'resource="serviceaccounts"' in line
            and 'verb="GET"' in line
            and 'subresource=""' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def review(namespace: str, account: str, uid: str) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "namespace": namespace,
                "operation": "CREATE",
                "object": {
                    "metadata": {"name": uid},
                    "spec": {"serviceAccountName": account, "containers": [{"name": "app"}]},
                },
            },
        }
    )


def cached(webhook: Webhook) -> dict[str, Any]:
    dump: dict[str, Any] = httpx.get(f"{webhook.metrics_url}/debug/alpha/cache", timeout=5).json()
    return dump


def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds} s"
        time.sleep(0.1)


async def pipelined(webhook: Webhook, bodies: list[bytes]) -> list[dict[str, Any]]:
    """Every body written at once on one TLS connection, then every answer read: a flood that
    costs this test little CPU, so on a busy machine it still outruns the rate limit."""
    context = ssl.create_default_context()
    webhook.ca.configure_trust(context)
    port = int(webhook.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    head = b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    answers = []
    try:
        writer.write(b"".join(head + b"Content-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies))
        await writer.drain()
        for _ in bodies:
            status_and_headers = await reader.readuntil(b"\r\n\r\n")
            assert status_and_headers.startswith(b"HTTP/1.1 200 "), status_and_headers
            length = re.search(rb"content-length: (\d+)", status_and_headers, re.IGNORECASE)
            assert length is not None, status_and_headers
            body = await reader.readexactly(int(length.group(1)))
            answers.append(orjson.loads(body)["response"])
    finally:
        # Closed before the loop ends, or the transport is left for the collector (a
        # ResourceWarning, an error under the project's filterwarnings).
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 10)
    return answers


async def flood(webhook: Webhook, misses: list[bytes]) -> list[dict[str, Any]]:
    """The misses over 20 connections at once."""
    shares = [misses[index::20] for index in range(20)]
    answers = await asyncio.gather(*(pipelined(webhook, share) for share in shares))
    return [answer for share in answers for answer in share]


def admit_during(
    webhook: Webhook, namespace: str, flooding: threading.Thread
) -> list[tuple[dict[str, Any], float]]:
    """Admissions of the cached ServiceAccount for as long as the flood lasts (20 at least), on a
    warm connection of its own in this thread: the latency is the webhook's, not a wait for a
    free connection or for the flood's client."""
    context = httpx.create_ssl_context()
    webhook.ca.configure_trust(context)
    answers: list[tuple[dict[str, Any], float]] = []
    with httpx.Client(verify=context, timeout=30) as ordinary:
        ordinary.get(f"{webhook.url}/healthz")
        flooding.start()
        while flooding.is_alive() or len(answers) < 20:
            body = review(namespace, "known", f"known-{len(answers)}")
            started = time.monotonic()
            response = ordinary.post(
                f"{webhook.url}/mutate", content=body, headers={"Content-Type": "application/json"}
            )
            answers.append((response.json()["response"], time.monotonic() - started))
            # Paced, so this thread does not starve the flood's of the CPU it shares.
            flooding.join(0.05)
    return answers


def test_a_flood_of_misses_stays_within_the_lookup_rate_limit_on_the_api_server(
    control_plane: ControlPlane, flooded_webhook: Webhook
) -> None:
    namespace = make_namespace(control_plane, "flood")
    control_plane.apply(service_account(namespace, "known", {"eks.amazonaws.com/role-arn": ROLE}))
    wait_until(lambda: f"{namespace}/known" in cached(flooded_webhook), 20, "the watch saw 'known'")
    misses = [review(namespace, f"nobody-{index}", f"miss-{index}") for index in range(MISSES)]
    gets_before = service_account_gets(control_plane)

    started = time.monotonic()
    flooded: list[dict[str, Any]] = []
    flooding = threading.Thread(
        target=lambda: flooded.extend(asyncio.run(flood(flooded_webhook, misses)))
    )
    admitted = admit_during(flooded_webhook, namespace, flooding)
    flooding.join(timeout=150)
    elapsed = time.monotonic() - started
    assert len(flooded) == MISSES

    gets = service_account_gets(control_plane) - gets_before
    allowed = LOOKUP_BURST + LOOKUP_RATE * elapsed
    assert gets <= allowed, f"{gets:.0f} GETs in {elapsed:.1f} s, the limit allows {allowed:.0f}"
    print(f"flood: {MISSES} misses in {elapsed:.1f} s, {gets:.0f} GETs, {len(admitted)} admitted")
    for answer, latency in admitted:
        assert "patch" in answer, answer
        # Never held up by the flood: a cached ServiceAccount waits for no GET.
        assert latency < GRACE_PERIOD, f"an admission of a cached account took {latency:.1f} s"
    skipped = [
        answer
        for answer in flooded
        if any("live lookups are at their limit" in w for w in answer.get("warnings", []))
    ]
    assert len(skipped) >= MISSES - allowed
    assert all(answer["allowed"] and "patch" not in answer for answer in skipped)

    # The watch still works: a ServiceAccount created now reaches the cache with no admission.
    control_plane.apply(service_account(namespace, "later", {"eks.amazonaws.com/role-arn": ROLE}))
    wait_until(lambda: f"{namespace}/later" in cached(flooded_webhook), 20, "the watch saw 'later'")
    metrics = flooded_webhook.metrics()
    assert re.search(r'live_lookups_total\{result="rate-limited"\} [1-9]', metrics), metrics
