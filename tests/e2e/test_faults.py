"""API server faults (a killed kube-apiserver, a compacted etcd) and a soak, on a control plane
of this module's own (the session one is shared with other tests, and these tests kill its
kube-apiserver and compact its etcd)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cluster import (
    REPO,
    WEBHOOK_NAMESPACE,
    WEBHOOK_SERVICE_ACCOUNT,
    ControlPlane,
    Webhook,
    chart_rbac,
    client,
    leaked_secrets,
    make_namespace,
    pod,
    read_env,
    review,
    role_of,
    service_account,
    start_webhook,
    token_kubeconfig,
    wait_until_mutating,
    webhook_configuration,
)

SCRIPT = str(REPO / "hack" / "control-plane.sh")
SOAK_SECONDS = float(os.environ.get("IRSA_SOAK_SECONDS", "20"))
ROLE = "arn:aws:iam::111122223333:role/{}"


def control_plane_script(*args: str) -> None:
    result = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    directory = tmp_path_factory.mktemp("faults-control-plane")
    control_plane_script("start", str(directory))
    try:
        yield ControlPlane(directory, read_env(directory / "env"))
    finally:
        subprocess.run([SCRIPT, "stop", str(directory)], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def hook(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    directory = tmp_path_factory.mktemp("faults-webhook")
    plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WEBHOOK_NAMESPACE}})
    plane.apply(*chart_rbac(plane, WEBHOOK_NAMESPACE))
    kubeconfig = token_kubeconfig(
        plane, directory / "kubeconfig", WEBHOOK_NAMESPACE, WEBHOOK_SERVICE_ACCOUNT
    )
    running = start_webhook(plane, directory, kubeconfig, "--enable-debugging-handlers")
    plane.apply(webhook_configuration("faults", running.url, running.ca_bundle))
    namespace = make_namespace(plane, "probe")
    plane.apply(service_account(namespace, "probe", {"eks.amazonaws.com/role-arn": ROLE.format(0)}))
    wait_until_mutating(plane, namespace, "probe")
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(timeout=30)
        # Outages, a relist and debug handlers: still nothing secret in its log.
        assert leaked_secrets(plane, running) == [], "secrets in the fault webhook's log"


def cache(webhook: Webhook) -> dict[str, Any]:
    dump: dict[str, Any] = httpx.get(f"{webhook.metrics_url}/debug/alpha/cache", timeout=5).json()
    return dump


def watch_restarts(webhook: Webhook, reason: str | None = None) -> float:
    """ServiceAccount watch restarts, for one reason or all."""
    total = 0.0
    for line in webhook.metrics().splitlines():
        if (
            line.startswith("irsa_webhook_watch_restarts_total{")
            and 'source="serviceaccounts"' in line
            and (reason is None or f'reason="{reason}"' in line)
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def gauge(webhook: Webhook, sample: str) -> float | None:
    """The value of one sample, e.g. ``irsa_webhook_cache_size{source="serviceaccounts"}``."""
    for line in webhook.metrics().splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return None


def log_records(webhook: Webhook, since: int) -> list[dict[str, Any]]:
    """The webhook's JSON log records after character ``since`` of its log."""
    records = []
    for line in webhook.logs()[since:].splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def wait_until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def injected_role(plane: ControlPlane, namespace: str, account: str) -> str | None:
    """Create a pod through the API server; the AWS_ROLE_ARN the webhook gave its container."""
    created = orjson.loads(
        plane.kubectl(
            "create", "-o", "json", "-f", "-",
            stdin=orjson.dumps(pod(namespace, f"p-{account}", account)).decode(),
        ).stdout
    )  # fmt: skip
    env = created["spec"]["containers"][0].get("env") or []
    return next((item.get("value") for item in env if item["name"] == "AWS_ROLE_ARN"), None)


# kube-apiserver alone, or etcd with it (both SIGKILLed; etcd restarts from its data directory).
OUTAGES = {
    "kube-apiserver": (("stop-apiserver", "--kill"), ("start-apiserver",)),
    "kube-apiserver-and-etcd": (("stop", "--kill"), ("start",)),
}


