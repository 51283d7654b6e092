"""Where a request's CPU goes, without sockets: the ASGI apps called in-process, side by side.

``python -m bench.hotpath [--requests N] [--rounds R]`` calls each app's ``/mutate`` with the
same 7.9 KB reviews (``bench.reviews``) through a minimal ASGI receive/send, and prints the best
round's µs per request for:

- the floor and the parse-floor (``bench.floor``): FastAPI alone, and FastAPI + reading and
  parsing the body;
- the webhook (``app.create_webhook_app`` with an in-memory ServiceAccount source);
- the webhook with ``decide``, then also ``decode_review``, then also ``encode_response``
  replaced by their precomputed results: each step's difference is that step's cost with the
  caches as cold as in the server (a fresh parsed pod per request), which a ``timeit`` of the
  function alone understates.

No TLS, no HTTP parsing, no load generator competing for the cores: the part of the
``hack/bench.sh`` gap that is ours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from unittest import mock

import orjson

from bench import reviews
from bench.floor import create_floor_app
from irsa_webhook import app as webhook_app
from irsa_webhook.admission import decode_review, encode_response
from irsa_webhook.app import WebhookState, create_webhook_app
from irsa_webhook.config import MutationSettings
from irsa_webhook.decision import Sources, decide
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    ConfigMapMappings,
    ContainerCredentialsConfig,
    ServiceAccountEntry,
    parse_service_account,
)
from irsa_webhook.metrics import Metrics

Asgi = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


@dataclass
class _Accounts:
    entries: dict[tuple[str, str], ServiceAccountEntry]
    synced: bool = True

    def get(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        return self.entries.get((namespace, name))

    async def lookup(self, namespace: str, name: str) -> ServiceAccountEntry | None:
        return self.entries.get((namespace, name))

    def snapshot(self) -> dict[str, ServiceAccountEntry]:
        return {}


@dataclass
class _Static:
    synced: bool = True
    loaded: bool = True
    current: Any = None


def _state(bodies: list[bytes]) -> WebhookState:
    settings = MutationSettings()
    entries = {}
    for body in bodies:
        request = orjson.loads(body)["request"]
        key = (request["namespace"], request["object"]["spec"]["serviceAccountName"])
        role = f"{reviews.ROLE_PREFIX}{key[1]}"
        entries[key] = parse_service_account({"eks.amazonaws.com/role-arn": role}, settings)
    config_map: ConfigMapMappings = EMPTY_CONFIG_MAP
    container_credentials: ContainerCredentialsConfig = EMPTY_CONTAINER_CREDENTIALS
    return WebhookState(
        settings=settings,
        service_accounts=_Accounts(entries),
        config_map=_Static(current=config_map),
        container_credentials=_Static(current=container_credentials),
        certificate=_Static(),
        metrics=Metrics(),
        random_int=lambda low, high: low,
    )


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/mutate",
        "raw_path": b"/mutate",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8443),
    }


async def _call(app: Asgi, body: bytes) -> int:
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": body, "more_body": False}
    ]
    status = 0

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(body), receive, send)
    return status


async def _per_request_us(app: Asgi, bodies: list[bytes], requests: int, rounds: int) -> float:
    for body in bodies:
        status = await _call(app, body)
        if status != 200:
            raise SystemExit(f"/mutate answered {status}")
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for index in range(requests):
            await _call(app, bodies[index % len(bodies)])
        best = min(best, (time.perf_counter() - started) / requests * 1e6)
    return best


async def _measure(requests: int, rounds: int) -> list[tuple[str, float]]:
    bodies = reviews.reviews(64)
    state = _state(bodies)
    webhook = create_webhook_app(state)
    rows = [
        ("floor (FastAPI, fixed answer)", create_floor_app()),
        ("parse-floor (+ read and parse)", create_floor_app(parse=True)),
        ("webhook", webhook),
    ]
    results = [(name, await _per_request_us(app, bodies, requests, rounds)) for name, app in rows]

    # Precompute each body's results, then stub the steps out one after the other.
    decoded = {body: decode_review(body) for body in bodies}
    decided = {}
    for request in decoded.values():
        assert request.pod is not None
        key = (request.namespace, request.service_account)
        sources = Sources(
            state.service_accounts.get(*key), EMPTY_CONFIG_MAP, EMPTY_CONTAINER_CREDENTIALS
        )
        decided[request.uid] = decide(request, sources, state.settings, state.random_int)
    encoded = {
        request.uid: encode_response(
            request, decided[request.uid].patch, decided[request.uid].warnings
        )
        for request in decoded.values()
    }
    stubs = [
        ("webhook, decide precomputed", "decide", lambda request, *_: decided[request.uid]),
        ("  + decode precomputed", "decode_review", decoded.__getitem__),
        ("  + encode precomputed", "encode_response", lambda request, *_: encoded[request.uid]),
    ]
    with contextlib.ExitStack() as stack:
        for name, attribute, stub in stubs:
            stack.enter_context(mock.patch.object(webhook_app, attribute, stub))
            results.append((name, await _per_request_us(webhook, bodies, requests, rounds)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="per round and app")
    parser.add_argument("--rounds", type=int, default=5, help="the best round counts")
    args = parser.parse_args()
    results = asyncio.run(_measure(args.requests, args.rounds))
    print(f"in-process ASGI, best of {args.rounds} rounds x {args.requests} requests")
    for name, micros in results:
        print(f"  {name:<34} {micros:7.1f} us/req")
    figures = dict(results)
    webhook = figures["webhook"]
    decide_us = webhook - figures["webhook, decide precomputed"]
    decode_us = figures["webhook, decide precomputed"] - figures["  + decode precomputed"]
    encode_us = figures["  + decode precomputed"] - figures["  + encode precomputed"]
    rest = figures["  + encode precomputed"] - figures["floor (FastAPI, fixed answer)"]
    print(
        f"  => decide {decide_us:.1f}, decode {decode_us:.1f}, encode {encode_us:.1f}, "
        f"the rest of the handler {rest:.1f} us/req"
    )


if __name__ == "__main__":
    main()
