"""The issuer documents' pure rules: kid derivation, JWKs, the discovery document, the checks a
published pair must pass. (That the kid is kube-apiserver's own is proven against the real API
server in tests/e2e/test_oidc_e2e.py.)"""

from __future__ import annotations

import base64
import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from irsa_webhook.oidc import (
    IssuerError,
    PublicKey,
    discovery_document,
    issuer_url,
    jwk,
    jwks,
    key_id,
    load_public_keys,
    provider_host_path,
    public_key_from_jwk,
    published_problems,
    validate_issuer,
)

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())
ISSUER = "https://oidc.example.com/cluster-1"


def pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_the_kid_is_the_unpadded_base64url_sha256_of_the_pkix_der() -> None:
    der = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert key_id(RSA_KEY.public_key()) == expected
    assert len(expected) == 43


def test_an_rsa_jwk_carries_use_alg_and_minimal_big_endian_numbers() -> None:
    entry = jwk(RSA_KEY.public_key())
    assert entry["kty"] == "RSA"
    assert entry["alg"] == "RS256"
    assert entry["use"] == "sig"
    assert entry["e"] == "AQAB"
    assert public_key_from_jwk(entry).public_numbers() == RSA_KEY.public_key().public_numbers()


def test_an_ec_jwk_pads_coordinates_to_the_curve_size() -> None:
    entry = jwk(EC_KEY.public_key())
    assert (entry["kty"], entry["crv"], entry["alg"]) == ("EC", "P-384", "ES384")
    assert len(base64.urlsafe_b64decode(entry["x"] + "==")) == 48
    assert public_key_from_jwk(entry).public_numbers() == EC_KEY.public_key().public_numbers()


def test_several_keys_give_one_entry_each_in_order_without_duplicates() -> None:
    keys: list[PublicKey] = [RSA_KEY.public_key(), EC_KEY.public_key(), RSA_KEY.public_key()]
    assert [entry["kid"] for entry in jwks(keys)["keys"]] == [
        key_id(RSA_KEY.public_key()),
        key_id(EC_KEY.public_key()),
    ]


def test_the_discovery_document_points_its_jwks_uri_under_the_public_issuer() -> None:
    document = discovery_document(ISSUER, [EC_KEY.public_key(), RSA_KEY.public_key()])
    assert document == {
        "issuer": ISSUER,
        "jwks_uri": "https://oidc.example.com/cluster-1/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES384", "RS256"],
    }


def test_a_trailing_slash_is_kept_in_the_issuer_but_not_doubled_in_paths() -> None:
    assert discovery_document("https://a.example/", [])["issuer"] == "https://a.example/"
    assert issuer_url("https://a.example/", "openid/v1/jwks") == "https://a.example/openid/v1/jwks"


@pytest.mark.parametrize(
    ("issuer", "reason"),
    [
        ("http://oidc.example.com", "not an https URL"),
        ("oidc.example.com", "not an https URL"),
        ("https://", "no host"),
        ("https://oidc.example.com/?x=1", "query"),
        ("https://oidc.example.com/#frag", "fragment"),
        ("https://user:pw@oidc.example.com", "credentials"),
    ],
)
def test_an_issuer_sts_cannot_use_is_refused_with_the_reason(issuer: str, reason: str) -> None:
    with pytest.raises(IssuerError, match=reason):
        validate_issuer(issuer)


@pytest.mark.parametrize(
    ("issuer", "host_path"),
    [
        ("https://oidc.example.com", "oidc.example.com"),
        ("https://oidc.example.com:443/c1", "oidc.example.com/c1"),
        ("https://localhost:8443/bucket", "localhost:8443/bucket"),
        ("https://s3.eu-west-1.amazonaws.com/b/", "s3.eu-west-1.amazonaws.com/b"),
    ],
)
def test_the_provider_name_drops_the_scheme_and_the_default_port(
    issuer: str, host_path: str
) -> None:
    assert provider_host_path(issuer) == host_path


def test_a_key_file_may_hold_several_keys_and_certificates() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sa")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(EC_KEY.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2026, 1, 1))
        .not_valid_after(datetime.datetime(2027, 1, 1))
        .sign(EC_KEY, hashes.SHA256())
    )
    data = pem_public(RSA_KEY) + certificate.public_bytes(serialization.Encoding.PEM)
    assert [key_id(key) for key in load_public_keys(data, "keys.pem")] == [
        key_id(RSA_KEY.public_key()),
        key_id(EC_KEY.public_key()),
    ]


def test_a_private_key_file_gives_its_public_key() -> None:
    data = RSA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (key,) = load_public_keys(data, "sa.key")
    assert key_id(key) == key_id(RSA_KEY.public_key())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not a pem", "holds no public key"),
        (
            ed25519.Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "cannot sign ServiceAccount tokens",
        ),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "unreadable PEM"),
    ],
)
def test_a_key_file_kube_apiserver_could_not_use_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(IssuerError, match=reason):
        load_public_keys(data, "bad.pem")


def test_a_correct_published_pair_has_no_problems() -> None:
    keys = [RSA_KEY.public_key()]
    kids = [key_id(RSA_KEY.public_key())]
    assert published_problems(ISSUER, discovery_document(ISSUER, keys), jwks(keys), kids) == []


def test_an_issuer_that_differs_by_a_trailing_slash_and_a_missing_key_are_both_named() -> None:
    published = discovery_document(ISSUER + "/", [RSA_KEY.public_key()])
    problems = published_problems(
        ISSUER, published, jwks([RSA_KEY.public_key()]), [key_id(EC_KEY.public_key())]
    )
    assert len(problems) == 2
    assert "byte for byte" in problems[0]
    assert key_id(EC_KEY.public_key()) in problems[1]


def test_an_http_jwks_uri_and_a_jwks_without_keys_are_problems() -> None:
    discovery = {"issuer": ISSUER, "jwks_uri": "http://internal:6443/openid/v1/jwks"}
    problems = published_problems(ISSUER, discovery, {}, [])
    assert any("not an https URL" in problem for problem in problems)
    assert any("no 'keys' list" in problem for problem in problems)


@pytest.mark.parametrize(
    "entry",
    [
        {"kty": "RSA", "kid": "a", "n": "AQAB"},
        {"kty": "EC", "kid": "b", "crv": "P-999", "x": "AA", "y": "AA"},
        {"kty": "OKP", "kid": "c"},
        {"kty": "RSA", "kid": "d", "n": 5, "e": "AQAB"},
    ],
)
def test_a_malformed_jwk_is_refused(entry: dict[str, object]) -> None:
    with pytest.raises(IssuerError, match="JWK"):
        public_key_from_jwk(entry)
