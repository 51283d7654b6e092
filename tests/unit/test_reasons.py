"""Every warning reason, produced by a real admission request and counted under its own code."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any

import httpx
import orjson
import pytest
import trustme

from irsa_webhook.app import WebhookState, create_metrics_app, create_webhook_app
from irsa_webhook.cache import ServiceAccountCache
from irsa_webhook.identity import parse_service_account
from irsa_webhook.kubeapi import ApiError
from irsa_webhook.reasons import Reason
from loopback import MemoryServiceAccounts, Pki, RunningServer, make_state, run_server

ROLE = "arn:aws:iam::111122223333:role/app"
PREFIX = "eks.amazonaws.com"

# reason -> (ServiceAccount annotations, pod annotations, container fields, volumes)
CASES: dict[Reason, tuple[dict[str, str], dict[str, str], dict[str, Any], list[Any]]] = {
    Reason.NEAR_MISS_ANNOTATION: (
        {f"{PREFIX}/role-arn": ROLE, f"{PREFIX}/rolearn": ROLE},
        {},
        {},
        [],
    ),
    Reason.MISPLACED_ANNOTATION: (
        {f"{PREFIX}/role-arn": ROLE, f"{PREFIX}/skip-containers": "app"},
        {},
        {},
        [],
    ),
    Reason.ROLE_ARN_NOT_AN_ARN: ({f"{PREFIX}/role-arn": "reader"}, {}, {}, []),
    Reason.STS_REGIONAL_ENDPOINTS_NOT_A_BOOLEAN: (
        {f"{PREFIX}/role-arn": ROLE, f"{PREFIX}/sts-regional-endpoints": "yes"},
        {},
        {},
        [],
    ),
    Reason.TOKEN_EXPIRATION_NOT_A_NUMBER: (
        {f"{PREFIX}/role-arn": ROLE},
        {f"{PREFIX}/token-expiration": "1h"},
        {},
        [],
    ),
    Reason.TOKEN_EXPIRATION_BELOW_MINIMUM: (
        {f"{PREFIX}/role-arn": ROLE},
        {f"{PREFIX}/token-expiration": "60"},
        {},
        [],
    ),
    Reason.TOKEN_EXPIRATION_ABOVE_MAXIMUM: (
        {f"{PREFIX}/role-arn": ROLE, f"{PREFIX}/token-expiration": "9999999999"},
        {},
        {},
        [],
    ),
    Reason.SKIP_CONTAINERS_MALFORMED: (
        {f"{PREFIX}/role-arn": ROLE},
        {f"{PREFIX}/skip-containers": 'a"b'},
        {},
        [],
    ),
    Reason.SKIP_CONTAINERS_NO_SUCH_CONTAINER: (
        {f"{PREFIX}/role-arn": ROLE},
        {f"{PREFIX}/skip-containers": "sidecar"},
        {},
        [],
    ),
    Reason.USER_SET_CREDENTIALS: (
        {f"{PREFIX}/role-arn": ROLE},
        {},
        {"env": [{"name": "AWS_ROLE_ARN", "value": "mine"}]},
        [],
    ),
    Reason.RESERVED_VOLUME_NAME: (
        {f"{PREFIX}/role-arn": ROLE},
        {},
        {},
        [{"name": "aws-iam-token", "emptyDir": {}}],
    ),
}


def test_every_reason_has_a_case() -> None:
    assert set(CASES) | {Reason.LIVE_LOOKUP_SKIPPED} == set(Reason)


def test_every_reason_code_is_a_metric_label_of_lowercase_words() -> None:
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", reason) for reason in Reason)


class NoApi:
    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        raise ApiError(0, "Unreachable", "no API server in this test")

    def stream(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        raise ApiError(0, "Unreachable", "no API server in this test")


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[WebhookState, MemoryServiceAccounts, RunningServer, RunningServer, Pki]]:
    pki = Pki(trustme.CA(), tmp_path_factory.mktemp("pki"))
    pki.write(pki.issue())
    state, accounts = make_state(pki)
    context = state.certificate.context  # type: ignore[attr-defined]
    with (
        run_server(create_webhook_app(state), context) as webhook,
        run_server(create_metrics_app(state)) as metrics,
    ):
        yield state, accounts, webhook, metrics, pki


def warning_counts(metrics_url: str) -> dict[str, float]:
    text = httpx.get(f"{metrics_url}/metrics", timeout=5).text
    return {
        match.group(1): float(match.group(2))
        for match in re.finditer(
            r'^irsa_webhook_warnings_total\{reason="([^"]+)"\} (\S+)$', text, re.M
        )
    }


@pytest.mark.parametrize("reason", list(Reason))
def test_each_warning_is_counted_under_its_own_reason(
    served: tuple[WebhookState, MemoryServiceAccounts, RunningServer, RunningServer, Pki],
    reason: Reason,
) -> None:
    state, accounts, webhook, metrics, pki = served
    account_annotations, pod_annotations, container_fields, volumes = CASES.get(
        reason, ({}, {}, {}, [])
    )
    name = f"sa-{reason}"
    if reason is Reason.LIVE_LOOKUP_SKIPPED:
        # A miss with no lookup left in the bucket: the real cache, which never gets to call.
        state.service_accounts = ServiceAccountCache(
            NoApi(), state.settings, metrics=state.metrics, lookup_burst=0, lookup_rate=0
        )
    else:
        state.service_accounts = accounts
        accounts.entries[("team-a", name)] = parse_service_account(
            account_annotations, state.settings
        )
    pod: dict[str, Any] = {
        "metadata": {"name": "p", "annotations": pod_annotations},
        "spec": {
            "serviceAccountName": name,
            "containers": [{"name": "app", "image": "busybox", **container_fields}],
            "volumes": volumes,
        },
    }
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "namespace": "team-a", "operation": "CREATE", "object": pod},
    }
    before = warning_counts(metrics.url)

    with httpx.Client(verify=pki.client_context(), timeout=5) as client:
        answer = client.post(
            f"{webhook.url}/mutate",
            content=orjson.dumps(review),
            headers={"Content-Type": "application/json"},
        ).json()

    after = warning_counts(metrics.url)
    assert len(answer["response"]["warnings"]) == 1, answer["response"]["warnings"]
    added = {
        label: after[label] - before.get(label, 0)
        for label in after
        if after[label] != before.get(label, 0)
    }
    assert added == {reason.value: 1}
