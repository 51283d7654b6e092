"""``irsa-webhook doctor pod|serviceaccount NAME -n NS``: gather, check in order, print, exit.

Exit 0 when no check failed, 1 when one did, 2 when doctor could not run at all (no cluster
access, the pod does not exist); the last is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
from pathlib import Path
from typing import Any, TextIO

from irsa_webhook import flags
from irsa_webhook.aws.trust_policy import condition_key_prefixes
from irsa_webhook.config import CONFIG_MAP_KEY, CONFIG_MAP_NAME, ConfigError, MutationSettings
from irsa_webhook.decision import Sources
from irsa_webhook.doctor import CHECK_IDS
from irsa_webhook.doctor.aws_checks import (
    AwsFacts,
    check_provider_audience,
    check_provider_exists,
    check_sts_probe,
    check_trust_policy,
)
from irsa_webhook.doctor.facts import Fetched, TlsProbe
from irsa_webhook.doctor.gather import (
    CLUSTER_JWKS_PATH,
    DISCOVERY_PATH,
    MintedToken,
    ca_bundle_pem,
    dry_run_pod,
    fetch_public,
    get_or_none,
    mint_token,
    probe_tls,
    ready_endpoints,
    url_target,
)
from irsa_webhook.doctor.issuer_checks import (
    check_issuer_discovery,
    check_issuer_match,
    check_jwks_kid,
    discovery_url,
)
from irsa_webhook.doctor.pod_checks import (
    annotation_set_at,
    check_credential_shadowing,
    check_pod_mutated,
    check_service_account,
    check_token_readable,
)
from irsa_webhook.doctor.report import (
    EXIT_CANNOT_RUN,
    CheckResult,
    exit_code,
    render_json,
    render_text,
    skipped,
)
from irsa_webhook.doctor.webhook_check import WebhookFacts, check_webhook_reachable
from irsa_webhook.identity import (
    EMPTY_CONFIG_MAP,
    EMPTY_CONTAINER_CREDENTIALS,
    ROLE_ARN,
    ROLE_ARN_PATTERN,
    ConfigMapMappings,
    Identity,
    Mode,
    SourceError,
    parse_config_map,
    parse_service_account,
    resolve_identity,
)
from irsa_webhook.injection_check import check_injection
from irsa_webhook.kubeapi import ApiError, KubeApi
from irsa_webhook.registration import (
    CONFIGURATIONS_PATH,
    WEBHOOK_NAME,
    WebhookRegistration,
    find_webhook,
    registration_of,
)


class CannotRun(Exception):
    """Doctor cannot examine anything (no cluster, no such pod); exit 2 with this line."""


def run(arguments: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = flags.mutation_settings(arguments)
    try:
        subject, results = asyncio.run(_examine(arguments, settings))
    except CannotRun as exc:
        print(f"irsa-webhook doctor: {exc}", file=stderr)
        return EXIT_CANNOT_RUN
    assert [r.check for r in results] == list(CHECK_IDS)
    if arguments.output == "json":
        stdout.write(render_json(results))
    else:
        stdout.write(render_text(subject, results))
    return exit_code(results)


def _kubeconfig(given: str) -> str:
    if given:
        return given
    path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    default = Path("~/.kube/config").expanduser()
    return path or (str(default) if default.exists() else "")


def _issuer_context(ca_bundle: str) -> ssl.SSLContext:
    bundle = ca_bundle or os.environ.get("AWS_CA_BUNDLE") or None
    try:
        return ssl.create_default_context(cafile=bundle)
    except (OSError, ssl.SSLError) as exc:
        raise CannotRun(f"cannot read the CA bundle {bundle}: {exc}") from None


def _problem(exc: ApiError, what: str) -> str:
    return f"cannot read {what}: {exc.status} {exc.reason} {exc.message}".rstrip()


async def _examine(
    arguments: argparse.Namespace, settings: MutationSettings
) -> tuple[str, list[CheckResult]]:
    context = _issuer_context(arguments.ca_bundle)
    try:
        api = KubeApi.from_config(_kubeconfig(arguments.kubeconfig))
    except (ConfigError, OSError) as exc:
        raise CannotRun(f"no usable Kubernetes credentials: {exc}") from None
    try:
        return await _examine_with(api, arguments, settings, context)
    finally:
        await api.aclose()


async def _examine_with(
    api: KubeApi,
    arguments: argparse.Namespace,
    settings: MutationSettings,
    context: ssl.SSLContext,
) -> tuple[str, list[CheckResult]]:
    namespace = arguments.namespace
    pod: dict[str, Any] | None = None
    try:
        if arguments.kind == "pod":
            pod = await get_or_none(api, f"/api/v1/namespaces/{namespace}/pods/{arguments.name}")
            if pod is None:
                raise CannotRun(f"pod {namespace}/{arguments.name} not found")
            account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
            subject = f"pod {namespace}/{arguments.name} (ServiceAccount {account})"
        else:
            account = arguments.name
            subject = f"serviceaccount {namespace}/{account}"
        service_account = await get_or_none(
            api, f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}"
        )
    except ApiError as exc:
        raise CannotRun(f"cannot read from the API server {api.host}: {exc}") from None

    registration, webhook_config, registration_problem = await _registration(
        api, arguments.webhook_configuration
    )
    config_map = await _config_map(api, webhook_config)
    entry = (
        parse_service_account((service_account.get("metadata") or {}).get("annotations"), settings)
        if service_account is not None
        else None
    )
    identity = resolve_identity(
        namespace, account, entry, config_map, EMPTY_CONTAINER_CREDENTIALS, settings
    )
    irsa = identity is not None and identity.mode is Mode.STS_WEB_IDENTITY
    results = [
        check_service_account(namespace, account, service_account, entry, identity, settings)
    ]

    webhook = await _webhook_facts(
        api, registration, webhook_config, registration_problem, namespace, account, irsa
    )
    no_pod = "no pod: doctor serviceaccount checks a pod yet to be created"
    injection = None
    if pod is not None:
        injection = check_injection(
            pod, Sources(entry, config_map, EMPTY_CONTAINER_CREDENTIALS), settings
        )
        namespace_labels = await _namespace_labels(api, namespace)
        annotated_at = (
            annotation_set_at(service_account, settings.annotation(ROLE_ARN))
            if service_account is not None
            else None
        )
        results.append(
            check_pod_mutated(
                pod,
                injection,
                registration,
                namespace_labels,
                annotated_at,
                mutates_now=webhook.dry_run == "mutated",
            )
        )
    else:
        results.append(skipped("pod-mutated", no_pod))

    results.append(check_webhook_reachable(webhook))
    if pod is not None and injection is not None:
        results.append(check_token_readable(pod, injection, settings))
        results.append(check_credential_shadowing(pod, injection.skipped))
    else:
        results += [skipped("token-readable", no_pod), skipped("credential-shadowing", no_pod)]

    results += await _chain(api, namespace, account, identity if irsa else None, context)
    return subject, results


async def _registration(
    api: KubeApi, configuration_name: str
) -> tuple[WebhookRegistration | None, dict[str, Any] | None, str]:
    """The webhook entry that sends pods to irsa-webhook, its raw form, or why it is unknown."""
    try:
        listed = await api.get(CONFIGURATIONS_PATH)
    except ApiError as exc:
        return None, None, _problem(exc, "MutatingWebhookConfigurations")
    for configuration in listed.get("items") or []:
        name = (configuration.get("metadata") or {}).get("name")
        if configuration_name and name != configuration_name:
            continue
        webhook = find_webhook(configuration)
        if webhook is not None and (configuration_name or webhook.get("name") == WEBHOOK_NAME):
            return registration_of(webhook), dict(webhook), ""
    return None, None, ""


async def _config_map(api: KubeApi, webhook: dict[str, Any] | None) -> ConfigMapMappings:
    """The webhook's ``pod-identity-webhook`` ConfigMap, in the namespace of its Service."""
    service = ((webhook or {}).get("clientConfig") or {}).get("service")
    if not service:
        return EMPTY_CONFIG_MAP
    try:
        found = await get_or_none(
            api, f"/api/v1/namespaces/{service.get('namespace')}/configmaps/{CONFIG_MAP_NAME}"
        )
    except ApiError:
        return EMPTY_CONFIG_MAP
    data = ((found or {}).get("data") or {}).get(CONFIG_MAP_KEY)
    try:
        mappings, _ = parse_config_map(data, MutationSettings())
    except SourceError:
        return EMPTY_CONFIG_MAP
    return mappings


