"""Checks that need no API server: the chart as Helm lints and renders it, the schema and the
certificate-source rules users hit at install time, the rendered objects' security and webhook
settings, deploy/ staying in step with the chart, and the Dockerfile and hack/ scripts under their
linters."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "irsa-webhook"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SCRIPTS = sorted((REPO / "hack").glob("*.sh"))
VENV_BIN = Path(sys.executable).parent
RELEASE = NAMESPACE = "irsa-webhook"
SKIP_LABEL = "eks.amazonaws.com/skip-pod-identity-webhook"


@pytest.fixture(scope="module")
def helm() -> str:
    """The Helm the project pins (hack/tools.sh installs it on first use)."""
    tools = subprocess.run(
        [str(REPO / "hack" / "tools.sh")], capture_output=True, text=True, timeout=600, check=True
    )
    return str(Path(tools.stdout.strip().splitlines()[-1]) / "helm")


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, *args], capture_output=True, text=True, timeout=60, check=False, cwd=REPO
    )


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def values_args(values: Path | None) -> list[str]:
    return [] if values is None else ["--values", str(values)]


def of_kind(documents: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def only(documents: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = of_kind(documents, kind)
    return found


VALUES_FILES = [pytest.param(None, id="default")] + [
    pytest.param(path, id=path.name.removesuffix("-values.yaml")) for path in CI_VALUES
]


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_strict_passes(helm: str, values: Path | None) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *values_args(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_template_renders_distinct_complete_objects(helm: str, values: Path | None) -> None:
    documents = render(helm, *values_args(values))
    identities = [
        (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
        for doc in documents
    ]
    assert len(identities) == len(set(identities)), identities
    assert all(doc.get("apiVersion") for doc in documents)
    assert len(of_kind(documents, "MutatingWebhookConfiguration")) == 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("replicas=2", "additional properties 'replicas' not allowed"),
        ("config.tokenAudiance=sts", "additional properties 'tokenAudiance' not allowed"),
        ("mutatingWebhook.objectSelector.labels.a=b", "additional properties 'labels'"),
        ("mutatingWebhook.failurePolicy=Maybe", "/mutatingWebhook/failurePolicy"),
        ("mutatingWebhook.reinvocationPolicy=Always", "/mutatingWebhook/reinvocationPolicy"),
        ("config.logFormat=xml", "/config/logFormat"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ],
)
def test_the_schema_rejects_values_it_does_not_define(
    helm: str, setting: str, message: str
) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", setting)
    assert result.returncode != 0
    assert message in result.stderr


URL_CA = ["mutatingWebhook.url=https://webhook.example.com/mutate", "pki.caBundle=CA"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ["pki.certManager.enabled=true", "pki.existingSecret=serving"],
            "pki.certManager.enabled is true: leave pki.existingSecret",
        ),
        (
            ["pki.certManager.enabled=true", "pki.cert=C", "pki.key=K", "pki.caBundle=CA"],
            "pki.certManager.enabled is true: leave pki.existingSecret, pki.cert and pki.key",
        ),
        (
            ["pki.existingSecret=serving", "pki.cert=C", "pki.key=K", "pki.caBundle=CA"],
            "pki.existingSecret is set: leave pki.cert and pki.key empty",
        ),
        (["pki.cert=C", "pki.caBundle=CA"], "pki.cert and pki.key must be set together"),
        (["pki.cert=C", "pki.key=K"], "set pki.caBundle to the PEM CA certificate"),
        (["pki.existingSecret=serving"], "set pki.caBundle to the PEM CA certificate"),
        (["mutatingWebhook.url=https://webhook.example.com/mutate"], "set pki.caBundle"),
        pytest.param(
            [*URL_CA, "pki.certManager.enabled=true"],
            "pki.certManager.enabled",
            id="url-and-cert-manager",
        ),
        pytest.param(
            [*URL_CA, "pki.existingSecret=serving"],
            "pki.existingSecret",
            id="url-and-existing-secret",
        ),
        pytest.param(
            [*URL_CA, "pki.cert=C", "pki.key=K"],
            "pki.cert",
            id="url-and-cert",
        ),
    ],
)
def test_conflicting_certificate_sources_fail_with_a_message(
    helm: str, settings: list[str], message: str
) -> None:
    args = [arg for setting in settings for arg in ("--set", setting)]
    result = run_helm(helm, "template", RELEASE, str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_deploy_matches_a_fresh_render_of_the_chart() -> None:
    result = subprocess.run(
        [str(REPO / "hack" / "render-deploy.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", "Dockerfile"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=[script.name for script in SCRIPTS])
def test_hack_scripts_pass_shellcheck(script: Path) -> None:
    # From the repository root, where the scripts' "source=hack/lib.sh" directives resolve.
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), "-x", str(script.relative_to(REPO))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_webhook_registration_defaults(helm: str) -> None:
    (webhook,) = only(render(helm), "MutatingWebhookConfiguration")["webhooks"]
    assert webhook["admissionReviewVersions"] == ["v1", "v1beta1"]
    assert webhook["sideEffects"] == "None"
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert webhook["objectSelector"] == {
        "matchExpressions": [{"key": SKIP_LABEL, "operator": "DoesNotExist"}]
    }
    # It answers from memory: a hung webhook must not hold every pod creation for 10 s.
    assert webhook["timeoutSeconds"] == 3
    assert webhook["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", NAMESPACE],
            }
        ]
    }


@pytest.mark.parametrize(
    ("settings", "excluded"),
    [
        pytest.param(["mutatingWebhook.excludeNamespaces=null"], [NAMESPACE], id="kube-system-in"),
        pytest.param(
            ["mutatingWebhook.excludeReleaseNamespace=false"], ["kube-system"], id="release-in"
        ),
        pytest.param(
            [
                "mutatingWebhook.excludeNamespaces=null",
                "mutatingWebhook.excludeReleaseNamespace=false",
            ],
            None,
            id="all-in",
        ),
    ],
)
def test_excluded_namespaces_can_be_opted_back_in(
    helm: str, settings: list[str], excluded: list[str] | None
) -> None:
    args = ["--set", "mutatingWebhook.namespaceSelector.matchLabels.irsa=enabled"]
    documents = render(helm, *args, *[arg for setting in settings for arg in ("--set", setting)])
    (webhook,) = only(documents, "MutatingWebhookConfiguration")["webhooks"]
    expected: dict[str, Any] = {"matchLabels": {"irsa": "enabled"}}
    if excluded is not None:
        expected["matchExpressions"] = [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}
        ]
    assert webhook["namespaceSelector"] == expected


def test_the_skip_label_stays_excluded_next_to_user_selectors(helm: str) -> None:
    documents = render(helm, "--values", str(CHART / "ci" / "webhook-tuning-values.yaml"))
    (webhook,) = only(documents, "MutatingWebhookConfiguration")["webhooks"]
    expressions = webhook["objectSelector"]["matchExpressions"]
    assert {"key": SKIP_LABEL, "operator": "DoesNotExist"} in expressions
    assert {"key": "example.com/no-aws", "operator": "DoesNotExist"} in expressions
    assert webhook["objectSelector"]["matchLabels"] == {"example.com/aws": "true"}
    pod_labels = only(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert SKIP_LABEL in pod_labels


def test_the_deployment_is_hardened(helm: str) -> None:
    documents = render(helm)
    deployment = only(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    pod_context, context = pod_spec["securityContext"], container["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] != 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    probes = {name: container[name]["httpGet"] for name in ("livenessProbe", "readinessProbe")}
    assert probes == {
        "livenessProbe": {"path": "/healthz", "port": "https", "scheme": "HTTPS"},
        "readinessProbe": {"path": "/readyz", "port": "https", "scheme": "HTTPS"},
    }
    assert only(documents, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


SERVICE_ACCOUNT_RULE = {
    "apiGroups": [""],
    "resources": ["serviceaccounts"],
    "verbs": ["get", "list", "watch"],
}
CONFIG_MAP_RULE = {
    "apiGroups": [""],
    "resources": ["configmaps"],
    "resourceNames": ["pod-identity-webhook"],
    "verbs": ["get", "list", "watch"],
}
# The self-managed certificates' objects, each by name; no create (it cannot be limited to one).
SECRET_RULE = {
    "apiGroups": [""],
    "resources": ["secrets"],
    "resourceNames": [f"{RELEASE}-pki"],
    "verbs": ["get", "list", "watch", "update"],
}
WEBHOOK_CONFIGURATION_RULE = {
    "apiGroups": ["admissionregistration.k8s.io"],
    "resources": ["mutatingwebhookconfigurations"],
    "resourceNames": [RELEASE],
    "verbs": ["get", "list", "watch", "patch"],
}
CERT_MANAGER = ["pki.certManager.enabled=true"]


@pytest.mark.parametrize(
    ("settings", "cluster_rules", "namespace_rules"),
    [
        pytest.param(
            [], [SERVICE_ACCOUNT_RULE, WEBHOOK_CONFIGURATION_RULE], [SECRET_RULE], id="default"
        ),
        pytest.param(CERT_MANAGER, [SERVICE_ACCOUNT_RULE], [], id="cert-manager"),
        pytest.param(
            [*CERT_MANAGER, "config.podIdentityWebhookMap.enabled=true"],
            [SERVICE_ACCOUNT_RULE],
            [CONFIG_MAP_RULE],
            id="rendered-map",
        ),
        pytest.param(
            [*CERT_MANAGER, "config.watchConfigMap=true"],
            [SERVICE_ACCOUNT_RULE],
            [CONFIG_MAP_RULE],
            id="map-written-by-others",
        ),
        pytest.param(
            ["config.watchConfigMap=true"],
            [SERVICE_ACCOUNT_RULE, WEBHOOK_CONFIGURATION_RULE],
            [CONFIG_MAP_RULE, SECRET_RULE],
            id="self-managed-and-map",
        ),
    ],
)
def test_the_roles_grant_what_the_enabled_sources_use_and_no_more(
    helm: str,
    settings: list[str],
    cluster_rules: list[dict[str, Any]],
    namespace_rules: list[dict[str, Any]],
) -> None:
    documents = render(helm, *[arg for setting in settings for arg in ("--set", setting)])
    args = only(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    watches = CONFIG_MAP_RULE in namespace_rules
    assert f"--watch-config-map={str(watches).lower()}" in args
    account = only(documents, "ServiceAccount")["metadata"]
    subjects = [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    role = only(documents, "ClusterRole")
    assert role["rules"] == cluster_rules
    binding = only(documents, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == subjects
    roles, bindings = of_kind(documents, "Role"), of_kind(documents, "RoleBinding")
    if not namespace_rules:
        assert roles == bindings == []
        return
    (role,), (binding,) = roles, bindings
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == namespace_rules
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == subjects


RECONCILER_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "resourceNames": [RELEASE],  # the release's fullname: its registration's name
        "verbs": ["get"],
    },
]
NAMESPACES_RULE = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}
ROLL_RULE = {
    "apiGroups": ["apps"],
    "resources": ["deployments", "statefulsets", "daemonsets"],
    "verbs": ["get", "patch"],
}


@pytest.mark.parametrize(
    ("settings", "rules"),
    [
        pytest.param(["reconciler.mode=report"], [*RECONCILER_RULES, NAMESPACES_RULE], id="report"),
        pytest.param(
            ["reconciler.mode=restart"],
            [*RECONCILER_RULES, NAMESPACES_RULE, ROLL_RULE],
            id="restart",
        ),
        pytest.param(
            [
                "reconciler.mode=report",
                "mutatingWebhook.excludeNamespaces=null",
                "mutatingWebhook.excludeReleaseNamespace=false",
            ],
            RECONCILER_RULES,
            id="no-namespace-selector",
        ),
    ],
)
def test_the_reconciler_reads_its_own_registration_and_the_namespaces_only_for_a_selector(
    helm: str, settings: list[str], rules: list[dict[str, Any]]
) -> None:
    documents = render(helm, *[arg for setting in settings for arg in ("--set", setting)])
    configuration = only(documents, "MutatingWebhookConfiguration")["metadata"]["name"]
    roles = {role["metadata"]["name"]: role for role in of_kind(documents, "ClusterRole")}
    assert roles[f"{configuration}-reconciler"]["rules"] == rules
    args = only(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--reconcile-webhook-configuration={configuration}" in args
    assert not [arg for arg in args if arg.startswith("--reconcile") and "off" in arg]


def test_the_reconciler_is_given_no_registration_or_namespaces_while_off(helm: str) -> None:
    documents = render(helm)
    args = only(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [arg for arg in args if arg.startswith("--reconcile")]
    rules = [rule for role in of_kind(documents, "ClusterRole") for rule in role["rules"]]
    assert not [rule for rule in rules if "namespaces" in rule["resources"]]


def _exported_series() -> set[str]:
    """Every series name the webhook's /metrics can carry: each family's samples' names."""
    from irsa_webhook.metrics import Metrics

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def _alerts(helm: str, *settings: str) -> dict[str, dict[str, Any]]:
    flags = [arg for setting in settings for arg in ("--set", setting)]
    rule = only(
        render(helm, "--set", "metrics.prometheusRule.enabled=true", *flags), "PrometheusRule"
    )
    (group,) = rule["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def _vector_selectors(expression: Any) -> list[Any]:
    import promql_parser

    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expression, visit)
    return found


