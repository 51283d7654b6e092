"""The IAM OIDC identity provider for the cluster's issuer, with the token audiences in its
client IDs (a provider without the webhook's audience fails every exchange with
"Incorrect token audience")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from irsa_webhook.aws.changes import Plan
from irsa_webhook.aws.roles import provider_arn
from irsa_webhook.aws.session import Aws, Caller, aws_errors, read_or_none

if TYPE_CHECKING:
    from mypy_boto3_iam.type_defs import TagTypeDef

TAG_MANAGED: TagTypeDef = {"Key": "irsa-webhook/managed-by", "Value": "irsa-webhook"}


def current_client_ids(aws: Aws, arn: str) -> list[str] | None:
    """The provider's client IDs, or None when there is no provider ``arn``."""
    answer = read_or_none(
        f"iam:GetOpenIDConnectProvider {arn}",
        lambda: aws.iam().get_open_id_connect_provider(OpenIDConnectProviderArn=arn),
        "NoSuchEntity",
    )
    return None if answer is None else list(answer.get("ClientIDList", []))


def plan_provider(aws: Aws, caller: Caller, issuer: str, audiences: Sequence[str]) -> Plan:
    """Creates the provider, or adds the audiences it lacks; never removes a client ID."""
    arn = provider_arn(issuer, caller.partition, caller.account)
    iam = aws.iam()
    plan = Plan()
    client_ids = current_client_ids(aws, arn)
    if client_ids is None:

        def create() -> None:
            # No thumbprint: IAM now verifies the issuer's certificate against its trusted CAs
            # itself, and a pinned thumbprint breaks when the issuer's certificate rolls over.
            with aws_errors("iam:CreateOpenIDConnectProvider"):
                iam.create_open_id_connect_provider(
                    Url=issuer, ClientIDList=list(audiences), Tags=[TAG_MANAGED]
                )

        plan.add(
            f"create the IAM OIDC provider {arn} for {issuer} with client IDs "
            f"{', '.join(audiences)}",
            create,
        )
        return plan
    for audience in audiences:
        if audience in client_ids:
            plan.keep(f"client ID {audience} of {arn}")
            continue

        def add(audience: str = audience) -> None:
            with aws_errors("iam:AddClientIDToOpenIDConnectProvider"):
                iam.add_client_id_to_open_id_connect_provider(
                    OpenIDConnectProviderArn=arn, ClientID=audience
                )

        plan.add(f"add client ID {audience} to {arn}", add)
    return plan
