"""Exec credential plugins, run for real: small scripts that answer as ``aws eks get-token`` does,
or fail, hang, or print nonsense."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from irsa_webhook.credentials import CredentialError, ExecConfig, ExecPlugin

pytestmark = pytest.mark.timeout(20)

API_VERSION = "client.authentication.k8s.io/v1"


def plugin(directory: Path, body: str, name: str = "plugin") -> str:
    """An executable Python script; ``calls`` (a file beside it) counts its runs."""
    path = directory / name
    path.write_text(
        f"#!{sys.executable}\n"
        "import json, os, pathlib, sys, time\n"
        "calls = pathlib.Path(__file__).with_name('calls')\n"
        "calls.write_text(str(int(calls.read_text() if calls.exists() else 0) + 1))\n"
        + textwrap.dedent(body)
    )
    path.chmod(0o755)
    return str(path)


def calls(directory: Path) -> int:
    path = directory / "calls"
    return int(path.read_text() or 0) if path.exists() else 0  # empty while being written


def answering(token: str, expiry: str = "") -> str:
    status = {"token": token, **({"expirationTimestamp": expiry} if expiry else {})}
    document = {"apiVersion": API_VERSION, "kind": "ExecCredential", "status": status}
    return f"print({orjson.dumps(document).decode()!r})\n"


def authorization(plugin: ExecPlugin) -> str | None:
    return asyncio.run(plugin.authorization())


def test_a_token_answer_becomes_a_bearer_header_and_is_reused_until_it_expires(
    tmp_path: Path,
) -> None:
    command = plugin(tmp_path, answering("t0k3n", "2999-01-01T00:00:00Z"))
    credentials = ExecPlugin(ExecConfig(API_VERSION, command), None)

    async def twice() -> list[str | None]:
        return [await credentials.authorization(), await credentials.authorization()]

    assert asyncio.run(twice()) == ["Bearer t0k3n", "Bearer t0k3n"]
    assert calls(tmp_path) == 1


def test_an_expired_token_is_fetched_again(tmp_path: Path) -> None:
    command = plugin(tmp_path, answering("old", "2000-01-01T00:00:00+00:00"))
    credentials = ExecPlugin(ExecConfig(API_VERSION, command), None)
    authorization(credentials)
    authorization(credentials)
    assert calls(tmp_path) == 2


def test_a_token_close_to_its_expiry_is_fetched_again(tmp_path: Path) -> None:
    command = plugin(tmp_path, answering("t", "2030-01-01T00:00:05Z"))
    now = [1893456000.0]  # 2030-01-01T00:00:00Z: five seconds before the expiry
    credentials = ExecPlugin(ExecConfig(API_VERSION, command), None, clock=lambda: now[0])
    authorization(credentials)
    authorization(credentials)
    assert calls(tmp_path) == 2


def test_a_token_without_expiry_is_kept_until_the_server_refuses_it(tmp_path: Path) -> None:
    command = plugin(tmp_path, answering("forever"))
    credentials = ExecPlugin(ExecConfig(API_VERSION, command), None)
    authorization(credentials)
    authorization(credentials)
    assert calls(tmp_path) == 1
    credentials.invalidate()
    authorization(credentials)
    assert calls(tmp_path) == 2


def test_concurrent_requests_wait_on_one_run_of_the_plugin(tmp_path: Path) -> None:
    command = plugin(tmp_path, "time.sleep(0.3)\n" + answering("shared"))
    credentials = ExecPlugin(ExecConfig(API_VERSION, command), None)

    async def many() -> list[str | None]:
        return await asyncio.gather(*(credentials.authorization() for _ in range(5)))

    assert asyncio.run(many()) == ["Bearer shared"] * 5
    assert calls(tmp_path) == 1


def test_the_event_loop_keeps_running_while_the_plugin_works(tmp_path: Path) -> None:
    release = tmp_path / "release"
    command = plugin(
        tmp_path,
        f"""\
        deadline = time.monotonic() + 15
        while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:
            time.sleep(0.02)
        """
        + answering("slow"),
    )
    credentials = ExecPlugin(ExecConfig(API_VERSION, command), None)

    async def scenario() -> str | None:
        fetch = asyncio.create_task(credentials.authorization())
        while calls(tmp_path) == 0:  # the plugin has started and now waits for the release
            await asyncio.sleep(0.01)
        # This coroutine runs while the plugin is still waiting: the loop is not blocked.
        assert not fetch.done()
        release.touch()
        return await fetch

    assert asyncio.run(scenario()) == "Bearer slow"


def test_the_plugin_gets_its_args_env_and_the_exec_info(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    command = plugin(
        tmp_path,
        f"""\
        pathlib.Path({str(seen)!r}).write_text(json.dumps({{
            "args": sys.argv[1:],
            "region": os.environ.get("AWS_REGION"),
            "info": json.loads(os.environ["KUBERNETES_EXEC_INFO"]),
            "cwd": os.getcwd(),
        }}))
        """
        + answering("t"),
    )
    config = ExecConfig(
        API_VERSION,
        command,
        args=("eks", "get-token"),
        env=(("AWS_REGION", "eu-west-1"),),
        cluster={"server": "https://k8s.example:6443", "config": {"x": 1}},
        directory=str(tmp_path),
    )
    authorization(ExecPlugin(config, None))
    assert orjson.loads(seen.read_bytes()) == {
        "args": ["eks", "get-token"],
        "region": "eu-west-1",
        "info": {
            "apiVersion": API_VERSION,
            "kind": "ExecCredential",
            "spec": {
                "interactive": False,
                "cluster": {"server": "https://k8s.example:6443", "config": {"x": 1}},
            },
        },
        "cwd": str(tmp_path),
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "sys.stderr.write('ExpiredToken: the SSO session expired\\nsecret detail\\n')\n"
            "sys.exit(3)\n",
            "exited with status 3: ExpiredToken: the SSO session expired",
        ),
        ("print('not json')\n", "not an ExecCredential in JSON"),
        ("print('[1]')\n", "JSON that is not an ExecCredential"),
        (
            "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', "
            "'kind': 'ExecCredential', 'status': {'token': 't'}}))\n",
            "answered apiVersion 'client.authentication.k8s.io/v1beta1'",
        ),
        (
            f"print(json.dumps({{'apiVersion': {API_VERSION!r}, 'kind': 'ExecCredential'}}))\n",
            "without a status",
        ),
        (
            f"print(json.dumps({{'apiVersion': {API_VERSION!r}, 'kind': 'ExecCredential', "
            "'status': {}}))\n",
            "neither a token nor a client certificate",
        ),
        (
            f"print(json.dumps({{'apiVersion': {API_VERSION!r}, 'kind': 'ExecCredential', "
            "'status': {'token': 't', 'expirationTimestamp': 'tomorrow'}}))\n",
            "'tomorrow', which is not an RFC 3339 time",
        ),
        (
            f"print(json.dumps({{'apiVersion': {API_VERSION!r}, 'kind': 'ExecCredential', "
            "'status': {'clientCertificateData': 'x', 'clientKeyData': 'y'}}))\n",
            "a client certificate for a server without TLS",
        ),
    ],
)
def test_a_plugin_that_fails_or_answers_nonsense_is_one_clear_error(
    tmp_path: Path, body: str, message: str
) -> None:
    credentials = ExecPlugin(ExecConfig(API_VERSION, plugin(tmp_path, body)), None)
    with pytest.raises(CredentialError, match="credential plugin") as raised:
        authorization(credentials)
    assert message in str(raised.value)
    assert "secret detail" not in str(raised.value)


def test_a_missing_plugin_is_a_clear_error(tmp_path: Path) -> None:
    credentials = ExecPlugin(ExecConfig(API_VERSION, str(tmp_path / "absent")), None)
    with pytest.raises(CredentialError, match="cannot be started"):
        authorization(credentials)


def test_a_plugin_that_hangs_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    command = plugin(
        tmp_path, f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\ntime.sleep(60)\n"
    )
    credentials = ExecPlugin(ExecConfig(API_VERSION, command), None, timeout=0.5)
    with pytest.raises(CredentialError, match=r"did not answer within 0\.5 s"):
        authorization(credentials)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
