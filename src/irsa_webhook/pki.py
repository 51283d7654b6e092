"""The rules of the self-managed certificates, without I/O: issue a CA and a serving
certificate, read them back from a Secret's data, and decide whether anything must be issued
again and what the webhook registration's ``caBundle`` must be.

Why a CA and not one self-signed certificate: renewing the serving certificate then leaves the
``caBundle`` unchanged, so the API server never meets a certificate it does not trust yet. When
the CA itself is renewed, the previous one stays in the bundle until it expires, so serving
certificates issued under it (still served by replicas that have not reloaded) stay trusted.

The Secret's keys: ``ca.crt`` the trusted CAs (PEM, the signing CA first), ``ca.key`` the
signing CA's key, ``tls.crt`` and ``tls.key`` the serving pair. Keys are ECDSA P-256.
``now`` is always passed in, so every rule here has a table test.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RENEW_WHEN_REMAINING = 1 / 3
"""Renew a certificate once a third of its lifetime remains (cert-manager renews at the same
point): a failing renewal then has months, not minutes, to be noticed and fixed."""

BACKDATE = datetime.timedelta(minutes=1)
"""``notBefore`` lies this far in the past, so a peer whose clock is a little behind accepts a
certificate issued a moment ago."""


class BundleError(Exception):
    """A Secret's data is not a usable bundle; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long newly issued certificates are valid, in seconds."""

    certificate: float
    ca: float


@dataclass(frozen=True, slots=True)
class Bundle:
    """What the Secret holds, parsed."""

    ca_certificates: tuple[x509.Certificate, ...]
    """The trusted CAs, the signing one first."""
    ca_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def signing_ca(self) -> x509.Certificate:
        return self.ca_certificates[0]

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)


class Renewal(enum.Enum):
    """What must be issued again."""

    NOTHING = "nothing"
    SERVING = "serving"
    """A new serving certificate under the same CA: the ``caBundle`` stays."""
    CA = "ca"
    """A new CA and a serving certificate under it."""


def read_bundle(data: Mapping[str, str] | None) -> Bundle:
    """Parse a Secret's ``data`` (base64 values); raise ``BundleError`` when it is unusable."""
    if not data:
        raise BundleError("the Secret holds no certificates yet")
    missing = [key for key in ("ca.crt", "ca.key", "tls.crt", "tls.key") if not data.get(key)]
    if missing:
        raise BundleError(f"the Secret lacks {', '.join(missing)}")
    try:
        ca_certificates = tuple(x509.load_pem_x509_certificates(_b64decode(data["ca.crt"])))
        ca_key = serialization.load_pem_private_key(_b64decode(data["ca.key"]), password=None)
        certificate = x509.load_pem_x509_certificate(_b64decode(data["tls.crt"]))
        key = serialization.load_pem_private_key(_b64decode(data["tls.key"]), password=None)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BundleError(f"the Secret's certificates or keys are not PEM: {exc}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or not isinstance(
        key, ec.EllipticCurvePrivateKey
    ):
        raise BundleError("the Secret's keys are not ECDSA keys")
    if not _belongs(ca_key, ca_certificates[0]):
        raise BundleError("ca.key does not belong to the first certificate in ca.crt")
    if not _belongs(key, certificate):
        raise BundleError("tls.key does not belong to tls.crt")
    return Bundle(ca_certificates, ca_key, certificate, key)


def secret_data(bundle: Bundle) -> dict[str, str]:
    """The Secret's ``data`` for ``bundle`` (the inverse of ``read_bundle``)."""
    ca_pem = b"".join(
        certificate.public_bytes(serialization.Encoding.PEM)
        for certificate in bundle.ca_certificates
    )
    return {
        "ca.crt": _b64encode(ca_pem),
        "ca.key": _b64encode(_key_pem(bundle.ca_key)),
        "tls.crt": _b64encode(bundle.certificate_pem),
        "tls.key": _b64encode(bundle.key_pem),
    }


def renewal_due(certificate: x509.Certificate, lifetime: float, now: datetime.datetime) -> bool:
    """Whether at most a third of ``lifetime`` is left before ``certificate`` expires.

    Measured against the configured lifetime, not the certificate's own validity, which
    ``BACKDATE`` lengthens (a short lifetime would otherwise be renewed at once, forever).
    """
    remaining = (certificate.not_valid_after_utc - now).total_seconds()
    return remaining <= lifetime * RENEW_WHEN_REMAINING


