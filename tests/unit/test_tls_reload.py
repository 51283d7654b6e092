"""Certificate hot reload on a real uvicorn: new handshakes get the new key pair, open
connections keep working, and a broken rotation keeps the previous certificate."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509

from irsa_webhook.app import create_webhook_app
from irsa_webhook.config import ConfigError
from irsa_webhook.metrics import Metrics
from irsa_webhook.tls import CertificateError, CertificateReloader, create_context, openssl_ciphers
from loopback import Pki, make_state, run_server, secret_volume, serial_of


def served_serial(port: int, pki: Pki) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pki.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_secret_volume_swap_is_served_without_dropping_open_connections(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    pki = Pki(ca, tmp_path)
    first, second = pki.issue(), pki.issue()
    secret_volume(tmp_path, first, 1)
    state, _ = make_state(pki)
    reloader = state.certificate
    assert isinstance(reloader, CertificateReloader)
    metrics = Metrics()
    reloader.metrics = metrics
    with (
        run_server(create_webhook_app(state), reloader.context) as server,
        httpx.Client(verify=pki.client_context()) as client,
    ):
        assert client.get(f"{server.url}/healthz").status_code == 200
        assert served_serial(server.port, pki) == serial_of(first)
        assert reloader.check() is False

        secret_volume(tmp_path, second, 2)
        assert reloader.check() is True

        assert served_serial(server.port, pki) == serial_of(second)
        # The keep-alive connection opened before the swap still answers.
        assert client.get(f"{server.url}/healthz").status_code == 200
    assert metrics.certificate_reloads.labels("success")._value.get() == 1


def test_a_broken_rotation_keeps_the_previous_certificate(tmp_path: Path) -> None:
    pki = Pki(trustme.CA(), tmp_path)
    good = pki.issue()
    pki.write(good)
    state, _ = make_state(pki)
    reloader = state.certificate
    assert isinstance(reloader, CertificateReloader)
    with run_server(create_webhook_app(state), reloader.context) as server:
        Path(pki.cert_path).write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
        assert reloader.check() is False
        assert served_serial(server.port, pki) == serial_of(good)
        # A later, complete write is picked up.
        fixed = pki.issue()
        pki.write(fixed)
        assert reloader.check() is True
        assert served_serial(server.port, pki) == serial_of(fixed)


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path) -> None:
    pki = Pki(trustme.CA(), tmp_path)
    pki.write(pki.issue())
    pki.issue().private_key_pem.write_to_path(pki.key_path)
    reloader = CertificateReloader(create_context("1.2", ()), pki.cert_path, pki.key_path)
    with pytest.raises(CertificateError, match="the key must match the certificate"):
        reloader.load()
    assert reloader.loaded is False


def test_a_missing_certificate_names_the_file(tmp_path: Path) -> None:
    reloader = CertificateReloader(
        create_context("1.2", ()), str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
    )
    with pytest.raises(CertificateError, match=r"tls\.crt does not exist"):
        reloader.load()


@pytest.mark.parametrize("version", ["1.0", "1.1", "VersionTLS10", "VersionTLS11"])
def test_tls_versions_below_1_2_are_refused_as_settings(version: str) -> None:
    with pytest.raises(ConfigError, match="insecure"):
        create_context(version, ())


@pytest.mark.parametrize("version", ["1.4", "TLS1.2", ""])
def test_unknown_tls_versions_are_rejected(version: str) -> None:
    with pytest.raises(ConfigError, match="is not one of"):
        create_context(version, ())


def test_tls_1_3_minimum_is_honoured() -> None:
    assert create_context("VersionTLS13", ()).minimum_version == ssl.TLSVersion.TLSv1_3


def test_cipher_suites_take_iana_names() -> None:
    assert (
        openssl_ciphers(
            ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
        )
        == "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
    )
    with pytest.raises(ConfigError, match="TLS_FAKE"):
        openssl_ciphers(("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_FAKE"))
