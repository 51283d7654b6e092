"""The self-managed certificates' rules: what is due, what the caBundle must be, what a Secret's
data can be read as. Fixed times, no API server."""

from __future__ import annotations

import base64
import dataclasses
import datetime
from collections.abc import Callable

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from irsa_webhook import pki

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
HOSTS = ("webhook.irsa.svc", "127.0.0.1")
LIFETIMES = pki.Lifetimes(certificate=90 * 86400.0, ca=900 * 86400.0)
DAY = datetime.timedelta(days=1)


def issued(at: datetime.datetime = NOW, hosts: tuple[str, ...] = HOSTS) -> pki.Bundle:
    return pki.renew(None, pki.Renewal.CA, hosts, LIFETIMES, at, "webhook")


@pytest.fixture(scope="module")
def bundle() -> pki.Bundle:
    return issued()


def test_a_new_bundle_serves_the_hosts_under_its_own_ca(bundle: pki.Bundle) -> None:
    assert pki.subject_alternative_names(bundle.certificate) == frozenset(HOSTS)
    assert bundle.certificate.issuer == bundle.signing_ca.subject
    bundle.certificate.verify_directly_issued_by(bundle.signing_ca)
    assert bundle.certificate.not_valid_after_utc == NOW + datetime.timedelta(days=90)
    assert pki.plan(bundle, HOSTS, LIFETIMES, NOW) is pki.Renewal.NOTHING


@pytest.mark.parametrize(
    ("days_later", "hosts", "renewal"),
    [
        pytest.param(0, HOSTS, pki.Renewal.NOTHING, id="fresh"),
        pytest.param(59, HOSTS, pki.Renewal.NOTHING, id="two-thirds-minus-a-day"),
        pytest.param(60, HOSTS, pki.Renewal.SERVING, id="a-third-left"),
        pytest.param(120, HOSTS, pki.Renewal.SERVING, id="expired"),
        pytest.param(0, ("webhook.irsa.svc",), pki.Renewal.SERVING, id="hosts-changed"),
        pytest.param(600, HOSTS, pki.Renewal.CA, id="ca-with-a-third-left"),
    ],
)
def test_what_is_due_for_renewal(
    bundle: pki.Bundle, days_later: int, hosts: tuple[str, ...], renewal: pki.Renewal
) -> None:
    assert pki.plan(bundle, hosts, LIFETIMES, NOW + days_later * DAY) is renewal


def test_nothing_to_read_means_a_new_ca() -> None:
    assert pki.plan(None, HOSTS, LIFETIMES, NOW) is pki.Renewal.CA


def test_a_serving_certificate_of_another_ca_is_issued_again(bundle: pki.Bundle) -> None:
    stranger = issued()
    mixed = dataclasses.replace(bundle, certificate=stranger.certificate, key=stranger.key)
    assert pki.plan(mixed, HOSTS, LIFETIMES, NOW) is pki.Renewal.SERVING


def test_a_short_lifetime_is_not_renewed_at_once_despite_the_backdated_start() -> None:
    short = pki.Lifetimes(certificate=6.0, ca=24.0)
    fresh = pki.renew(None, pki.Renewal.CA, HOSTS, short, NOW, "webhook")
    assert pki.plan(fresh, HOSTS, short, NOW) is pki.Renewal.NOTHING
    assert pki.plan(fresh, HOSTS, short, NOW + datetime.timedelta(seconds=4)) is pki.Renewal.SERVING
    assert pki.next_renewal(fresh, short) == fresh.certificate.not_valid_after_utc - (
        datetime.timedelta(seconds=2)
    )


def test_serving_renewal_keeps_the_ca_and_so_the_ca_bundle(bundle: pki.Bundle) -> None:
    later = NOW + 60 * DAY
    renewed = pki.renew(bundle, pki.Renewal.SERVING, HOSTS, LIFETIMES, later, "webhook")
    assert renewed.ca_certificates == bundle.ca_certificates
    assert renewed.certificate.serial_number != bundle.certificate.serial_number
    assert pki.ca_bundle(renewed, later) == pki.ca_bundle(bundle, later)
    assert pki.plan(renewed, HOSTS, LIFETIMES, later) is pki.Renewal.NOTHING


