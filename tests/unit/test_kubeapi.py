"""KubeApi against a raw HTTP/1.1 server on loopback: errors, streaming, timeouts, TLS and auth."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import socket
import ssl
import sys
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson
import pytest
import trustme

from irsa_webhook.cache import ListWatchApi
from irsa_webhook.config import ConfigError
from irsa_webhook.credentials import StaticCredentials, TokenFile
from irsa_webhook.kubeapi import ApiError, KubeApi
from irsa_webhook.kubeconfig import load_connection

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
            api = KubeApi(server.url, credentials=StaticCredentials("Bearer secret-token"))
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
            api = KubeApi(server.url, credentials=StaticCredentials("Bearer secret-token"))
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


def test_a_body_is_freed_once_parsed_not_at_the_next_cyclic_collection() -> None:
    """A list page must not outlive its parsing: httpx keeps a body it read into the response,
    and the response sits in a reference cycle that only the collector frees."""
    padding = 2**20
    body = orjson.dumps({"kind": "ServiceAccountList", "items": [], "padding": "x" * padding})

    async def scenario() -> int:
        async with Loopback([reply(200, body)]) as server:
            api = KubeApi(server.url)
            gc.disable()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                document = await api.get("/api/v1/serviceaccounts")
                assert len(document["padding"]) == padding
                del document
                return tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
                gc.enable()
                await api.aclose()

    held = run(scenario)
    assert held < padding // 4, f"{held} bytes still held after the document was let go"


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
            api: ListWatchApi = KubeApi.from_connection(
                load_connection(
                    token_path=str(token),
                    ca_path=str(ca),
                    environ={
                        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                        "KUBERNETES_SERVICE_PORT": port,
                    },
                )
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
        api = KubeApi.from_connection(
            load_connection(
                kube_api="http://127.0.0.1:8080", token_path=str(tmp_path / "none"), environ={}
            )
        )
        await api.aclose()
        assert api.host == "http://127.0.0.1:8080"

    run(scenario)
    with pytest.raises(ConfigError, match="not in a cluster"):
        load_connection(token_path=str(tmp_path / "none"), environ={})


def test_the_token_file_is_read_again_at_most_once_a_minute(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first")
    now = [1000.0]
    token = TokenFile(str(path), clock=lambda: now[0]).current
    assert token() == "Bearer first"

    path.write_text("second")
    now[0] += 59
    assert token() == "Bearer first"
    now[0] += 1
    assert token() == "Bearer second"

    path.unlink()
    now[0] += 60
    assert token() == "Bearer second", "a failed re-read keeps the last good token"


# --- kubeconfig --------------------------------------------------------------------------------


def write_kubeconfig(
    path: Path, cluster: dict[str, Any], user: dict[str, Any] | None = None, **top: Any
) -> str:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user or {}}],
        **top,
    }
    # YAML is a superset of JSON: the loader reads this as any kubeconfig.
    path.write_bytes(orjson.dumps(document))
    return str(path)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def get_version(kubeconfig: str) -> None:
    """One GET through a client configured by ``kubeconfig``."""
    api = KubeApi.from_config(kubeconfig)
    try:
        await api.get("/version")
    finally:
        await api.aclose()


def exec_plugin(directory: Path, tokens: list[str]) -> str:
    """A plugin answering ``tokens`` one per run (the last one repeats); no expiry."""
    script = directory / "get-token"
    count = directory / "runs"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib\n"
        f"count = pathlib.Path({str(count)!r})\n"
        "runs = int(count.read_text()) if count.exists() else 0\n"
        "count.write_text(str(runs + 1))\n"
        f"tokens = {tokens!r}\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
        "'kind': 'ExecCredential', 'status': {'token': tokens[min(runs, len(tokens) - 1)]}}))\n"
    )
    script.chmod(0o755)
    return f"./{script.name}"


def test_a_kubeconfig_exec_plugin_token_is_sent_and_fetched_again_after_a_401(
    tmp_path: Path,
) -> None:
    command = exec_plugin(tmp_path, ["revoked", "fresh"])

    async def scenario() -> None:
        async with Loopback(
            [reply(401, status(401, "Unauthorized", "")), reply(200, {"kind": "Status"})]
        ) as server:
            kubeconfig = write_kubeconfig(
                tmp_path / "kubeconfig",
                {"server": server.url},
                # Relative to the kubeconfig's directory, as kubectl resolves it.
                {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": command}},
            )
            api = KubeApi.from_config(kubeconfig)
            try:
                assert await api.get("/version") == {"kind": "Status"}
            finally:
                await api.aclose()
        assert [r.headers["authorization"] for r in server.requests] == [
            "Bearer revoked",
            "Bearer fresh",
        ]

    run(scenario)


def test_a_failing_exec_plugin_is_an_api_error_the_cache_retries(tmp_path: Path) -> None:
    script = tmp_path / "broken"
    script.write_text("#!/bin/sh\necho 'no credentials configured' >&2\nexit 1\n")
    script.chmod(0o755)
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        {"server": "http://127.0.0.1:9"},
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script)}},
    )

    async def scenario() -> None:
        api = KubeApi.from_config(kubeconfig)
        try:
            with pytest.raises(ApiError) as raised:
                await api.get("/version")
        finally:
            await api.aclose()
        assert raised.value.status == 0
        assert raised.value.reason == "CredentialError"
        assert "exited with status 1: no credentials configured" in raised.value.message

    run(scenario)


def test_an_exec_plugin_client_certificate_is_presented(tmp_path: Path, pki: Pki) -> None:
    client = pki.ca.issue_cert("exec-user@example.com")
    status_document = {
        "clientCertificateData": client.cert_chain_pems[0].bytes().decode(),
        "clientKeyData": client.private_key_pem.bytes().decode(),
    }
    script = tmp_path / "cert-plugin"
    script.write_text(
        f"#!{sys.executable}\nimport json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', "
        f"'kind': 'ExecCredential', 'status': {status_document!r}}}))\n"
    )
    script.chmod(0o755)
    requiring = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.ca.issue_cert("127.0.0.1").configure_cert(requiring)
    pki.ca.configure_trust(requiring)
    requiring.verify_mode = ssl.CERT_REQUIRED

    async def scenario() -> None:
        async with Loopback([reply(200, {})], requiring) as server:
            kubeconfig = write_kubeconfig(
                tmp_path / "kubeconfig",
                {"server": server.url, "certificate-authority-data": b64(pki.ca_pem)},
                {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": str(script),
                    }
                },
            )
            await get_version(kubeconfig)
        assert server.requests[0].peer_certificate, "the plugin's certificate was presented"
        assert "authorization" not in server.requests[0].headers

    run(scenario)


def test_tls_server_name_checks_the_certificate_against_that_name(tmp_path: Path, pki: Pki) -> None:
    named = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.ca.issue_cert("kube.internal.example").configure_cert(named)

    async def scenario(tls_server_name: str) -> None:
        async with Loopback([reply(200, {})], named) as server:
            cluster = {"server": server.url, "certificate-authority-data": b64(pki.ca_pem)}
            if tls_server_name:
                cluster["tls-server-name"] = tls_server_name
            await get_version(write_kubeconfig(tmp_path / "kubeconfig", cluster))

    run(lambda: scenario("kube.internal.example"))
    with pytest.raises(ApiError, match="certificate"):
        run(lambda: scenario(""))


def test_insecure_skip_tls_verify_connects_to_an_untrusted_server(tmp_path: Path, pki: Pki) -> None:
    async def scenario() -> None:
        async with Loopback([reply(200, {})], pki.server_context) as server:
            kubeconfig = write_kubeconfig(
                tmp_path / "kubeconfig", {"server": server.url, "insecure-skip-tls-verify": True}
            )
            await get_version(kubeconfig)

    run(scenario)


@pytest.mark.parametrize(
    ("user", "header"),
    [
        ({"token": "static"}, "Bearer static"),
        ({"tokenFile": "token"}, "Bearer from-file"),
        ({"username": "admin", "password": "pw"}, "Basic " + b64(b"admin:pw")),
    ],
)
def test_kubeconfig_tokens_token_files_and_basic_auth_are_sent(
    tmp_path: Path, user: dict[str, str], header: str
) -> None:
    (tmp_path / "token").write_text("from-file\n")

    async def scenario() -> None:
        async with Loopback([reply(200, {})]) as server:
            kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"server": server.url}, user)
            await get_version(kubeconfig)
        assert server.requests[0].headers["authorization"] == header

    run(scenario)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not YAML"),
        ("[]", "must be a mapping"),
        ('{"clusters": []}', "no current-context"),
        (
            '{"current-context": "x", "contexts": [{"name": "y", "context": {}}]}',
            "no contexts entry named 'x'",
        ),
        (
            '{"current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "c"}}]}',
            "no clusters entry named 'c'",
        ),
        (
            '{"current-context": "x", "contexts": [{"name": "x", "context": {"cluster": "c"}}],'
            ' "clusters": [{"name": "c", "cluster": {}}]}',
            "has no server",
        ),
    ],
)
def test_a_broken_kubeconfig_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"--kubeconfig {path}") as raised:
        KubeApi.from_config(str(path))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("cluster", "user", "message"),
    [
        ({}, {"auth-provider": {"name": "oidc"}}, "auth-provider 'oidc' is not supported"),
        ({}, {"exec": {"command": "aws"}}, "exec needs command and apiVersion"),
        ({}, {"exec": {"command": "aws", "apiVersion": "v1", "env": [{"name": "A"}]}}, "env"),
        ({"certificate-authority": "absent.crt"}, {}, "absent.crt"),
        ({"certificate-authority-data": b64(b"not a certificate")}, {}, "authority"),
        ({}, {"client-certificate-data": b64(b"x")}, "go together"),
        (
            {},
            {"client-certificate-data": b64(b"x"), "client-key-data": b64(b"y")},
            "client certificate and key cannot be used",
        ),
    ],
)
def test_unusable_kubeconfig_credentials_are_one_clear_error(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], message: str
) -> None:
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", {"server": "https://127.0.0.1:1", **cluster}, user
    )
    with pytest.raises(ConfigError) as raised:
        KubeApi.from_config(kubeconfig)
    assert message in str(raised.value)


def test_a_missing_kubeconfig_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        KubeApi.from_config(str(tmp_path / "absent"))


def test_provide_cluster_info_hands_the_cluster_and_its_exec_extension_to_the_plugin(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "exec-info.json"
    script = tmp_path / "plugin"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, pathlib\n"
        f"pathlib.Path({str(seen)!r}).write_text(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
        "'kind': 'ExecCredential', 'status': {'token': 't'}}))\n"
    )
    script.chmod(0o755)

    async def scenario() -> None:
        async with Loopback([reply(200, {})]) as server:
            cluster = {
                "server": server.url,
                "extensions": [
                    {"name": "client.authentication.k8s.io/exec", "extension": {"region": "x"}}
                ],
            }
            user = {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": str(script),
                    "provideClusterInfo": True,
                }
            }
            await get_version(write_kubeconfig(tmp_path / "kubeconfig", cluster, user))
            spec = orjson.loads(seen.read_bytes())["spec"]
            assert spec["cluster"]["server"] == server.url
            assert spec["cluster"]["config"] == {"region": "x"}
            assert spec["interactive"] is False

    run(scenario)


def test_in_cluster_an_ipv6_service_host_is_bracketed(tmp_path: Path, pki: Pki) -> None:
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("t")
    ca.write_bytes(pki.ca_pem)
    connection = load_connection(
        token_path=str(token),
        ca_path=str(ca),
        environ={"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"},
    )
    assert connection.host == "https://[fd00::1]:443"
