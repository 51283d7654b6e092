"""KubeApi against a raw HTTP/1.1 server on loopback: errors, streaming, timeouts, TLS and auth."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson
import pytest
import trustme
from kubernetes.config import ConfigException

from irsa_webhook.cache import ListWatchApi
from irsa_webhook.kubeapi import ApiError, KubeApi, _TokenFile

pytestmark = pytest.mark.timeout(5)

T = TypeVar("T")
Responder = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    peer_certificate: Any = None


@dataclass
class Loopback:
    """A raw HTTP/1.1 server on 127.0.0.1; each request gets the next scripted responder."""

    responders: list[Responder]
    context: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self.context else 'http'}://127.0.0.1:{port}"

    async def __aenter__(self) -> Loopback:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *lines = head.decode().split("\r\n")
                method, target, _ = request_line.split(" ")
                headers = {}
                for line in lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                peer = writer.get_extra_info("peercert")
                self.requests.append(Request(method, target, headers, peer))
                await self.responders.pop(0)(writer)
        finally:
            writer.close()


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Responder:
    content = body if isinstance(body, bytes) else orjson.dumps(body)

    async def respond(writer: asyncio.StreamWriter) -> None:
        head = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(content)}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + content)
        await writer.drain()

    return respond


def chunked(chunks: list[bytes], end: bool = True) -> Responder:
    """A streamed 200 answer; without ``end`` the connection then stays open and silent."""

    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for chunk in chunks:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        if not end:
            await asyncio.Event().wait()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return respond


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


# --- requests and errors -----------------------------------------------------------------------


def test_get_returns_the_decoded_document_and_sends_the_token_and_the_query() -> None:
    async def scenario() -> None:
        async with Loopback([reply(200, {"kind": "ServiceAccountList", "items": []})]) as server:
            api = KubeApi(server.url, authorization=lambda: "Bearer secret-token")
            try:
                document = await api.get("/api/v1/serviceaccounts", {"limit": "500"})
            finally:
                await api.aclose()
        assert document == {"kind": "ServiceAccountList", "items": []}
        request = server.requests[0]
        assert request.target == "/api/v1/serviceaccounts?limit=500"
        assert request.headers["authorization"] == "Bearer secret-token"
        assert request.headers["accept"] == "application/json"

    run(scenario)


def test_an_error_status_becomes_an_api_error_with_the_kubernetes_reason() -> None:
    async def scenario() -> None:
        responders = [
            reply(404, status(404, "NotFound", 'serviceaccounts "x" not found')),
            reply(502, b"<html>bad gateway</html>"),
        ]
        async with Loopback(responders) as server:
            api = KubeApi(server.url)
            try:
                with pytest.raises(ApiError) as not_found:
                    await api.get("/api/v1/namespaces/a/serviceaccounts/x")
                with pytest.raises(ApiError) as bad_gateway:
                    await api.get("/api/v1/namespaces/a/serviceaccounts/x")
            finally:
                await api.aclose()
        assert (not_found.value.status, not_found.value.reason) == (404, "NotFound")
        assert not_found.value.message == 'serviceaccounts "x" not found'
        assert bad_gateway.value.status == 502
        assert "bad gateway" in bad_gateway.value.message

    run(scenario)


def test_too_many_requests_carries_the_retry_after_seconds() -> None:
    async def scenario() -> None:
        too_many = reply(429, status(429, "TooManyRequests", "slow down"), {"Retry-After": "3"})
        async with Loopback([too_many]) as server:
            api = KubeApi(server.url)
            try:
                with pytest.raises(ApiError) as error:
                    await api.get("/api/v1/serviceaccounts")
            finally:
                await api.aclose()
        assert error.value.status == 429
        assert error.value.retry_after == 3.0

    run(scenario)


def test_an_unreachable_server_is_an_api_error_with_status_zero() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def scenario() -> None:
        api = KubeApi(f"http://127.0.0.1:{port}")
        try:
            with pytest.raises(ApiError) as error:
                await api.get("/api/v1/serviceaccounts")
        finally:
            await api.aclose()
        assert error.value.status == 0

    run(scenario)


def test_the_token_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        responders = [reply(200, {}), reply(401, status(401, "Unauthorized", "Unauthorized"))]
        async with Loopback(responders) as server:
            api = KubeApi(server.url, authorization=lambda: "Bearer secret-token")
            try:
                await api.get("/api/v1/serviceaccounts")
                with pytest.raises(ApiError) as error:
                    await api.get("/api/v1/serviceaccounts")
            finally:
                await api.aclose()
        assert "secret-token" not in str(error.value)

    with caplog.at_level(logging.DEBUG):
        run(scenario)
    assert caplog.records, "httpx logs requests at DEBUG; this test must see them"
    assert "secret-token" not in caplog.text


# --- watch streams -----------------------------------------------------------------------------


def test_a_watch_yields_one_event_per_line_even_when_lines_span_chunks() -> None:
    first = b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"}}}\n'
    second = b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"2"}}}\n'
    chunks = [first[:10], first[10:] + second[:5], second[5:]]

    async def scenario() -> list[dict[str, Any]]:
        async with Loopback([chunked(chunks)]) as server:
            api = KubeApi(server.url)
            try:
                return [event async for event in api.stream("/api/v1/serviceaccounts")]
            finally:
                await api.aclose()

    events = run(scenario)
    assert [event["type"] for event in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["resourceVersion"] == "2"


def test_a_silent_watch_connection_fails_after_the_read_timeout() -> None:
    line = b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n'

    async def scenario() -> None:
        async with Loopback([chunked([line], end=False)]) as server:
            api = KubeApi(server.url, stream_read_timeout=0.2)
            events = []

            async def watch() -> None:
                async for event in api.stream("/api/v1/serviceaccounts"):
                    events.append(event)

            try:
                with pytest.raises(ApiError) as error:
                    await watch()
            finally:
                await api.aclose()
        assert len(events) == 1
        assert (error.value.status, error.value.reason) == (0, "Timeout")

    run(scenario)


def test_a_refused_watch_raises_the_http_status() -> None:
    async def scenario() -> None:
        gone = reply(410, status(410, "Expired", "too old resource version: 1 (50)"))
        async with Loopback([gone]) as server:
            api = KubeApi(server.url)
            try:
                with pytest.raises(ApiError) as error:
                    async for _ in api.stream("/api/v1/serviceaccounts"):
                        pass
            finally:
                await api.aclose()
        assert (error.value.status, error.value.reason) == (410, "Expired")

    run(scenario)


# --- configuration -----------------------------------------------------------------------------


@dataclass
class Pki:
    ca: trustme.CA
    server_context: ssl.SSLContext
    ca_pem: bytes


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return Pki(ca, context, ca.cert_pem.bytes())


def test_in_cluster_config_uses_the_service_environment_the_ca_and_the_token_file(
    tmp_path: Path, pki: Pki
) -> None:
    token = tmp_path / "token"
    token.write_text("in-cluster-token\n")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(pki.ca_pem)

    async def scenario() -> None:
        async with Loopback([reply(200, {"kind": "ServiceAccount"})], pki.server_context) as server:
            port = server.url.rsplit(":", 1)[1]
            api: ListWatchApi = KubeApi.from_config(
                token_path=str(token),
                ca_path=str(ca),
                environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port},
            )
            assert isinstance(api, KubeApi)
            try:
                await api.get("/api/v1/namespaces/a/serviceaccounts/b")
            finally:
                await api.aclose()
        assert server.requests[0].headers["authorization"] == "Bearer in-cluster-token"

    run(scenario)


def test_a_kubeconfig_brings_ca_client_certificate_and_kube_api_overrides_the_server(
    tmp_path: Path, pki: Pki
) -> None:
    client = pki.ca.issue_cert("irsa-webhook@example.com")
    requiring = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.ca.issue_cert("127.0.0.1").configure_cert(requiring)
    pki.ca.configure_trust(requiring)
    requiring.verify_mode = ssl.CERT_REQUIRED

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    async def scenario() -> None:
        async with Loopback([reply(200, {})], requiring) as server:
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(
                orjson.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "current-context": "test",
                        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
                        "clusters": [
                            {
                                "name": "c",
                                "cluster": {
                                    "server": "https://127.0.0.1:1",
                                    "certificate-authority-data": b64(pki.ca_pem),
                                },
                            }
                        ],
                        "users": [
                            {
                                "name": "u",
                                "user": {
                                    "client-certificate-data": b64(
                                        client.cert_chain_pems[0].bytes()
                                    ),
                                    "client-key-data": b64(client.private_key_pem.bytes()),
                                },
                            }
                        ],
                    }
                ).decode()
            )
            api = KubeApi.from_config(str(kubeconfig), kube_api=server.url)
            try:
                assert api.host == server.url
                await api.get("/version")
            finally:
                await api.aclose()
        assert server.requests[0].peer_certificate, "the client certificate was presented"
        assert "authorization" not in server.requests[0].headers

    run(scenario)


def test_outside_a_cluster_kube_api_alone_connects_without_credentials(tmp_path: Path) -> None:
    async def scenario() -> None:
        api = KubeApi.from_config(
            kube_api="http://127.0.0.1:8080", token_path=str(tmp_path / "none"), environ={}
        )
        await api.aclose()
        assert api.host == "http://127.0.0.1:8080"

    run(scenario)
    with pytest.raises(ConfigException):
        KubeApi.from_config(token_path=str(tmp_path / "none"), environ={})


def test_the_token_file_is_read_again_at_most_once_a_minute(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first")
    now = [1000.0]
    token = _TokenFile(str(path), clock=lambda: now[0])
    assert token() == "Bearer first"

    path.write_text("second")
    now[0] += 59
    assert token() == "Bearer first"
    now[0] += 1
    assert token() == "Bearer second"

    path.unlink()
    now[0] += 60
    assert token() == "Bearer second", "a failed re-read keeps the last good token"
