"""``irsa-webhook mutate`` and ``serve`` wiring: input files, exit codes, one-line messages."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from irsa_webhook.cli import main

ROLE = "arn:aws:iam::123456789012:role/web"
POD = """\
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: blog}
spec:
  serviceAccountName: web
  containers: [{name: web, image: nginx}]
"""


def service_account(annotations: str) -> str:
    return f"""\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  namespace: blog
  annotations: {annotations}
"""


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def env_of(output: str) -> dict[str, str]:
    pod = orjson.loads(output)
    return {item["name"]: item["value"] for item in pod["spec"]["containers"][0].get("env", [])}


def assert_usage_error(
    capsys: pytest.CaptureFixture[str], exit_code: int, message_part: str
) -> None:
    captured = capsys.readouterr()
    assert_one_line_error(captured.out, captured.err, exit_code, message_part)


def assert_one_line_error(out: str, err: str, exit_code: int, message_part: str) -> None:
    assert exit_code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("irsa-webhook: ")
    assert message_part in err


def test_service_accounts_may_come_as_a_list_and_in_several_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = service_account(f"{{eks.amazonaws.com/role-arn: '{ROLE}-other'}}").replace(
        "blog", "shop"
    )
    listed = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [yaml.safe_load(service_account(f"{{eks.amazonaws.com/role-arn: '{ROLE}'}}"))],
        }
    )

    exit_code = main(
        [
            "mutate",
            "--pod",
            write(tmp_path, "pod.yaml", POD),
            "--service-account",
            write(tmp_path, "other.yaml", other),
            "--service-account",
            write(tmp_path, "list.yaml", listed),
        ]
    )

    assert exit_code == 0
    assert env_of(capsys.readouterr().out)["AWS_ROLE_ARN"] == ROLE


def test_a_pod_read_as_json_works_like_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pod_json = orjson.dumps(yaml.safe_load(POD)).decode()
    account = write(
        tmp_path, "sa.yaml", service_account(f"{{eks.amazonaws.com/role-arn: '{ROLE}'}}")
    )

    exit_code = main(
        ["mutate", "--pod", write(tmp_path, "pod.json", pod_json), "--service-account", account]
    )

    assert exit_code == 0
    assert env_of(capsys.readouterr().out)["AWS_ROLE_ARN"] == ROLE


@pytest.mark.parametrize(
    ("option", "file_name", "text", "message_part"),
    [
        ("--config-map", "cm.yaml", "apiVersion: v1\nkind: Pod\n", "must hold one ConfigMap"),
        (
            "--config-map",
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\ndata: {config: 'not json'}\n",
            "data.config is not JSON",
        ),
        (
            "--config-map",
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\ndata: {config: '[1]'}\n",
            "must be a JSON object",
        ),
        ("--service-account", "sa.yaml", POD, "holds something other than ServiceAccount objects"),
        ("--container-credentials-config", "cc.json", '{"identities": [', "is not JSON"),
        ("--container-credentials-config", "cc.json", "[]", "must be {"),
    ],
)
def test_an_unusable_side_input_exits_2_with_one_line(
    option: str,
    file_name: str,
    text: str,
    message_part: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exit_code = main(
        [
            "mutate",
            "--pod",
            write(tmp_path, "pod.yaml", POD),
            option,
            write(tmp_path, file_name, text),
        ]
    )

    assert_usage_error(capsys, exit_code, message_part)


@pytest.mark.parametrize(
    "option", ["--service-account", "--config-map", "--container-credentials-config"]
)
def test_a_missing_side_input_file_exits_2_with_one_line(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(
        ["mutate", "--pod", write(tmp_path, "pod.yaml", POD), option, str(tmp_path / "nope")]
    )

    assert_usage_error(capsys, exit_code, "cannot read")


@pytest.mark.parametrize(
    "annotations",
    [
        f"{{eks.amazonaws.com/role-arn: '{ROLE}', eks.amazonaws.com/token-expiration: 3600}}",
        f"{{eks.amazonaws.com/role-arn: '{ROLE}', eks.amazonaws.com/sts-regional-endpoints: true}}",
        "[eks.amazonaws.com/role-arn]",
    ],
    ids=["unquoted-number", "unquoted-boolean", "annotations-a-list"],
)
def test_a_service_account_with_non_string_annotations_exits_2_with_one_line(
    annotations: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(
        [
            "mutate",
            "--pod",
            write(tmp_path, "pod.yaml", POD),
            "--service-account",
            write(tmp_path, "sa.yaml", service_account(annotations)),
        ]
    )

    assert_usage_error(capsys, exit_code, "sa.yaml")


@pytest.mark.parametrize(
    "text",
    ["- 1\n", "apiVersion: v1\nkind: ConfigMap\ndata: {config: 5}\n"],
    ids=["document-a-list", "config-a-number"],
)
def test_a_config_map_of_the_wrong_shape_exits_2_with_one_line(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(
        [
            "mutate",
            "--pod",
            write(tmp_path, "pod.yaml", POD),
            "--config-map",
            write(tmp_path, "cm.yaml", text),
        ]
    )

    assert_usage_error(capsys, exit_code, "cm.yaml")


def test_compose_role_arn_without_partition_and_account_does_not_inject_a_broken_arn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account = write(tmp_path, "sa.yaml", service_account("{eks.amazonaws.com/role-arn: reader}"))

    exit_code = main(
        [
            "mutate",
            "--pod",
            write(tmp_path, "pod.yaml", POD),
            "--service-account",
            account,
            "--compose-role-arn",
        ]
    )

    captured = capsys.readouterr()
    if exit_code == 0:
        assert "arn::iam:::" not in captured.out
    else:
        assert_one_line_error(captured.out, captured.err, exit_code, "--aws-partition")


def test_a_config_error_from_the_environment_exits_2_naming_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRSA_WEBHOOK_TOKEN_EXPIRATION", "one day")

    exit_code = main(["mutate", "--pod", write(tmp_path, "pod.yaml", POD)])

    assert_usage_error(capsys, exit_code, "IRSA_WEBHOOK_TOKEN_EXPIRATION")


@pytest.mark.parametrize("args", [["--in-cluster"], ["--in-cluster=true"], ["--in-cluster", "1"]])
def test_serve_refuses_the_deprecated_csr_mode_saying_what_to_do(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(["serve", *args])

    assert_usage_error(capsys, exit_code, "--tls-cert and --tls-key")


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("irsa-webhook ")
