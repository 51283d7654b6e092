"""Partition and account for ``--compose-role-arn``, from the EC2 instance identity document.

Only used at start-up when ``--aws-partition``/``--aws-account-id`` are not given, as the
reference does (it fails the start when metadata is unreachable; so do we, with a message).
"""

from __future__ import annotations

import httpx

from irsa_webhook.config import ConfigError

IMDS_URL = "http://169.254.169.254"
_PARTITIONS = (
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-isob-", "aws-iso-b"),
    ("us-iso-", "aws-iso"),
    ("eusc-", "aws-eusc"),
)


def partition_for_region(region: str) -> str:
    for prefix, partition in _PARTITIONS:
        if region.startswith(prefix):
            return partition
    return "aws"


def partition_and_account(base_url: str = IMDS_URL, timeout: float = 2.0) -> tuple[str, str]:
    try:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            token = client.put(
                "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
            )
            token.raise_for_status()
            document = client.get(
                "/latest/dynamic/instance-identity/document",
                headers={"X-aws-ec2-metadata-token": token.text},
            )
            document.raise_for_status()
            identity = document.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ConfigError(
            f"--compose-role-arn needs instance metadata, which failed ({exc}); "
            "pass --aws-partition and --aws-account-id instead"
        ) from None
    return partition_for_region(str(identity.get("region", ""))), str(identity["accountId"])
