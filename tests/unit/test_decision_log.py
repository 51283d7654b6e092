"""Which admission decisions are logged at which level (through the real HTTP layer)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trustme

from irsa_webhook.app import create_webhook_app
from loopback import Pki, make_state, run_server


@pytest.fixture
def client_and_url(tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    pki = Pki(trustme.CA(), tmp_path)
    pki.write(pki.issue())
    state, _ = make_state(pki)
    context = state.certificate.context  # type: ignore[attr-defined]
    with (
        run_server(create_webhook_app(state), context) as server,
        httpx.Client(verify=pki.client_context(), timeout=5) as client,
    ):
        yield client, f"{server.url}/mutate"


def _review(service_account: str, annotations: dict[str, str] | None = None) -> bytes:
    pod: dict[str, Any] = {
        "metadata": {"name": "web", "annotations": annotations or {}},
        "spec": {"serviceAccountName": service_account, "containers": [{"name": "app"}]},
    }
    request = {"uid": "u", "namespace": "team-a", "operation": "CREATE", "object": pod}
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "request": request})


def _decisions(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (record.levelno, record.__dict__["outcome"])
        for record in caplog.records
        if record.getMessage() == "admission decision"
    ]


@pytest.mark.parametrize(
    ("service_account", "annotations", "level", "outcome"),
    [
        ("s3", None, logging.DEBUG, "mutated"),
        ("plain", None, logging.DEBUG, "not-annotated"),
        ("ghost", None, logging.INFO, "missing-service-account"),
        ("s3", {"eks.amazonaws.com/skip-containers": "nope"}, logging.INFO, "mutated"),
    ],
    ids=["mutated", "not-annotated", "missing-sa", "with-a-warning"],
)
def test_routine_decisions_log_at_debug_and_what_needs_action_at_info(
    client_and_url: tuple[httpx.Client, str],
    caplog: pytest.LogCaptureFixture,
    service_account: str,
    annotations: dict[str, str] | None,
    level: int,
    outcome: str,
) -> None:
    client, url = client_and_url
    caplog.set_level(logging.DEBUG, logger="irsa_webhook.app")

    response = client.post(
        url,
        content=_review(service_account, annotations),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 200
    assert _decisions(caplog) == [(level, outcome)]


def test_at_info_a_routine_decision_builds_no_log_record(
    client_and_url: tuple[httpx.Client, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, url = client_and_url
    caplog.set_level(logging.INFO, logger="irsa_webhook.app")

    for _ in range(3):
        client.post(url, content=_review("s3"), headers={"Content-Type": "application/json"})

    assert _decisions(caplog) == []