RECONCILER_ALERTS = {"IrsaWebhookPodsMissingInjection", "IrsaWebhookReconcilerScopeUnknown"}


@pytest.mark.parametrize("mode", ["off", "report", "restart"])
def test_every_alert_parses_as_promql_and_selects_series_the_webhook_exports(
    helm: str, mode: str
) -> None:
    import promql_parser

    alerts = _alerts(helm, f"reconciler.mode={mode}")
    exported = _exported_series()
    assert RECONCILER_ALERTS & set(alerts) == (RECONCILER_ALERTS if mode != "off" else set())
    for name, rule in alerts.items():
        expression = promql_parser.parse(rule["expr"])  # raises on what Prometheus would refuse
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        selected = _vector_selectors(expression)
        assert selected, name
        for selector in selected:
            if selector.name == "up" or selector.name.startswith("apiserver_"):
                continue  # Prometheus's and the API server's own (tests/e2e/test_chart.py)
            assert selector.name in exported, f"{name}: {selector.name} is not exported"
            # Each of the webhook's series is this release's: the ServiceMonitor's job.
            assert f'job="{RELEASE}"' in str(selector.matchers), f"{name}: {selector}"


def test_self_managed_certificates_leave_the_ca_out_of_every_render(helm: str) -> None:
    documents = render(helm)
    secret = only(documents, "Secret")
    # Nothing a later render could overwrite: the webhook writes the data and the caBundle.
    assert secret["metadata"]["name"] == f"{RELEASE}-pki"
    assert "data" not in secret
    assert "stringData" not in secret
    (webhook,) = only(documents, "MutatingWebhookConfiguration")["webhooks"]
    assert "caBundle" not in webhook["clientConfig"]
    pod_spec = only(documents, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    service = f"{RELEASE}.{NAMESPACE}.svc"
    assert f"--self-managed-cert-secret={RELEASE}-pki" in container["args"]
    assert f"--self-managed-cert-webhook-configuration={RELEASE}" in container["args"]
    hosts = next(arg for arg in container["args"] if arg.startswith("--self-managed-cert-hosts="))
    assert service in hosts.partition("=")[2].split(",")
    assert not any(arg.startswith("--tls-cert") for arg in container["args"])
    assert "volumes" not in pod_spec
    assert "volumeMounts" not in container


# What a reader of the repository cannot open: the team's notes beside it and its issue tracker.
UNREADABLE_CITATION = re.compile(
    r"\.\./shared|shared/(?:reference|SPEC|STYLE)|\bSPEC\b|\b[Ii]ssues? [0-9]+\b"
    r"|(?:aws-pod-identity-webhook|aws-chain|control-plane|peers)\.md"
)


def test_the_repository_cites_only_what_its_readers_can_open() -> None:
    listed = subprocess.run(
        ["git", "ls-files"], capture_output=True, text=True, timeout=60, check=True, cwd=REPO
    ).stdout.split()
    found = []
    for name in listed:
        path = REPO / name
        # This file names the patterns; the lock file holds hashes.
        if name in ("uv.lock", "tests/unit/test_static_checks.py") or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if UNREADABLE_CITATION.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    # Cite docs/ (docs/reference.md for the reference, the README's differences) instead.
    assert found == []
