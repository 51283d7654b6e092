"""The serving certificate's expiry and subject, read without cryptography, agree with what the
cryptography package reads from the same certificates (the oracle here)."""

from __future__ import annotations

import base64
import contextlib
import datetime

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from irsa_webhook.certinfo import CertificateFormatError, read_certificate

KEY = ec.generate_private_key(ec.SECP256R1())
UTC = datetime.UTC


def build(subject: x509.Name, not_after: datetime.datetime) -> bytes:
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")]))
        .public_key(KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after)
        .sign(KEY, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def assert_agrees(pem: bytes) -> None:
    oracle = x509.load_pem_x509_certificate(pem)
    info = read_certificate(pem)
    assert info.not_after == oracle.not_valid_after_utc
    assert info.subject == oracle.subject.rfc4514_string()


def test_a_trustme_leaf_and_its_ca_read_as_cryptography_reads_them() -> None:
    ca = trustme.CA(organization_name="Acme, Inc.", organization_unit_name="Web+Ops")
    leaf = ca.issue_cert("127.0.0.1", "localhost", common_name="webhook.example")
    assert_agrees(ca.cert_pem.bytes())
    # A chain file: the leaf is the first certificate, the one that is read.
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    assert_agrees(chain)
    assert read_certificate(chain).subject.startswith("CN=webhook.example,")


@pytest.mark.parametrize(
    "not_after",
    [
        datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),  # UTCTime, the last year of it
        datetime.datetime(2050, 1, 1, tzinfo=UTC),  # GeneralizedTime from 2050 on
        datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),  # "no well-defined expiry"
    ],
)
def test_both_time_encodings_of_the_expiry_are_read(not_after: datetime.datetime) -> None:
    pem = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")]), not_after)
    assert_agrees(pem)


def test_a_multi_valued_name_and_unusual_attributes_are_written_as_rfc_4514() -> None:
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "a"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
                ]
            ),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example")]
            ),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SERIAL_NUMBER, "42")]),
        ]
    )
    assert_agrees(build(subject, datetime.datetime(2030, 1, 1, tzinfo=UTC)))


@settings(max_examples=30, deadline=None)
@given(
    common_name=st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=16
    ),
    organization=st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=16
    ),
    not_after=st.datetimes(
        min_value=datetime.datetime(2021, 1, 1), max_value=datetime.datetime(9999, 1, 1)
    ),
)
def test_any_subject_text_and_expiry_read_as_cryptography_reads_them(
    common_name: str, organization: str, not_after: datetime.datetime
) -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    assert_agrees(build(subject, not_after.replace(microsecond=0, tzinfo=UTC)))


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (b"", "no PEM CERTIFICATE block"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no PEM"),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "not base64"),
        (b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n", "X.509"),
        (b"-----BEGIN CERTIFICATE-----\nMIIBIjAN\n-----END CERTIFICATE-----\n", "X.509"),
    ],
)
def test_what_is_not_a_certificate_is_a_format_error(pem: bytes, message: str) -> None:
    with pytest.raises(CertificateFormatError, match=message):
        read_certificate(pem)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_der_is_a_format_error_never_a_crash(der: bytes) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.b64encode(der) + b"\n-----END CERTIFICATE-----"
    with contextlib.suppress(CertificateFormatError):
        read_certificate(pem)
