"""IAM as the validating STS reads it: the OIDC providers and roles held by moto's IAM."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ClientError

from irsa_lab.web_identity import Provider, Role, issuer_host_path

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


class MotoDirectory:
    """A ``Directory`` over moto's IAM at ``endpoint``, in moto's one account."""

    def __init__(self, endpoint: str, region: str, ca_bundle: str | None = None) -> None:
        # moto takes any keys; these name no secret.
        session = boto3.session.Session(
            aws_access_key_id="lab",
            aws_secret_access_key="lab",  # noqa: S106
            region_name=region,
        )
        verify: str | bool = ca_bundle or True
        self._iam: IAMClient = session.client("iam", endpoint_url=endpoint, verify=verify)
        sts = session.client("sts", endpoint_url=endpoint, verify=verify)
        self._account = sts.get_caller_identity()["Account"]

    @property
    def account(self) -> str:
        return self._account

    def provider_for(self, issuer: str) -> Provider | None:
        if not issuer.startswith("https://"):
            return None
        wanted = issuer_host_path(issuer)
        for entry in self._iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
            arn = entry["Arn"]
            provider = self._iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
            # moto keeps ":443" in the URL and the ARN where real IAM drops it; compare as IAM.
            if issuer_host_path(provider["Url"]) == wanted:
                return Provider(arn, provider["Url"], tuple(provider.get("ClientIDList", [])))
        return None

    def role(self, arn: str) -> Role | None:
        name = arn.rpartition("/")[2]
        try:
            role = self._iam.get_role(RoleName=name)["Role"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchEntity":
                return None
            raise
        if role["Arn"] != arn:
            return None
        return Role(arn, role["AssumeRolePolicyDocument"])