def plan(
    bundle: Bundle | None, hosts: tuple[str, ...], lifetimes: Lifetimes, now: datetime.datetime
) -> Renewal:
    """What to issue so that ``bundle`` serves ``hosts`` and nothing is due for renewal."""
    if bundle is None or renewal_due(bundle.signing_ca, lifetimes.ca, now):
        return Renewal.CA
    if (
        not _signed_by(bundle.certificate, bundle.signing_ca)
        or subject_alternative_names(bundle.certificate) != frozenset(hosts)
        or renewal_due(bundle.certificate, lifetimes.certificate, now)
    ):
        return Renewal.SERVING
    return Renewal.NOTHING


def renew(
    bundle: Bundle | None,
    renewal: Renewal,
    hosts: tuple[str, ...],
    lifetimes: Lifetimes,
    now: datetime.datetime,
    common_name: str,
) -> Bundle:
    """``bundle`` with what ``renewal`` says issued anew (new keys each time)."""
    if renewal is Renewal.NOTHING and bundle is not None:
        return bundle
    if renewal is Renewal.CA or bundle is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _issue_ca(ca_key, f"{common_name}-ca", lifetimes.ca, now)
        # Older CAs stay trusted until they expire: replicas may still serve their certificates.
        kept = () if bundle is None else trusted(bundle.ca_certificates, now)
        ca_certificates = (ca, *kept)
    else:
        ca_key, ca_certificates = bundle.ca_key, bundle.ca_certificates
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _issue_serving(
        key, ca_certificates[0], ca_key, common_name, hosts, lifetimes.certificate, now
    )
    return Bundle(ca_certificates, ca_key, certificate, key)


def trusted(
    ca_certificates: tuple[x509.Certificate, ...], now: datetime.datetime
) -> tuple[x509.Certificate, ...]:
    """The CAs that have not expired, in order."""
    return tuple(ca for ca in ca_certificates if ca.not_valid_after_utc > now)


def ca_bundle(bundle: Bundle, now: datetime.datetime) -> str:
    """The ``caBundle`` value (base64 of the PEM CAs) for the webhook registration."""
    certificates = trusted(bundle.ca_certificates, now) or bundle.ca_certificates[:1]
    return _b64encode(b"".join(ca.public_bytes(serialization.Encoding.PEM) for ca in certificates))


def ca_bundle_matches(current: str | None, expected: str) -> bool:
    """Whether a registration's ``caBundle`` trusts exactly the CAs of ``expected``.

    Compared as sets of certificates, so a bundle written by someone else with other line breaks
    or in another order is left alone; anything unreadable does not match.
    """
    if not current:
        return False
    try:
        found = x509.load_pem_x509_certificates(_b64decode(current))
    except (ValueError, binascii.Error):
        return False
    wanted = x509.load_pem_x509_certificates(_b64decode(expected))
    return {_der(certificate) for certificate in found} == {_der(c) for c in wanted}


def next_renewal(bundle: Bundle, lifetimes: Lifetimes) -> datetime.datetime:
    """When ``plan`` will next ask for a renewal, unless the Secret changes before."""
    return min(
        bundle.signing_ca.not_valid_after_utc
        - datetime.timedelta(seconds=lifetimes.ca * RENEW_WHEN_REMAINING),
        bundle.certificate.not_valid_after_utc
        - datetime.timedelta(seconds=lifetimes.certificate * RENEW_WHEN_REMAINING),
    )


def subject_alternative_names(certificate: x509.Certificate) -> frozenset[str]:
    """The DNS names and IP addresses a certificate is valid for, as strings."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(names.get_values_for_type(x509.DNSName)) | frozenset(
        str(address) for address in names.get_values_for_type(x509.IPAddress)
    )


def _issue_ca(
    key: ec.EllipticCurvePrivateKey, name: str, lifetime: float, now: datetime.datetime
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    public_key = key.public_key()
    return (
        _validity(x509.CertificateBuilder(), now, now + datetime.timedelta(seconds=lifetime))
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_serving(
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    name: str,
    hosts: tuple[str, ...],
    lifetime: float,
    now: datetime.datetime,
) -> x509.Certificate:
    # A certificate outliving its CA would be untrusted for its last stretch.
    not_after = min(now + datetime.timedelta(seconds=lifetime), ca.not_valid_after_utc)
    return (
        _validity(x509.CertificateBuilder(), now, not_after)
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _validity(
    builder: x509.CertificateBuilder, now: datetime.datetime, not_after: datetime.datetime
) -> x509.CertificateBuilder:
    return builder.not_valid_before(now - BACKDATE).not_valid_after(not_after)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _signed_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    if certificate.issuer != ca.subject:
        return False
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _belongs(key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> bool:
    public = certificate.public_key()
    return (
        isinstance(public, ec.EllipticCurvePublicKey)
        and public.public_numbers() == key.public_key().public_numbers()
    )


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64decode(value: str) -> bytes:
    return base64.b64decode(value, validate=True)