@pytest.mark.parametrize("outage", list(OUTAGES))
def test_the_watch_reconnects_after_a_kube_apiserver_kill_and_sees_later_changes(
    plane: ControlPlane, hook: Webhook, outage: str
) -> None:
    (stop, *stop_flags), (start,) = OUTAGES[outage]
    namespace = make_namespace(plane, "fault")
    plane.apply(
        service_account(namespace, "before", {"eks.amazonaws.com/role-arn": ROLE.format(1)})
    )
    wait_until(lambda: f"{namespace}/before" in cache(hook), 30, "the cache never saw 'before'")
    restarts = watch_restarts(hook)

    control_plane_script(stop, str(plane.directory), *stop_flags)
    try:
        # During the outage, cached ServiceAccounts still mutate, and /mutate never fails.
        with client(hook) as http:
            for _ in range(10):
                response = http.post(
                    f"{hook.url}/mutate",
                    content=review(namespace, "before"),
                    headers={"Content-Type": "application/json"},
                )
                assert response.status_code == 200
                assert role_of(response) == ROLE.format(1)
                time.sleep(0.2)
            # A ServiceAccount the cache does not know is allowed unchanged within the grace.
            started = time.monotonic()
            response = http.post(
                f"{hook.url}/mutate",
                content=review(namespace, "unknown"),
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 200
            assert role_of(response) is None
            assert time.monotonic() - started < 10  # grace period 3 s + slack
    finally:
        control_plane_script(start, str(plane.directory))
    restarted = read_env(plane.directory / "env")["APISERVER_URL"]
    assert restarted == plane.env["APISERVER_URL"], "the API server came back on another port"

    plane.apply(
        service_account(namespace, "before", {"eks.amazonaws.com/role-arn": ROLE.format(2)}),
        service_account(namespace, "after", {"eks.amazonaws.com/role-arn": ROLE.format(3)}),
    )

    def seen() -> bool:
        entries = cache(hook)
        roles = {
            name: entries.get(f"{namespace}/{name}", {}).get("RoleARN")
            for name in ("before", "after")
        }
        return roles == {"before": ROLE.format(2), "after": ROLE.format(3)}

    wait_until(seen, 60, "the cache never caught up after the API server came back")
    assert watch_restarts(hook) > restarts
    assert injected_role(plane, namespace, "after") == ROLE.format(3)
    assert "Traceback" not in hook.logs()


class Readiness:
    """Polls the webhook's /readyz in a thread and keeps every answer (-1: no answer)."""

    def __init__(self, webhook: Webhook) -> None:
        self.codes: list[int] = []
        self._webhook = webhook
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Readiness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _poll(self) -> None:
        with client(self._webhook) as http:
            while not self._stop.is_set():
                try:
                    self.codes.append(http.get(f"{self._webhook.url}/readyz").status_code)
                except httpx.HTTPError:
                    self.codes.append(-1)
                self._stop.wait(0.2)


def watch_from(plane: ControlPlane, resource_version: str) -> dict[str, Any]:
    """The API server's first answer to a ServiceAccount watch from ``resource_version``: the
    Status of an ERROR event (or of an error response), or {} if the watch just ran."""
    deadline = time.monotonic() + 60
    params = {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": "5"}
    with plane.client() as api:
        while True:
            with api.stream("GET", "/api/v1/serviceaccounts", params=params) as response:
                if response.status_code == 429 and time.monotonic() < deadline:
                    time.sleep(0.5)  # its watch cache is still initializing
                    continue
                if response.status_code != 200:
                    response.read()
                    answer: dict[str, Any] = response.json()
                    return answer
                for line in response.iter_lines():
                    if line:
                        event = orjson.loads(line)
                        return dict(event["object"]) if event["type"] == "ERROR" else {}
                return {}


@pytest.mark.timeout(240)
def test_a_watch_from_a_compacted_resource_version_gets_410_gone_and_the_cache_relists(
    plane: ControlPlane, hook: Webhook
) -> None:
    annotation = "eks.amazonaws.com/role-arn"
    namespace = make_namespace(plane, "gone")
    plane.apply(
        service_account(namespace, "changed", {annotation: ROLE.format(1)}),
        service_account(namespace, "deleted", {annotation: ROLE.format(1)}),
    )
    wait_until(
        lambda: {f"{namespace}/changed", f"{namespace}/deleted"} <= cache(hook).keys(),
        60,
        "the cache never saw the ServiceAccounts",
    )
    changed = plane.get("serviceaccount", "changed", "-n", namespace)
    with plane.client() as api:
        listed = api.get("/api/v1/serviceaccounts", params={"limit": "1"}).json()
    version_before = listed["metadata"]["resourceVersion"]
    expired_before = watch_restarts(hook, "expired")
    log_start = len(hook.logs())

    with Readiness(hook) as readiness:
        control_plane_script("stop-apiserver", str(plane.directory), "--kill")
        try:
            # Changes the webhook cannot see, as another API server of the cluster would have
            # written them: one created, one changed, one deleted. Then the history goes.
            key = f"/registry/serviceaccounts/{namespace}/{{}}"
            born = service_account(namespace, "born", {annotation: ROLE.format(4)})
            born["metadata"].update(
                uid=str(uuid.uuid4()),
                creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            del changed["metadata"]["resourceVersion"]
            changed["metadata"]["annotations"][annotation] = ROLE.format(5)
            with plane.etcd() as etcd:
                etcd.put_object(key.format("born"), born)
                etcd.put_object(key.format("changed"), changed)
                etcd.delete(key.format("deleted"))
                for index in range(3):
                    compacted = etcd.put("/irsa-test/bump", str(index))
                etcd.compact(compacted)
                assert "compacted" in etcd.read_at(key.format("born"), compacted - 1)["message"]
            assert int(version_before) < compacted
            # Meanwhile the webhook serves what it had.
            with client(hook) as http:
                response = http.post(
                    f"{hook.url}/mutate",
                    content=review(namespace, "changed"),
                    headers={"Content-Type": "application/json"},
                )
            assert role_of(response) == ROLE.format(1)
        finally:
            control_plane_script("start-apiserver", str(plane.directory))
        # Created the moment the API server is back: the relist or the watch after it has it.
        plane.apply(service_account(namespace, "after", {annotation: ROLE.format(6)}))

        def relisted() -> bool:
            entries = cache(hook)
            roles = {
                name: entries[f"{namespace}/{name}"].get("RoleARN")
                for name in ("born", "changed", "after")
                if f"{namespace}/{name}" in entries
            }
            return f"{namespace}/deleted" not in entries and roles == {
                "born": ROLE.format(4),
                "changed": ROLE.format(5),
                "after": ROLE.format(6),
            }

        wait_until(relisted, 120, "the cache never relisted after the API server came back")
    # /readyz said ready throughout: the cache kept serving, and a relist swaps in a whole list.
    assert len(readiness.codes) > 5
    assert set(readiness.codes) == {200}, readiness.codes

    # The API server answers a watch from the old version with 410 Gone ...
    status = watch_from(plane, version_before)
    assert status.get("code") == 410, status
    assert status.get("reason") == "Expired", status
    assert "too old resource version" in status.get("message", ""), status
    # ... and so it answered the webhook's watch: counted, logged, followed by a full list.
    assert watch_restarts(hook, "expired") > expired_before
    records = [
        record
        for record in log_records(hook, log_start)
        if record.get("logger") == "irsa_webhook.cache"
        and record.get("source") == "serviceaccounts"
    ]
    messages = [record["msg"] for record in records]
    assert "resource version expired; listing again" in messages, messages
    expired_at = messages.index("resource version expired; listing again")
    assert int(records[expired_at]["resource_version"]) < compacted
    assert "listed" in messages[expired_at:], messages
    relist = records[messages.index("listed", expired_at)]
    assert int(relist["resource_version"]) >= compacted
    assert gauge(hook, 'irsa_webhook_cache_synced{source="serviceaccounts"}') == 1

    # The watch runs again after the relist: a later ServiceAccount arrives by it (nothing
    # asked the webhook about it, so no live lookup put it there) and mutates a real pod.
    plane.apply(service_account(namespace, "later", {annotation: ROLE.format(7)}))
    wait_until(
        lambda: cache(hook).get(f"{namespace}/later", {}).get("RoleARN") == ROLE.format(7),
        60,
        "the watch after the relist never delivered 'later'",
    )
    accounts = len(plane.get("serviceaccounts", "--all-namespaces")["items"])
    wait_until(
        lambda: gauge(hook, 'irsa_webhook_cache_size{source="serviceaccounts"}') == accounts,
        30,
        f"irsa_webhook_cache_size never matched the API server's {accounts} ServiceAccounts",
    )
    assert injected_role(plane, namespace, "later") == ROLE.format(7)
    assert "Traceback" not in hook.logs()


def test_a_service_account_missing_from_the_cache_is_found_by_the_live_lookup(
    plane: ControlPlane, hook: Webhook
) -> None:
    namespace = make_namespace(plane, "live")
    # Created and used at once, over and over: some pods race the watch; all must be mutated.
    with client(hook) as http:
        for index in range(10):
            plane.apply(
                service_account(
                    namespace, f"sa{index}", {"eks.amazonaws.com/role-arn": ROLE.format(index)}
                )
            )
            response = http.post(
                f"{hook.url}/mutate",
                content=review(namespace, f"sa{index}"),
                headers={"Content-Type": "application/json"},
            )
            assert role_of(response) == ROLE.format(index)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_soak_at_a_fixed_rate_with_service_account_churn_fails_nothing_and_stays_bounded(
    plane: ControlPlane, hook: Webhook
) -> None:
    namespace = make_namespace(plane, "soak")
    accounts = [f"sa{index}" for index in range(10)]
    plane.apply(
        *[
            service_account(namespace, name, {"eks.amazonaws.com/role-arn": ROLE.format(1)})
            for name in accounts
        ]
    )
    rate = 40.0  # requests per second
    stop = threading.Event()
    churned = [0]

    def churn() -> None:
        with plane.client() as api:
            for generation in range(1_000_000):
                if stop.is_set():
                    return
                name = accounts[generation % len(accounts)]
                body = service_account(
                    namespace, name, {"eks.amazonaws.com/role-arn": ROLE.format(generation)}
                )
                api.put(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}", json=body)
                churned[0] += 1
                time.sleep(0.1)

    statuses: dict[int, int] = {}
    errors: list[str] = []
    churner = threading.Thread(target=churn)
    churner.start()
    try:
        with client(hook) as http:

            def send(index: int) -> None:
                try:
                    response = http.post(
                        f"{hook.url}/mutate",
                        content=review(namespace, accounts[index % len(accounts)], str(index)),
                        headers={"Content-Type": "application/json"},
                    )
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if role_of(response) is None:
                        errors.append(f"request {index} was not mutated")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

            warmup = int(rate * 2)
            total = warmup + int(rate * SOAK_SECONDS)
            started = time.monotonic()
            for index in range(total):
                if index == warmup:
                    rss_before, fds_before = rss_kib(hook.process.pid), open_fds(hook.process.pid)
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
                send(index)
            rss_after, fds_after = rss_kib(hook.process.pid), open_fds(hook.process.pid)
    finally:
        stop.set()
        churner.join(timeout=30)
    assert errors == []
    assert statuses == {200: total}
    assert churned[0] > SOAK_SECONDS  # about 10 updates a second
    # The measurement docs/reliability.md quotes (shown with -s).
    print(
        f"soak {SOAK_SECONDS}s at {rate}/s: {total} requests, {churned[0]} SA updates, "
        f"RSS {rss_before} -> {rss_after} KiB, fds {fds_before} -> {fds_after}"
    )
    assert rss_after - rss_before < 20 * 1024
    assert fds_after - fds_before < 10
