"""Flags: reference names and defaults, ``IRSA_WEBHOOK_*`` environment variables, validation."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import pytest

from irsa_webhook import flags
from irsa_webhook.cli import parse_arguments
from irsa_webhook.config import ConfigError, MutationSettings


def mutate_arguments(*args: str) -> argparse.Namespace:
    return parse_arguments(["mutate", "--pod", "pod.yaml", *args])[0]


def serve_arguments(*args: str) -> argparse.Namespace:
    return parse_arguments(["serve", *args])[0]


def test_without_flags_or_environment_the_reference_defaults_apply() -> None:
    assert flags.mutation_settings(mutate_arguments(), {}) == MutationSettings()


def test_the_environment_variable_sets_a_flag() -> None:
    settings = flags.mutation_settings(
        mutate_arguments(), {"IRSA_WEBHOOK_TOKEN_AUDIENCE": "sts.corp.example"}
    )

    assert settings.token_audience == "sts.corp.example"


def test_the_command_line_wins_over_the_environment() -> None:
    settings = flags.mutation_settings(
        mutate_arguments("--token-audience=from-flag"),
        {"IRSA_WEBHOOK_TOKEN_AUDIENCE": "from-env"},
    )

    assert settings.token_audience == "from-flag"


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        (
            "IRSA_WEBHOOK_ANNOTATION_PREFIX",
            "iam.corp.example",
            "annotation_prefix",
            "iam.corp.example",
        ),
        ("IRSA_WEBHOOK_TOKEN_MOUNT_PATH", "/aws", "token_mount_path", "/aws"),
        ("IRSA_WEBHOOK_TOKEN_EXPIRATION", "+3600", "token_expiration", 3600),
        ("IRSA_WEBHOOK_AWS_DEFAULT_REGION", "eu-west-1", "aws_default_region", "eu-west-1"),
        ("IRSA_WEBHOOK_STS_REGIONAL_ENDPOINT", "true", "sts_regional_endpoint", True),
        ("IRSA_WEBHOOK_STS_REGIONAL_ENDPOINT", "F", "sts_regional_endpoint", False),
        (
            "IRSA_WEBHOOK_CONTAINER_CREDENTIALS_FULL_URI",
            "http://127.0.0.1/creds",
            "container_credentials_full_uri",
            "http://127.0.0.1/creds",
        ),
        (
            "IRSA_WEBHOOK_CONTAINER_CREDENTIALS_TOKEN_VOLUME_NAME",
            "pod-token",
            "container_credentials_token_volume_name",
            "pod-token",
        ),
    ],
)
def test_each_mutation_flag_has_its_environment_variable(
    variable: str, value: str, field: str, expected: Any
) -> None:
    settings = flags.mutation_settings(mutate_arguments(), {variable: value})

    assert getattr(settings, field) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IRSA_WEBHOOK_TOKEN_EXPIRATION", "1h"),
        ("IRSA_WEBHOOK_TOKEN_EXPIRATION", ""),
        ("IRSA_WEBHOOK_STS_REGIONAL_ENDPOINT", "yes"),
        ("IRSA_WEBHOOK_COMPOSE_ROLE_ARN", "enabled"),
    ],
)
def test_a_bad_environment_value_is_a_config_error_naming_the_variable(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        flags.mutation_settings(mutate_arguments(), {variable: value})


def test_a_bad_environment_value_is_ignored_when_the_command_line_sets_the_flag() -> None:
    settings = flags.mutation_settings(
        mutate_arguments("--token-expiration=3600"), {"IRSA_WEBHOOK_TOKEN_EXPIRATION": "1h"}
    )

    assert settings.token_expiration == 3600


@pytest.mark.parametrize(
    ("args", "environ", "expected", "logged"),
    [
        (
            ["--token-expiration=100"],
            {},
            600,
            "--token-expiration 100 is below the minimum; using 600 seconds",
        ),
        (
            [],
            {"IRSA_WEBHOOK_TOKEN_EXPIRATION": "0"},
            600,
            "--token-expiration 0 is below the minimum",
        ),
        (
            ["--token-expiration=5000000000"],
            {},
            4294967296,
            "--token-expiration 5000000000 is above the maximum; using 4294967296 seconds",
        ),
        (["--token-expiration=600"], {}, 600, None),
    ],
)
def test_the_token_expiration_flag_is_clamped_with_a_logged_warning(
    args: list[str],
    environ: dict[str, str],
    expected: int,
    logged: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="irsa_webhook.flags"):
        settings = flags.mutation_settings(mutate_arguments(*args), environ)

    assert settings.token_expiration == expected
    messages = [record.getMessage() for record in caplog.records]
    if logged is None:
        assert messages == []
    else:
        assert len(messages) == 1
        assert messages[0].startswith(logged)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sts-regional-endpoint"], True),
        (["--sts-regional-endpoint=true"], True),
        (["--sts-regional-endpoint", "1"], True),
        (["--sts-regional-endpoint=false"], False),
        (["--sts-regional-endpoint=False"], False),
        ([], False),
    ],
)
def test_boolean_flags_take_go_style_forms(args: list[str], expected: bool) -> None:
    settings = flags.mutation_settings(mutate_arguments(*args), {})

    assert settings.sts_regional_endpoint is expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sts-regional-endpoint=yes"],
            "argument --sts-regional-endpoint: 'yes' is not a boolean",
        ),
        (["--token-expiration=1d"], "argument --token-expiration: '1d' is not a whole number"),
        (["--token-expiration", " 60"], "argument --token-expiration: ' 60' is not a whole number"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_a_bad_flag_value_is_a_usage_error_saying_what_is_wrong(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        mutate_arguments(*args)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"IRSA_WEBHOOK_TOKEN_MOUNT_PATH": "relative/path"}, "--token-mount-path"),
        ({"IRSA_WEBHOOK_ANNOTATION_PREFIX": "eks.amazonaws.com/"}, "--annotation-prefix"),
        ({"IRSA_WEBHOOK_AWS_ACCOUNT_ID": "12345"}, "--aws-account-id"),
        (
            {"IRSA_WEBHOOK_COMPOSE_ROLE_ARN": "true", "IRSA_WEBHOOK_AWS_PARTITION": "aws"},
            "--aws-partition and --aws-account-id go together",
        ),
    ],
)
def test_invalid_settings_are_config_errors_naming_the_flag(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        flags.mutation_settings(mutate_arguments(), environ)


def test_server_flags_read_durations_and_the_mutation_flags_from_the_environment() -> None:
    settings = flags.server_settings(
        serve_arguments("--port=8443"),
        {
            "IRSA_WEBHOOK_PORT": "9443",
            "IRSA_WEBHOOK_SERVICE_ACCOUNT_LOOKUP_GRACE_PERIOD": "250ms",
            "IRSA_WEBHOOK_WATCH_CONFIG_MAP": "true",
            "IRSA_WEBHOOK_TOKEN_AUDIENCE": "sts.corp.example",
        },
    )

    assert settings.port == 8443
    assert settings.service_account_lookup_grace_period == pytest.approx(0.25)
    assert settings.watch_config_map is True
    assert settings.mutation.token_audience == "sts.corp.example"


def test_a_bad_server_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^IRSA_WEBHOOK_SERVICE_ACCOUNT_LOOKUP_GRACE_PERIOD: "):
        flags.server_settings(
            serve_arguments(), {"IRSA_WEBHOOK_SERVICE_ACCOUNT_LOOKUP_GRACE_PERIOD": "1"}
        )


def test_serve_help_names_every_flag_with_its_environment_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        serve_arguments("--help")
    help_text = capsys.readouterr().out

    for flag in flags.MUTATION_FLAGS + flags.SERVER_FLAGS:
        variable = "IRSA_WEBHOOK_" + flag.name.removeprefix("--").replace("-", "_").upper()
        assert flag.name in help_text
        assert variable in help_text


SELF_MANAGED = (
    "--self-managed-cert-secret=webhook-pki",
    "--self-managed-cert-webhook-configuration=webhook",
    "--self-managed-cert-hosts=webhook.irsa.svc, 127.0.0.1",
)


def test_self_managed_certificates_take_their_names_hosts_and_lifetimes() -> None:
    settings = flags.server_settings(
        serve_arguments(*SELF_MANAGED, "--self-managed-cert-lifetime=720h"), {}
    )
    assert settings.self_managed_cert_secret == "webhook-pki"
    assert settings.self_managed_cert_webhook_configuration == "webhook"
    assert settings.self_managed_cert_hosts == ("webhook.irsa.svc", "127.0.0.1")
    assert settings.self_managed_cert_lifetime == 720 * 3600
    assert settings.self_managed_ca_lifetime == 10 * 365 * 86400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            SELF_MANAGED[:1], "needs --self-managed-cert-webhook-configuration", id="alone"
        ),
        pytest.param(SELF_MANAGED[:2], "and --self-managed-cert-hosts", id="no-hosts"),
        pytest.param(SELF_MANAGED[1:], "need --self-managed-cert-secret", id="no-secret"),
        pytest.param(
            (*SELF_MANAGED[:2], "--self-managed-cert-hosts=webhook.irsa.svc,bad host"),
            "'bad host' is neither an IP address nor a DNS name",
            id="bad-host",
        ),
        pytest.param(
            (*SELF_MANAGED[:2], "--self-managed-cert-hosts=webhook..svc"),
            "neither an IP address nor a DNS name",
            id="empty-label",
        ),
        pytest.param(
            (*SELF_MANAGED, "--self-managed-ca-lifetime=0s"),
            "--self-managed-ca-lifetime must be at least 1s",
            id="zero-lifetime",
        ),
    ],
)
def test_incomplete_self_managed_settings_are_config_errors(
    args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        flags.server_settings(serve_arguments(*args), {})