async def _namespace_labels(api: KubeApi, namespace: str) -> dict[str, str]:
    try:
        found = await get_or_none(api, f"/api/v1/namespaces/{namespace}")
    except ApiError:
        return {}
    return dict(((found or {}).get("metadata") or {}).get("labels") or {})


async def _webhook_facts(
    api: KubeApi,
    registration: WebhookRegistration | None,
    webhook: dict[str, Any] | None,
    problem: str,
    namespace: str,
    account: str,
    irsa: bool,
) -> WebhookFacts:
    if registration is None or webhook is None:
        return WebhookFacts(None, problem=problem)
    client_config = webhook.get("clientConfig") or {}
    ca_pem = ca_bundle_pem(client_config)
    endpoints: tuple[tuple[str, int], ...] | None = None
    tls: TlsProbe | None = None
    service = client_config.get("service")
    if service:
        service_ns, service_name = service.get("namespace", ""), service.get("name", "")
        service_port = int(service.get("port") or 443)
        target = f"service {service_ns}/{service_name}:{service_port}"
        try:
            endpoints = tuple(await ready_endpoints(api, service_ns, service_name, service_port))
        except ApiError as exc:
            return WebhookFacts(registration, target, problem=_problem(exc, "its endpoints"))
        if endpoints:
            host, port = endpoints[0]
            tls = await probe_tls(host, port, f"{service_name}.{service_ns}.svc", ca_pem)
    else:
        target = str(client_config.get("url", ""))
        host, port = url_target(target)
        tls = await probe_tls(host, port, host, ca_pem)
    if not irsa:
        dry_run = "skipped: the ServiceAccount names no role, so no pod of it would be mutated"
    else:
        try:
            created = await dry_run_pod(api, namespace, account)
        except ApiError as exc:
            kind = "forbidden" if exc.status == 403 else "refused"
            dry_run = f"{kind}: {exc.message or exc.reason}"
        else:
            volumes = (created.get("spec") or {}).get("volumes") or []
            mutated = any(v.get("name") == "aws-iam-token" for v in volumes)
            dry_run = "mutated" if mutated else "not-mutated"
    return WebhookFacts(registration, target, endpoints, tls, ca_pem, dry_run)


