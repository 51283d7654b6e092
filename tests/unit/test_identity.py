"""What ServiceAccounts, the ConfigMap and the container-credentials file resolve to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from irsa_webhook.config import MutationSettings
from irsa_webhook.identity import (
    ConfigMapMappings,
    ContainerCredentialsConfig,
    Mode,
    ServiceAccountEntry,
    SourceError,
    near_miss_annotations,
    parse_config_map,
    parse_container_credentials,
    parse_service_account,
    resolve_identity,
)
from irsa_webhook.reasons import AdmissionWarning, Reason

DEFAULTS = MutationSettings()
FLAGS = MutationSettings(
    token_audience="sts.corp.example", sts_regional_endpoint=True, token_expiration=5400
)
ROLE = "arn:aws:iam::123456789012:role/reader"


def texts(warnings: Iterable[AdmissionWarning]) -> tuple[str, ...]:
    return tuple(warning.message for warning in warnings)


PREFIX = "eks.amazonaws.com"


def sa_annotations(**values: str) -> dict[str, str]:
    """Annotations under the default prefix: role_arn="x" -> eks.amazonaws.com/role-arn: x."""
    return {f"{PREFIX}/{name.replace('_', '-')}": value for name, value in values.items()}


# --- parse_service_account -------------------------------------------------------------------


@pytest.mark.parametrize("given_annotations", [None, {}, {"app.kubernetes.io/name": "web"}])
def test_an_unannotated_service_account_takes_every_default_from_the_flags(
    given_annotations: dict[str, str] | None,
) -> None:
    entry = parse_service_account(given_annotations, FLAGS)

    assert entry == ServiceAccountEntry("", "sts.corp.example", True, 5400)


def test_service_account_annotations_beat_the_flags() -> None:
    entry = parse_service_account(
        sa_annotations(
            role_arn=ROLE,
            audience="aud.example",
            sts_regional_endpoints="false",
            token_expiration="3600",
        ),
        FLAGS,
    )

    assert entry == ServiceAccountEntry(ROLE, "aud.example", False, 3600)


def test_an_empty_audience_annotation_means_no_audience() -> None:
    entry = parse_service_account(sa_annotations(role_arn=ROLE, audience=""), FLAGS)

    assert entry.audience == ""
    assert entry.warnings == ()


def test_an_empty_role_arn_means_not_annotated() -> None:
    entry = parse_service_account(sa_annotations(role_arn=""), DEFAULTS)

    assert entry.role_arn == ""
    assert entry.warnings == ()


@pytest.mark.parametrize(
    ("sts_value", "flag", "expected"),
    [
        ("true", False, True),
        ("false", True, False),
        ("T", False, True),
        ("0", True, False),
        (None, False, False),
        (None, True, True),
    ],
)
def test_regional_sts_is_the_annotation_else_the_flag(
    sts_value: str | None, flag: bool, expected: bool
) -> None:
    values = {"role_arn": ROLE} | (
        {} if sts_value is None else {"sts_regional_endpoints": sts_value}
    )
    entry = parse_service_account(
        sa_annotations(**values), MutationSettings(sts_regional_endpoint=flag)
    )

    assert entry.regional_sts is expected
    assert entry.warnings == ()


@pytest.mark.parametrize(
    ("sts_value", "flag"), [("", True), ("", False), ("yes", True), ("on", False)]
)
def test_an_unparseable_sts_annotation_keeps_the_flag_and_warns(sts_value: str, flag: bool) -> None:
    entry = parse_service_account(
        sa_annotations(role_arn=ROLE, sts_regional_endpoints=sts_value),
        MutationSettings(sts_regional_endpoint=flag),
    )

    assert entry.regional_sts is flag
    assert texts(entry.warnings) == (
        f"{PREFIX}/sts-regional-endpoints {sts_value!r} is not true or false; "
        f"using {str(flag).lower()}",
    )


@pytest.mark.parametrize(
    ("value", "expected", "warning"),
    [
        ("3600", 3600, None),
        ("600", 600, None),
        ("4294967296", 4294967296, None),
        ("599", 600, f"{PREFIX}/token-expiration 599 is below the minimum; using 600 seconds"),
        ("-1", 600, f"{PREFIX}/token-expiration -1 is below the minimum; using 600 seconds"),
        (
            "4294967297",
            4294967296,
            f"{PREFIX}/token-expiration 4294967297 is above the maximum; using 4294967296 seconds",
        ),
        ("1h", 5400, f"{PREFIX}/token-expiration '1h' is not a number of seconds; using 5400"),
        (
            " 3600",
            5400,
            f"{PREFIX}/token-expiration ' 3600' is not a number of seconds; using 5400",
        ),
        (
            "99999999999999999999",
            5400,
            f"{PREFIX}/token-expiration '99999999999999999999' is not a number of seconds; "
            "using 5400",
        ),
    ],
)
def test_service_account_token_expiration_is_parsed_and_clamped(
    value: str, expected: int, warning: str | None
) -> None:
    entry = parse_service_account(sa_annotations(role_arn=ROLE, token_expiration=value), FLAGS)

    assert entry.token_expiration == expected
    assert texts(entry.warnings) == (() if warning is None else (warning,))


@pytest.mark.parametrize(
    "role_arn",
    [
        "arn:aws:iam::123456789012:role/reader",
        "arn:aws-cn:iam::123456789012:role/reader",
        "arn:aws-us-gov:iam::123456789012:role/team/app/reader",
        "arn:aws:iam::123456789012:role/with_all+=,.@-chars",
    ],
)
def test_a_role_arn_in_arn_form_gives_no_warning(role_arn: str) -> None:
    assert parse_service_account(sa_annotations(role_arn=role_arn), DEFAULTS).warnings == ()


@pytest.mark.parametrize(
    "role_arn",
    [
        "reader",
        "arn:aws:iam::12345678901:role/reader",
        "arn:aws:iam::123456789012:user/reader",
        "arn:aws:sts::123456789012:assumed-role/reader/session",
        "arn:aws:iam::123456789012:role/",
        "arn:azure:iam::123456789012:role/reader",
        " arn:aws:iam::123456789012:role/reader",
    ],
)
def test_a_role_arn_not_in_arn_form_is_used_as_given_with_a_warning(role_arn: str) -> None:
    entry = parse_service_account(sa_annotations(role_arn=role_arn), DEFAULTS)

    assert entry.role_arn == role_arn
    assert len(entry.warnings) == 1
    assert "is not an IAM role ARN" in entry.warnings[0].message


def test_the_warning_for_a_long_bad_role_arn_fits_in_120_characters() -> None:
    bad_arn = "arn:aws:iam::12345678901:role/service-role/payments-reader"

    entry = parse_service_account(sa_annotations(role_arn=bad_arn), DEFAULTS)

    assert entry.role_arn == bad_arn
    assert len(entry.warnings[0].message) < 120


COMPOSE = MutationSettings(
    compose_role_arn=True, aws_partition="aws-cn", aws_account_id="210987654321"
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("reader", "arn:aws-cn:iam::210987654321:role/reader"),
        ("team/app/reader", "arn:aws-cn:iam::210987654321:role/team/app/reader"),
        (ROLE, ROLE),
    ],
)
def test_compose_role_arn_builds_an_arn_from_a_bare_name(value: str, expected: str) -> None:
    entry = parse_service_account(sa_annotations(role_arn=value), COMPOSE)

    assert entry.role_arn == expected
    assert entry.warnings == ()


def test_without_compose_role_arn_a_bare_name_is_not_composed() -> None:
    entry = parse_service_account(sa_annotations(role_arn="reader"), DEFAULTS)

    assert entry.role_arn == "reader"


def test_a_custom_prefix_reads_only_its_own_annotations() -> None:
    settings = MutationSettings(annotation_prefix="iam.corp.example")
    entry = parse_service_account(
        {
            "iam.corp.example/role-arn": ROLE,
            "iam.corp.example/token-expiration": "1200",
            f"{PREFIX}/audience": "ignored.example",
        },
        settings,
    )

    assert entry == ServiceAccountEntry(ROLE, "sts.amazonaws.com", False, 1200)


# --- near misses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("eks.amazon.com/role-arn", "role-arn"),
        ("eks.amazonaws.com/rolearn", "role-arn"),
        ("eks.amazonaws.com/role_arn", "role-arn"),
        ("eks.amazonaws.com/roleArn", "role-arn"),
        ("EKS.amazonaws.com/role-arn", "role-arn"),
        ("amazonaws.com/role-arn", "role-arn"),
        ("eks.amazonaws.com/audiance", "audience"),
        ("eks.amazonaws.com/sts-regional-endpoint", "sts-regional-endpoints"),
        ("eks.amazonaws.com/token-expiry", "token-expiration"),
        ("eks.amazonaws.com/tokenExpiration", "token-expiration"),
    ],
)
def test_an_annotation_that_looks_like_ours_is_reported(key: str, meant: str) -> None:
    assert list(texts(near_miss_annotations({key: "x"}, DEFAULTS))) == [
        f"annotation {key!r} is ignored; did you mean {PREFIX}/{meant}?"
    ]


def test_skip_containers_on_a_service_account_is_reported() -> None:
    assert list(texts(near_miss_annotations({f"{PREFIX}/skip-containers": "a"}, DEFAULTS))) == [
        f"{PREFIX}/skip-containers is read from the pod, not the ServiceAccount; "
        "move it to the pod template"
    ]


@pytest.mark.parametrize(
    "key",
    [
        "eks.amazonaws.com/role-arn",
        "eks.amazonaws.com/audience",
        "eks.amazonaws.com/sts-regional-endpoints",
        "eks.amazonaws.com/token-expiration",
        "iam.amazonaws.com/role",
        "iam.amazonaws.com/external-id",
        "vault.hashicorp.com/role",
        "azure.workload.identity/client-id",
        "iam.gke.io/gcp-service-account",
        "kubectl.kubernetes.io/last-applied-configuration",
        "meta.helm.sh/release-name",
        "eks.amazonaws.com/pod-identity",
        "eks.amazonaws.com/role-session-name",
        "role-arn",
    ],
)
def test_our_own_and_other_tools_annotations_are_not_reported(key: str) -> None:
    assert near_miss_annotations({key: "x"}, DEFAULTS) == []


def test_near_misses_follow_the_configured_prefix() -> None:
    settings = MutationSettings(annotation_prefix="iam.corp.example")

    assert near_miss_annotations({"iam.corp.example/role-arn": ROLE}, settings) == []
    assert list(texts(near_miss_annotations({"iam.corp.example/rolearn": ROLE}, settings))) == [
        "annotation 'iam.corp.example/rolearn' is ignored; did you mean iam.corp.example/role-arn?"
    ]


def test_near_misses_reach_the_entry_even_without_a_role() -> None:
    entry = parse_service_account({"eks.amazon.com/role-arn": ROLE}, DEFAULTS)

    assert entry.role_arn == ""
    assert texts(entry.warnings) == (
        f"annotation 'eks.amazon.com/role-arn' is ignored; did you mean {PREFIX}/role-arn?",
    )


# --- parse_config_map ------------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, "", "  \n"])
def test_an_absent_or_blank_config_map_maps_nothing(data: str | None) -> None:
    mappings, problems = parse_config_map(data, DEFAULTS)

    assert len(mappings) == 0
    assert problems == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not json", "is not JSON"),
        ("{", "is not JSON"),
        ("[]", "must be a JSON object"),
        ('"default/sa"', "must be a JSON object"),
        ("5", "must be a JSON object"),
        ("null", "must be a JSON object"),
    ],
)
def test_a_config_map_that_is_not_a_json_object_is_a_source_error(data: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_config_map(data, DEFAULTS)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        (
            "no-slash",
            {"RoleARN": ROLE},
            "ConfigMap key 'no-slash' skipped: use namespace/serviceAccount",
        ),
        ("/sa", {"RoleARN": ROLE}, "ConfigMap key '/sa' skipped: use namespace/serviceAccount"),
        ("ns/", {"RoleARN": ROLE}, "ConfigMap key 'ns/' skipped: use namespace/serviceAccount"),
        ("a/b/c", {"RoleARN": ROLE}, "ConfigMap key 'a/b/c' skipped: use namespace/serviceAccount"),
        ("ns/sa", None, "ConfigMap entry 'ns/sa' skipped: the value must be an object"),
        ("ns/sa", [ROLE], "ConfigMap entry 'ns/sa' skipped: the value must be an object"),
        ("ns/sa", {}, "ConfigMap entry 'ns/sa' skipped: RoleARN must be a non-empty string"),
        (
            "ns/sa",
            {"RoleARN": ""},
            "ConfigMap entry 'ns/sa' skipped: RoleARN must be a non-empty string",
        ),
        (
            "ns/sa",
            {"RoleARN": 7},
            "ConfigMap entry 'ns/sa' skipped: RoleARN must be a non-empty string",
        ),
        (
            "ns/sa",
            {"RoleARN": ROLE, "Audience": 5},
            "ConfigMap entry 'ns/sa' skipped: Audience must be a string",
        ),
        (
            "ns/sa",
            {"RoleARN": ROLE, "UseRegionalSTS": "true"},
            "ConfigMap entry 'ns/sa' skipped: UseRegionalSTS must be true or false",
        ),
        (
            "ns/sa",
            {"RoleARN": ROLE, "TokenExpiration": "3600"},
            "ConfigMap entry 'ns/sa' skipped: TokenExpiration must be whole seconds",
        ),
        (
            "ns/sa",
            {"RoleARN": ROLE, "TokenExpiration": 3600.5},
            "ConfigMap entry 'ns/sa' skipped: TokenExpiration must be whole seconds",
        ),
        (
            "ns/sa",
            {"RoleARN": ROLE, "TokenExpiration": True},
            "ConfigMap entry 'ns/sa' skipped: TokenExpiration must be whole seconds",
        ),
    ],
)
def test_a_malformed_config_map_entry_is_skipped_and_reported(
    key: str, value: Any, problem: str
) -> None:
    data = orjson.dumps({key: value, "good/sa": {"RoleARN": ROLE}}).decode()

    mappings, problems = parse_config_map(data, DEFAULTS)

    assert problems == [problem]
    assert len(mappings) == 1
    assert mappings.lookup("good", "sa") is not None


def test_a_config_map_entry_with_a_huge_expiration_is_skipped_not_fatal() -> None:
    data = f'{{"ns/sa": {{"RoleARN": "{ROLE}", "TokenExpiration": 1{"0" * 30}}}}}'

    mappings, problems = parse_config_map(data, DEFAULTS)

    assert mappings.lookup("ns", "sa") is None
    assert problems == ["ConfigMap entry 'ns/sa' skipped: TokenExpiration must be whole seconds"]


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=4), children, max_size=2)
    ),
    max_leaves=4,
)
ENTRY_KEYS = st.sampled_from(
    ["RoleARN", "roleArn", "Audience", "UseRegionalSTS", "TokenExpiration", "other"]
)
ENTRIES = st.dictionaries(ENTRY_KEYS, JSON, max_size=4) | JSON
CONFIG_KEYS = st.text(alphabet="ab/*?[-", max_size=6)


@given(st.dictionaries(CONFIG_KEYS, ENTRIES, max_size=5))
def test_any_json_object_config_map_parses_without_raising_and_accounts_for_every_key(
    document: dict[str, Any],
) -> None:
    mappings, problems = parse_config_map(orjson.dumps(document).decode(), DEFAULTS)

    # Every key is either mapped or reported (a clamped entry is both).
    assert len(mappings) <= len(document) <= len(mappings) + len(problems)


def test_config_map_entries_default_audience_sts_and_expiration_from_the_flags() -> None:
    mappings, problems = parse_config_map(
        orjson.dumps({"ns/sa": {"RoleARN": ROLE, "TokenExpiration": 0}}).decode(), FLAGS
    )

    entry = mappings.lookup("ns", "sa")
    assert entry is not None
    assert (entry.role_arn, entry.audience, entry.regional_sts, entry.token_expiration) == (
        ROLE,
        "sts.corp.example",
        True,
        5400,
    )
    assert problems == []


def test_config_map_entry_values_beat_the_flags_and_keys_ignore_case() -> None:
    data = orjson.dumps(
        {
            "ns/sa": {
                "rolearn": ROLE,
                "AUDIENCE": "",
                "useRegionalSts": False,
                "tokenexpiration": 900,
            }
        }
    ).decode()

    mappings, _ = parse_config_map(data, FLAGS)

    entry = mappings.lookup("ns", "sa")
    assert entry is not None
    assert (entry.audience, entry.regional_sts, entry.token_expiration) == ("", False, 900)


@pytest.mark.parametrize(
    ("expiration", "clamped", "problem"),
    [
        (
            1,
            600,
            "ConfigMap entry 'ns/sa' TokenExpiration 1 is below the minimum; using 600 seconds",
        ),
        (
            -3600,
            600,
            "ConfigMap entry 'ns/sa' TokenExpiration -3600 is below the minimum; using 600 seconds",
        ),
        (
            2**40,
            4294967296,
            f"ConfigMap entry 'ns/sa' TokenExpiration {2**40} is above the maximum; "
            "using 4294967296 seconds",
        ),
    ],
)
def test_config_map_expirations_are_clamped_with_a_warning(
    expiration: int, clamped: int, problem: str
) -> None:
    data = orjson.dumps({"ns/sa": {"RoleARN": ROLE, "TokenExpiration": expiration}}).decode()

    mappings, problems = parse_config_map(data, DEFAULTS)

    entry = mappings.lookup("ns", "sa")
    assert entry is not None
    assert entry.token_expiration == clamped
    assert problems == [problem]


PATTERNS = {
    "*/sa": {"RoleARN": "star"},
    "team-*/sa": {"RoleARN": "team"},
    "team-r*/sa": {"RoleARN": "team-r"},
    "team-red/sa": {"RoleARN": "exact"},
    "dev-?/sa": {"RoleARN": "one-char"},
    "[xy]z/sa": {"RoleARN": "class"},
    "team-*/other": {"RoleARN": "other-name"},
}


@pytest.mark.parametrize(
    ("namespace", "name", "role"),
    [
        ("team-red", "sa", "exact"),
        ("team-rose", "sa", "team-r"),
        ("team-blue", "sa", "team"),
        ("prod", "sa", "star"),
        ("dev-1", "sa", "one-char"),
        ("dev-10", "sa", "star"),
        ("yz", "sa", "class"),
        ("team-blue", "other", "other-name"),
        ("prod", "other", None),
        ("team-blue", "nobody", None),
    ],
)
def test_config_map_lookup_prefers_exact_then_the_longest_glob_then_star(
    namespace: str, name: str, role: str | None
) -> None:
    mappings, problems = parse_config_map(orjson.dumps(PATTERNS).decode(), DEFAULTS)

    entry = mappings.lookup(namespace, name)
    assert problems == []
    assert (entry.role_arn if entry else None) == role


def test_config_map_exact_lookup_ignores_patterns() -> None:
    mappings, _ = parse_config_map(orjson.dumps(PATTERNS).decode(), DEFAULTS)

    assert mappings.lookup_exact("prod", "sa") is None
    exact = mappings.lookup_exact("team-red", "sa")
    assert exact is not None
    assert exact.role_arn == "exact"


# --- parse_container_credentials -------------------------------------------------------------


@pytest.mark.parametrize("content", [None, "", b"", "  \n", b"\n"])
def test_a_missing_or_empty_identities_file_lists_nobody(content: str | bytes | None) -> None:
    assert parse_container_credentials(content) == ContainerCredentialsConfig()


@pytest.mark.parametrize(
    "content",
    [
        b'{"identities": [{"namespace": "shop", "serviceAccount": "orders"},'
        b' {"namespace": "ops", "serviceAccount": "backup"}]}',
        '{"Identities": [{"Namespace": "shop", "serviceaccount": "orders", "extra": 1},'
        ' {"namespace": "ops", "serviceAccount": "backup"},'
        ' {"namespace": "ops", "serviceAccount": "backup"}], "version": 2}',
    ],
)
def test_the_identities_file_lists_exact_pairs(content: str | bytes) -> None:
    config = parse_container_credentials(content)

    assert config.identities == frozenset({("shop", "orders"), ("ops", "backup")})
    assert ("shop", "orders") in config
    assert ("shop", "backup") not in config
    assert ("*", "orders") not in config


@pytest.mark.parametrize("content", ['{"identities": null}', "{}", '{"identities": []}'])
def test_an_identities_file_without_identities_lists_nobody(content: str) -> None:
    assert parse_container_credentials(content).identities == frozenset()


@pytest.mark.parametrize(
    "content",
    [
        "bad json",
        b"\xff\xfe",
        "[]",
        '{"identities": {"namespace": "a"}}',
        '{"identities": ["shop/orders"]}',
        '{"identities": [{"namespace": "shop"}]}',
        '{"identities": [{"namespace": "shop", "serviceAccount": 5}]}',
    ],
)
def test_an_unreadable_identities_file_is_a_source_error(content: str | bytes) -> None:
    with pytest.raises(SourceError):
        parse_container_credentials(content)


# --- resolve_identity ------------------------------------------------------------------------

CM, _ = parse_config_map(
    orjson.dumps(
        {
            "ns/sa": {"RoleARN": "cm-exact", "UseRegionalSTS": True, "TokenExpiration": 7200},
            "*/sa": {"RoleARN": "cm-star", "TokenExpiration": 9000},
        }
    ).decode(),
    DEFAULTS,
)
A_WARNING = AdmissionWarning(Reason.ROLE_ARN_NOT_AN_ARN, "a warning")
ANNOTATED = ServiceAccountEntry("sa-role", "sa-aud", False, 3600, (A_WARNING,))
UNANNOTATED = ServiceAccountEntry("", "sts.amazonaws.com", True, 1800)
CC = ContainerCredentialsConfig(frozenset({("ns", "sa"), ("other", "sa")}))
NO_CC = ContainerCredentialsConfig()
EMPTY_CM = ConfigMapMappings()


@pytest.mark.parametrize(
    ("namespace", "entry", "config_map", "cc", "expected"),
    [
        pytest.param(
            "ns",
            ANNOTATED,
            CM,
            NO_CC,
            ("sts_web_identity", "sa-role", 3600, False),
            id="sa-beats-cm",
        ),
        pytest.param(
            "ns",
            UNANNOTATED,
            CM,
            NO_CC,
            ("sts_web_identity", "cm-exact", 7200, True),
            id="unannotated-sa-falls-to-cm",
        ),
        pytest.param(
            "ns",
            None,
            CM,
            NO_CC,
            ("sts_web_identity", "cm-exact", 7200, True),
            id="missing-sa-cm-exact",
        ),
        pytest.param(
            "elsewhere",
            None,
            CM,
            NO_CC,
            ("sts_web_identity", "cm-star", 9000, False),
            id="missing-sa-cm-star",
        ),
        pytest.param("ns", UNANNOTATED, EMPTY_CM, NO_CC, None, id="unannotated-nothing"),
        pytest.param("ns", None, EMPTY_CM, NO_CC, None, id="missing-nothing"),
        pytest.param(
            "ns",
            ANNOTATED,
            CM,
            CC,
            ("container_credentials", "", 3600, False),
            id="cc-beats-sa-uses-sa-settings",
        ),
        pytest.param(
            "ns",
            UNANNOTATED,
            CM,
            CC,
            ("container_credentials", "", 1800, True),
            id="cc-uses-unannotated-sa-settings",
        ),
        pytest.param(
            "ns",
            None,
            CM,
            CC,
            ("container_credentials", "", 7200, True),
            id="cc-without-sa-uses-cm-exact",
        ),
        pytest.param(
            "other",
            None,
            CM,
            CC,
            ("container_credentials", "", 86400, False),
            id="cc-without-sa-ignores-cm-star",
        ),
    ],
)
def test_resolve_identity_applies_the_reference_precedence(
    namespace: str,
    entry: ServiceAccountEntry | None,
    config_map: ConfigMapMappings,
    cc: ContainerCredentialsConfig,
    expected: tuple[str, str, int, bool] | None,
) -> None:
    identity = resolve_identity(namespace, "sa", entry, config_map, cc, DEFAULTS)

    if expected is None:
        assert identity is None
        return
    assert identity is not None
    assert (
        identity.mode.value,
        identity.role_arn,
        identity.token_expiration,
        identity.regional_sts,
    ) == expected


def test_container_credentials_use_the_container_credentials_audience() -> None:
    settings = MutationSettings(container_credentials_audience="pods.corp.example")

    identity = resolve_identity("ns", "sa", ANNOTATED, EMPTY_CM, CC, settings)

    assert identity is not None
    assert identity.mode is Mode.CONTAINER_CREDENTIALS
    assert identity.audience == "pods.corp.example"


@pytest.mark.parametrize("cc", [NO_CC, CC], ids=["irsa", "container-credentials"])
def test_service_account_warnings_travel_with_the_identity(cc: ContainerCredentialsConfig) -> None:
    identity = resolve_identity("ns", "sa", ANNOTATED, EMPTY_CM, cc, DEFAULTS)

    assert identity is not None
    assert identity.warnings == (A_WARNING,)
