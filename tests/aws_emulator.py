"""moto's real HTTP server on loopback, with TLS, for tests that claim an AWS integration.

``start_moto`` runs ``moto_server`` in its own process on a free port, serving https with a
trustme certificate for ``localhost`` and ``127.0.0.1``; ``MotoServer.env`` is what a process
(the CLI, boto3, a pod's SDK) needs to talk to it through boto3's standard configuration:
``AWS_ENDPOINT_URL``, ``AWS_CA_BUNDLE``, static test credentials and a region. Nothing here mocks
boto3: every call crosses a socket, as against AWS.

Run as a module (``python tests/aws_emulator.py HOST PORT [CERT KEY]``, plain http without a
certificate, as the lab runs it for pods that have no CA bundle) it is the server itself:
moto 5.2 lacks ``AddClientIDToOpenIDConnectProvider`` and ``RemoveClientIDFromOpenIDConnect
Provider`` (it answers an HTML 500), so this entry point adds those two IAM actions to moto's
own IAM backend before serving, as the IAM API reference describes them (idempotent add and
remove of one client ID). And moto sends every unsigned GET of a path ending in
``/.well-known/openid-configuration`` to its Cognito IdP, even ``/<bucket>/...``: the entry
point keeps that only for Cognito's own paths (``/<region>_<pool>/...``), so an anonymous read
of a path-style S3 issuer reaches S3, as on AWS. Everything else is moto unchanged.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import trustme

from loopback import free_port

STARTUP_SECONDS = 60.0


@dataclass
class MotoServer:
    url: str
    ca_bundle: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_CA_BUNDLE": self.ca_bundle,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def session(self) -> boto3.Session:
        """A boto3 session with the emulator's credentials (pass ``endpoint_url=url`` and
        ``verify=ca_bundle`` to its clients)."""
        return boto3.Session(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_REGION"],
        )

    def client(self, service: str) -> Any:
        """A boto3 client of ``service`` talking to the emulator."""
        return self.session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.url,
            verify=self.ca_bundle,
        )

    def trust(self) -> ssl.SSLContext:
        """A TLS context that trusts the emulator's certificate, for plain HTTPS clients."""
        return ssl.create_default_context(cafile=self.ca_bundle)

    def reset(self) -> None:
        """Forgets every resource (moto's own reset endpoint). Slow with managed policies
        loaded (it loads them again): prefer fresh names per test."""
        with httpx.Client(verify=self.trust(), timeout=120) as http:
            http.post(f"{self.url}/moto-api/reset").raise_for_status()


@contextmanager
def start_moto(directory: Path, *, load_managed_policies: bool = True) -> Iterator[MotoServer]:
    """moto_server on https://localhost:PORT until the block ends; the process is stopped and
    waited for. ``load_managed_policies`` makes AWS-managed policy ARNs exist (moto's
    ``MOTO_IAM_LOAD_MANAGED_POLICIES``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    ca_bundle, cert, key = directory / "ca.pem", directory / "server.pem", directory / "key.pem"
    ca.cert_pem.write_to_path(str(ca_bundle))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    log = directory / "moto.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true" if load_managed_policies else "false",
    }
    for _attempt in range(3):
        port = free_port()
        with log.open("ab") as output:
            process = subprocess.Popen(
                [sys.executable, __file__, "127.0.0.1", str(port), str(cert), str(key)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
            )
        server = MotoServer(f"https://localhost:{port}", str(ca_bundle), process, log)
        ready = False
        try:
            ready = _wait_ready(server)
        finally:
            if not ready:
                _stop(process)
        if ready:
            break
    else:
        raise RuntimeError(f"moto_server did not start; its log:\n{log.read_text()[-3000:]}")
    try:
        yield server
    finally:
        _stop(process)


def _wait_ready(server: MotoServer) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(verify=server.trust(), timeout=2) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                return False  # the port was taken meanwhile, or moto failed: the log says
            try:
                if http.get(f"{server.url}/moto-api/").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _add_client_id_actions() -> None:
    """The two IAM actions moto lacks, on moto's own provider objects."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.iam.responses import IamResponse

    def add_client_id(self: IamResponse) -> ActionResult:
        provider = self.backend.get_open_id_connect_provider(
            self._get_param("OpenIDConnectProviderArn")
        )
        client_id = self._get_param("ClientID")
        if client_id not in provider.client_id_list:
            provider.client_id_list.append(client_id)
        return EmptyResult()

    def remove_client_id(self: IamResponse) -> ActionResult:
        provider = self.backend.get_open_id_connect_provider(
            self._get_param("OpenIDConnectProviderArn")
        )
        client_id = self._get_param("ClientID")
        if client_id in provider.client_id_list:
            provider.client_id_list.remove(client_id)
        return EmptyResult()

    IamResponse.add_client_id_to_open_id_connect_provider = add_client_id  # type: ignore[attr-defined]
    IamResponse.remove_client_id_from_open_id_connect_provider = remove_client_id  # type: ignore[attr-defined]


def _route_issuer_reads_to_s3() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    cognito_route = DomainDispatcherApplication.get_service_from_unsigned_path

    def route(path_info: str) -> tuple[str | None, str | None]:
        if "_" not in path_info.strip("/").split("/")[0]:
            return None, None
        return cognito_route(path_info)

    DomainDispatcherApplication.get_service_from_unsigned_path = staticmethod(route)  # type: ignore[method-assign]


if __name__ == "__main__":
    from moto import server

    _add_client_id_actions()
    _route_issuer_reads_to_s3()
    host, port, *tls = sys.argv[1:5]
    server.main(["-H", host, "-p", port, *(["-c", tls[0], "-k", tls[1]] if tls else [])])