async def _chain(
    api: KubeApi,
    namespace: str,
    account: str,
    identity: Identity | None,
    context: ssl.SSLContext,
) -> list[CheckResult]:
    """issuer-discovery through sts-probe: the documents, a fresh token, then AWS."""
    cluster_problem = ""
    try:
        cluster_discovery = await get_or_none(api, DISCOVERY_PATH)
    except ApiError as exc:
        cluster_discovery, cluster_problem = None, _problem(exc, DISCOVERY_PATH)
    try:
        cluster_jwks = await get_or_none(api, CLUSTER_JWKS_PATH)
    except ApiError:
        cluster_jwks = None
    issuer = str((cluster_discovery or {}).get("issuer") or "")
    public_discovery: Fetched | None = None
    public_jwks: Fetched | None = None
    if issuer.startswith("https://"):
        public_discovery = await fetch_public(discovery_url(issuer), context)
        jwks_uri = str((public_discovery.document or {}).get("jwks_uri") or "")
        if jwks_uri.startswith("https://"):
            public_jwks = await fetch_public(jwks_uri, context)
    results = [
        check_issuer_discovery(cluster_discovery, cluster_problem, public_discovery, public_jwks)
    ]

    after = CHECK_IDS[CHECK_IDS.index("issuer-match") :]
    if identity is None:
        return results + [skipped(c, "the ServiceAccount names no IRSA role") for c in after]
    try:
        token: MintedToken = await mint_token(api, namespace, account, identity.audience)
    except (ApiError, ValueError) as exc:
        why = f"cannot mint a token for {namespace}/{account} with TokenRequest: {exc}"
        return results + [skipped(c, why) for c in after]

    iss = str(token.claims.get("iss", ""))
    if ROLE_ARN_PATTERN.fullmatch(identity.role_arn):
        aws = await asyncio.to_thread(_read_aws, identity.role_arn, iss, token.token)
    else:
        why = "the role ARN does not parse (see service-account)"
        aws = AwsFacts(iam_unavailable=why, sts_unavailable=why)
    compared: list[tuple[str, str | None]] = [
        ("the API server's discovery issuer", issuer or None),
        (
            "the published discovery issuer",
            (public_discovery.document or {}).get("issuer") if public_discovery else None,
        ),
    ]
    compared += _aws_spellings(aws)
    issuer_match = check_issuer_match(iss, compared)
    results.append(issuer_match)
    results.append(
        check_jwks_kid(
            token.token,
            token.header,
            public_jwks.document if public_jwks else None,
            cluster_jwks,
        )
    )
    results.append(check_provider_exists(aws, iss, issuer_match))
    results.append(check_provider_audience(aws, identity.audience))
    results.append(check_trust_policy(aws, identity.role_arn, token.claims))
    results.append(check_sts_probe(aws, earlier=results))
    return results


def _read_aws(role_arn: str, issuer: str, token: str) -> AwsFacts:
    from irsa_webhook.doctor.aws_side import read_aws

    return read_aws(role_arn, issuer, token)


def _aws_spellings(aws: AwsFacts) -> list[tuple[str, str | None]]:
    """The issuer as IAM spells it: the provider's URL and the trust policy's key prefixes."""
    if aws.iam_unavailable:
        return [(f"the IAM provider URL and trust policy ({aws.iam_unavailable})", None)]
    spellings: list[tuple[str, str | None]] = []
    if aws.provider is not None:
        spellings.append(("the IAM provider URL", "https://" + str(aws.provider.get("Url", ""))))
    else:
        near = [a for a in aws.provider_arns if a != aws.provider_arn]
        host = aws.provider_arn.partition(":oidc-provider/")[2].split("/")[0]
        for arn in near:
            url = arn.partition(":oidc-provider/")[2]
            if url.split("/")[0].replace(":443", "") == host.replace(":443", ""):
                spellings.append((f"the IAM provider URL of {arn}", "https://" + url))
    for prefix in condition_key_prefixes(aws.trust_policy):
        spellings.append(("the trust policy's condition key prefix", "https://" + prefix))
    return spellings