def test_a_renewed_ca_is_trusted_beside_the_old_one_until_that_expires(bundle: pki.Bundle) -> None:
    later = NOW + 600 * DAY
    renewed = pki.renew(bundle, pki.Renewal.CA, HOSTS, LIFETIMES, later, "webhook")
    assert renewed.ca_certificates[1:] == bundle.ca_certificates
    renewed.certificate.verify_directly_issued_by(renewed.signing_ca)
    trusted = x509.load_pem_x509_certificates(base64.b64decode(pki.ca_bundle(renewed, later)))
    assert trusted == [renewed.signing_ca, bundle.signing_ca]
    after_old_expiry = NOW + 901 * DAY
    trusted = x509.load_pem_x509_certificates(
        base64.b64decode(pki.ca_bundle(renewed, after_old_expiry))
    )
    assert trusted == [renewed.signing_ca]
    again = pki.renew(renewed, pki.Renewal.CA, HOSTS, LIFETIMES, after_old_expiry, "webhook")
    assert bundle.signing_ca not in again.ca_certificates


def test_a_serving_certificate_never_outlives_its_ca(bundle: pki.Bundle) -> None:
    near_ca_end = NOW + 880 * DAY
    renewed = pki.renew(bundle, pki.Renewal.SERVING, HOSTS, LIFETIMES, near_ca_end, "webhook")
    assert renewed.certificate.not_valid_after_utc == bundle.signing_ca.not_valid_after_utc


def test_secret_data_reads_back_as_the_same_bundle(bundle: pki.Bundle) -> None:
    data = pki.secret_data(bundle)
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    read = pki.read_bundle(data)
    assert read.ca_certificates == bundle.ca_certificates
    assert read.certificate == bundle.certificate
    assert read.key_pem == bundle.key_pem


def _swap(data: dict[str, str], key: str, value: str) -> dict[str, str]:
    return {**data, key: value}


def _with_rsa_ca(data: dict[str, str]) -> dict[str, str]:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    return {
        **data,
        "ca.crt": base64.b64encode(ca.cert_pem.bytes()).decode(),
        "ca.key": base64.b64encode(ca.private_key_pem.bytes()).decode(),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda data: {}, "holds no certificates yet", id="empty"),
        pytest.param(lambda data: None, "holds no certificates yet", id="no-data"),
        pytest.param(
            lambda data: {k: v for k, v in data.items() if k != "ca.key"},
            "lacks ca.key",
            id="missing-key",
        ),
        pytest.param(lambda data: _swap(data, "tls.crt", "not base64!"), "not PEM", id="base64"),
        pytest.param(
            lambda data: _swap(data, "tls.crt", base64.b64encode(b"junk").decode()),
            "not PEM",
            id="junk",
        ),
        pytest.param(
            lambda data: _swap(data, "tls.key", data["ca.key"]),
            "tls.key does not belong to tls.crt",
            id="wrong-serving-key",
        ),
        pytest.param(
            lambda data: _swap(data, "ca.key", data["tls.key"]),
            "ca.key does not belong",
            id="wrong-ca-key",
        ),
        pytest.param(_with_rsa_ca, "not ECDSA", id="rsa-ca"),
    ],
)
def test_unusable_secret_data_is_refused_with_the_reason(
    bundle: pki.Bundle,
    change: Callable[[dict[str, str]], dict[str, str] | None],
    message: str,
) -> None:
    data = change(pki.secret_data(bundle))
    with pytest.raises(pki.BundleError, match=message):
        pki.read_bundle(data)


def test_ca_bundles_match_as_sets_of_certificates(bundle: pki.Bundle) -> None:
    later = NOW + 600 * DAY
    renewed = pki.renew(bundle, pki.Renewal.CA, HOSTS, LIFETIMES, later, "webhook")
    expected = pki.ca_bundle(renewed, later)
    pems = [ca.public_bytes(Encoding.PEM) for ca in renewed.ca_certificates]
    reordered = base64.b64encode(b"\n".join(reversed(pems))).decode()
    assert pki.ca_bundle_matches(expected, expected)
    assert pki.ca_bundle_matches(reordered, expected)
    assert not pki.ca_bundle_matches(pki.ca_bundle(bundle, later), expected)
    assert not pki.ca_bundle_matches(None, expected)
    assert not pki.ca_bundle_matches("", expected)
    assert not pki.ca_bundle_matches("not base64!", expected)
    assert not pki.ca_bundle_matches(base64.b64encode(b"junk").decode(), expected)
