"""The lab's issuer: objects of moto's S3 over TLS, path style, as STS reads an S3 issuer."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator

import httpx
import pytest
import trustme

from aws_emulator import MotoServer
from irsa_lab import issuer_server
from irsa_lab.serving import server, tls_context
from loopback import serve_in_thread

BUCKET = "irsa-lab-issuer-test"
DISCOVERY = ".well-known/openid-configuration"


@pytest.fixture(scope="module")
def issuer(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The issuer in front of a bucket whose discovery document anyone may read."""
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_policy(
        Bucket=BUCKET,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{BUCKET}/{DISCOVERY}",
                    }
                ],
            }
        ),
    )
    s3.put_object(
        Bucket=BUCKET,
        Key=DISCOVERY,
        Body=b'{"issuer": "https://lab.example/b"}',
        ContentType="application/json",
        CacheControl="max-age=300",
    )
    s3.put_object(Bucket=BUCKET, Key="private.txt", Body=b"not for anonymous readers")
    ca = trustme.CA()
    directory = tmp_path_factory.mktemp("issuer")
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = directory / "tls.crt", directory / "tls.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    app = issuer_server.create_app(moto.url, moto.ca_bundle)
    with serve_in_thread(server(app, "127.0.0.1", 0, tls_context(str(cert), str(key)))) as (
        port,
        _thread,
    ):
        trust = ssl.create_default_context()
        ca.configure_trust(trust)
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust) as client:
            yield client


def test_an_object_is_served_with_its_content_type_and_cache_control(
    issuer: httpx.Client,
) -> None:
    answer = issuer.get(f"/{BUCKET}/{DISCOVERY}")
    assert answer.status_code == 200
    assert answer.json() == {"issuer": "https://lab.example/b"}
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "max-age=300"


def test_an_object_the_bucket_policy_keeps_private_is_refused_as_s3_refuses_it(
    issuer: httpx.Client,
) -> None:
    assert issuer.get(f"/{BUCKET}/private.txt").status_code == 403


def test_a_missing_object_is_not_found(issuer: httpx.Client) -> None:
    assert issuer.get(f"/{BUCKET}/openid/v1/jwks").status_code in (403, 404)


def test_a_bucket_listing_is_refused(issuer: httpx.Client) -> None:
    assert issuer.get(f"/{BUCKET}").status_code == 403
    assert issuer.get(f"/{BUCKET}/").status_code == 403


def test_only_reads_are_served(issuer: httpx.Client) -> None:
    assert issuer.put(f"/{BUCKET}/{DISCOVERY}", content=b"{}").status_code == 405


def test_the_issuer_speaks_tls_1_2_and_nothing_older(
    issuer: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    leaf = trustme.CA().issue_cert("127.0.0.1")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    assert tls_context(str(cert), str(key)).minimum_version == ssl.TLSVersion.TLSv1_2
    assert issuer.get(f"/{BUCKET}/{DISCOVERY}").status_code == 200
