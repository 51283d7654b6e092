"""The webhook authenticated by an exec credential plugin (``aws eks get-token`` style) against
the real API server: while the plugin takes its time, admissions keep being answered."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cluster import (
    WEBHOOK_NAMESPACE,
    WEBHOOK_SERVICE_ACCOUNT,
    ControlPlane,
    chart_rbac,
    client,
    kubeconfig_for,
    leaked_secrets,
    make_namespace,
    review,
    role_of,
    service_account,
    start_webhook,
)

ROLE = "arn:aws:iam::111122223333:role/exec-{}"

# Answers the token from ./token with an expiry in the past, so every request asks again. The
# first run (the initial list) answers at once; every later one first waits for ./release,
# as a plugin would that prompts an SSO refresh or calls a slow STS.
PLUGIN = """\
#!/bin/sh
cd "$(dirname "$0")"
runs=$(( $(cat runs 2>/dev/null || echo 0) + 1 ))
echo "$runs" > runs
if [ "$runs" -ge 2 ]; then
  touch refreshing
  waited=0
  while [ ! -e release ] && [ "$waited" -lt 600 ]; do sleep 0.1; waited=$((waited + 1)); done
fi
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
printf '"status":{"token":"%s","expirationTimestamp":"2000-01-01T00:00:00Z"}}\\n' "$(cat token)"
"""


def wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_admissions_keep_flowing_while_the_exec_plugin_refreshes_the_token(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    plane = control_plane
    plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WEBHOOK_NAMESPACE}})
    plane.apply(*chart_rbac(plane, WEBHOOK_NAMESPACE))
    namespace = make_namespace(plane, "exec")
    cached = service_account(namespace, "cached", {"eks.amazonaws.com/role-arn": ROLE.format(1)})
    plane.apply(cached)
    token = plane.kubectl(
        "create", "token", WEBHOOK_SERVICE_ACCOUNT, "-n", WEBHOOK_NAMESPACE, "--duration", "1h"
    ).stdout.strip()
    (tmp_path / "token").write_text(token)
    plugin = tmp_path / "get-token"
    plugin.write_text(PLUGIN)
    plugin.chmod(0o755)
    exec_user = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "./get-token"}
    }
    kubeconfig = kubeconfig_for(plane, tmp_path / "kubeconfig", "exec", exec_user)
    webhook = start_webhook(plane, tmp_path, kubeconfig)
    try:
        with client(webhook) as http:
            # Ready after the first list, streamed on the connection the watch goes on using.
            # The next request, the live GET for a ServiceAccount the cache does not have,
            # needs a fresh token, and the plugin now holds that refresh until it is released.
            missing = http.post(
                f"{webhook.url}/mutate",
                content=review(namespace, "absent"),
                headers={"Content-Type": "application/json"},
                timeout=5,
            )
            assert missing.status_code == 200
            assert role_of(missing) is None
            wait_for(tmp_path / "refreshing", 60)
            for index in range(20):
                response = http.post(
                    f"{webhook.url}/mutate",
                    content=review(namespace, "cached", str(index)),
                    headers={"Content-Type": "application/json"},
                    timeout=5,
                )
                assert role_of(response) == ROLE.format(1)
            assert not (tmp_path / "release").exists()
            assert (tmp_path / "runs").read_text().strip() == "2", "still the same refresh"

            (tmp_path / "release").touch()
            # Refreshed, and all along the watch ran: a ServiceAccount created now is served.
            plane.apply(
                service_account(namespace, "later", {"eks.amazonaws.com/role-arn": ROLE.format(2)})
            )
            deadline = time.monotonic() + 30
            while True:
                response = http.post(
                    f"{webhook.url}/mutate",
                    content=review(namespace, "later"),
                    headers={"Content-Type": "application/json"},
                )
                if role_of(response) == ROLE.format(2):
                    break
                assert time.monotonic() < deadline, "the webhook never saw the new account"
                time.sleep(0.2)
    finally:
        (tmp_path / "release").touch()
        webhook.process.terminate()
        webhook.process.wait(timeout=30)
    assert leaked_secrets(plane, webhook, token) == []
