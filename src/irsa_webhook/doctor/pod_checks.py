"""The cluster-local checks: the ServiceAccount, the pod's mutation, its token file, and the
credential sources that would win over web identity. Pure functions of objects read before."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from irsa_webhook.config import IRSA_VOLUME_NAME, SKIP_LABEL, MutationSettings
from irsa_webhook.doctor.report import CheckResult, Status, ok, skipped
from irsa_webhook.identity import (
    ROLE_ARN,
    ROLE_ARN_PATTERN,
    Identity,
    Mode,
    ServiceAccountEntry,
)
from irsa_webhook.injection_check import InjectionCheck, InjectionState, selector_matches
from irsa_webhook.mutation import is_windows
from irsa_webhook.registration import WebhookRegistration

NO_CREDENTIALS = (
    "botocore.exceptions.NoCredentialsError: Unable to locate credentials (JS: Missing "
    "credentials in config), or AccessDenied as the node's instance role"
)
INVALID_ARN = (
    "An error occurred (ValidationError) when calling the AssumeRoleWithWebIdentity operation: "
    "Request ARN is invalid"
)
PERMISSION_DENIED = (
    "WebIdentityErr: failed fetching WebIdentity token: ... open "
    "{path}: permission denied (botocore: PermissionError: [Errno 13] Permission denied)"
)


def check_service_account(
    namespace: str,
    name: str,
    service_account: Mapping[str, Any] | None,
    entry: ServiceAccountEntry | None,
    identity: Identity | None,
    settings: MutationSettings,
) -> CheckResult:
    """It exists and names a role that parses as ``arn:<partition>:iam::<account>:role/...``."""
    check = "service-account"
    where = f"ServiceAccount {namespace}/{name}"
    annotation = settings.annotation(ROLE_ARN)
    if service_account is None:
        return CheckResult(
            check,
            Status.FAIL,
            f"{where} not found",
            f'pods naming it are refused: serviceaccount "{name}" not found',
            f"create {where} and annotate it with {annotation}, or fix spec.serviceAccountName",
        )
    warnings = [str(w) for w in entry.warnings] if entry is not None else []
    if identity is None:
        near_misses = "; ".join(warnings) or f"no {annotation} annotation"
        return CheckResult(
            check,
            Status.FAIL,
            f"{where} names no role: {near_misses}",
            NO_CREDENTIALS,
            f"kubectl annotate serviceaccount -n {namespace} {name} "
            f"{annotation}=arn:aws:iam::<account>:role/<role>",
        )
    if identity.mode is Mode.CONTAINER_CREDENTIALS:
        return ok(check, f"{where} uses EKS Pod Identity (container credentials), not IRSA")
    described = f"{where} role {identity.role_arn} (from {identity.source}), audience " + (
        identity.audience
    )
    if not ROLE_ARN_PATTERN.fullmatch(identity.role_arn):
        return CheckResult(
            check,
            Status.FAIL,
            f"{described}: not arn:<partition>:iam::<12 digits>:role/<name>",
            INVALID_ARN,
            f"set {annotation} to the role's full ARN, as `aws iam get-role` prints it",
        )
    if warnings:
        return CheckResult(
            check,
            Status.WARN,
            f"{described}; " + "; ".join(warnings),
            "",
            "remove or rename the annotations the webhook ignores",
        )
    return ok(check, described)


def check_pod_mutated(
    pod: Mapping[str, Any],
    injection: InjectionCheck,
    registration: WebhookRegistration | None,
    namespace_labels: Mapping[str, str],
    annotated_at: datetime | None,
    mutates_now: bool = False,
) -> CheckResult:
    """The pod has what the webhook would inject now; if not, the most likely reason why.

    ``mutates_now``: a dry-run pod of the same ServiceAccount was mutated just now.
    """
    check = "pod-mutated"
    if injection.state is InjectionState.NOT_EXPECTED:
        return skipped(check, "the ServiceAccount names no role, so nothing is expected")
    assert injection.identity is not None
    restart = (
        "delete the pod (or `kubectl rollout restart` its workload) so it is created again "
        "and mutated"
    )
    if injection.state is InjectionState.AS_EXPECTED:
        skipped_text = f"; skipped containers: {', '.join(injection.skipped)}" * bool(
            injection.skipped
        )
        return ok(
            check,
            f"every container has AWS_ROLE_ARN={injection.identity.role_arn}, "
            f"AWS_WEB_IDENTITY_TOKEN_FILE and the token volume{skipped_text}",
        )
    if injection.state is InjectionState.STALE_ROLE:
        return CheckResult(
            check,
            Status.FAIL,
            "; ".join(injection.stale),
            "AccessDenied as the old role, or the old role's permissions instead of the new",
            restart,
        )
    missing = "missing " + "; ".join(injection.missing)
    reason = _why_not_mutated(pod, registration, namespace_labels, annotated_at, mutates_now)
    fix = restart
    if reason.startswith("the pod carries"):
        fix = f"remove the label {SKIP_LABEL} from the pod template, then {restart}"
    elif registration is None:
        fix = "install the webhook (helm install irsa-webhook charts/irsa-webhook), then " + restart
    elif reason.startswith("the webhook's"):
        fix = "make the webhook's selectors match this pod and namespace, then " + restart
    elif "failed open" in reason:
        fix = "make the webhook reachable (see webhook-reachable), then " + restart
    return CheckResult(check, Status.FAIL, f"{missing}: {reason}", NO_CREDENTIALS, fix)


def _why_not_mutated(
    pod: Mapping[str, Any],
    registration: WebhookRegistration | None,
    namespace_labels: Mapping[str, str],
    annotated_at: datetime | None,
    mutates_now: bool,
) -> str:
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if SKIP_LABEL in labels:
        return f"the pod carries the label {SKIP_LABEL}, so the webhook never sees it"
    if registration is None:
        return "no MutatingWebhookConfiguration registers the webhook"
    if not selector_matches(registration.object_selector, labels):
        return (
            f"the webhook's objectSelector {dict(registration.object_selector or {})} "
            "does not match the pod's labels"
        )
    if not selector_matches(registration.namespace_selector, namespace_labels):
        return (
            f"the webhook's namespaceSelector {dict(registration.namespace_selector or {})} "
            "does not match the namespace's labels"
        )
    created = parse_time(metadata.get("creationTimestamp"))
    if created is not None and annotated_at is not None and created < annotated_at:
        return (
            f"the pod was created at {created.isoformat()}, before the ServiceAccount's role "
            f"was set at {annotated_at.isoformat()}"
        )
    if mutates_now:
        # managedFields may not record the annotation (an object created without fields has
        # none, and updates then add none), so the order can be unknown.
        reason = (
            "the webhook mutates a new pod of this ServiceAccount now (dry-run), so this pod was "
            "created before the ServiceAccount's role was set, or while the webhook was "
            "unreachable"
        )
    elif registration.failure_policy == "Ignore":
        reason = (
            "the webhook was not reached when the pod was created and failurePolicy is Ignore "
            "(it failed open)"
        )
    else:
        reason = "the webhook answered without injecting; its log has the decision for this pod"
    if created is not None and created == annotated_at:
        # Both times have whole seconds: the order within that second is unknown.
        reason += "; or the pod was created just before the role was set, in the same second"
    return reason


def parse_time(value: Any) -> datetime | None:
    """A Kubernetes timestamp (RFC 3339, ``Z``) as an aware datetime; None when unusable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def annotation_set_at(service_account: Mapping[str, Any], annotation: str) -> datetime | None:
    """When the annotation was last written, from the server-side managedFields record."""
    latest: datetime | None = None
    for managed in (service_account.get("metadata") or {}).get("managedFields") or []:
        fields = (
            ((managed.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations")
        ) or {}
        if f"f:{annotation}" in fields:
            when = parse_time(managed.get("time"))
            if when is not None and (latest is None or when > latest):
                latest = when
    return latest


# --- token-readable ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TokenFile:
    uid: int
    gid: int
    mode: int
    why: str


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for key in ("initContainers", "containers") for c in spec.get(key) or []]


def _effective(container: Mapping[str, Any], pod_context: Mapping[str, Any], key: str) -> Any:
    value = (container.get("securityContext") or {}).get(key)
    return pod_context.get(key) if value is None else value


def _token_file(spec: Mapping[str, Any], volume: Mapping[str, Any]) -> _TokenFile:
    """Owner and mode as the kubelet (1.19+) writes a projected ServiceAccount token.

    The token is 0600 for a common ``runAsUser`` of every container (owned by it) or when
    ``fsGroup`` is set; ``fsGroup`` then makes it group-owned and adds group read (0640).
    Otherwise it keeps the volume's ``defaultMode`` (0644 unless set), owned by root.
    """
    pod_context = spec.get("securityContext") or {}
    users = {_effective(c, pod_context, "runAsUser") for c in _containers(spec)}
    fs_user = next(iter(users)) if len(users) == 1 and None not in users else None
    fs_group = pod_context.get("fsGroup")
    default_mode = (volume.get("projected") or {}).get("defaultMode")
    mode = 0o644 if default_mode is None else int(default_mode)
    why = f"defaultMode {mode:04o}" if default_mode is not None else "default mode 0644"
    uid, gid = 0, 0
    if fs_user is not None or fs_group is not None:
        mode = 0o600
        why = "the kubelet's 0600 for a token"
    if fs_user is not None:
        uid = int(fs_user)
        why += f", owned by every container's runAsUser {uid}"
    else:
        why += ", owned by root (no runAsUser that every container shares)"
    if fs_group is not None:
        gid, mode = int(fs_group), mode | 0o440
        why += f", group fsGroup {gid} with group read"
    return _TokenFile(uid, gid, mode, why)


def _can_read(
    file: _TokenFile, uid: int | None, gid: int | None, groups: set[int], dac_bypass: bool
) -> bool | None:
    """True/False, or None when it depends on the image's USER or group, unknown here."""
    if uid is not None and uid == file.uid:
        return bool(file.mode & 0o400)
    if uid == 0 and dac_bypass:
        return True
    if file.mode & 0o004:
        return True
    if file.gid in groups or gid == file.gid:
        return bool(file.mode & 0o040)
    if uid is None or (gid is None and file.mode & 0o040):
        return None
    return False


def _dac_bypass(container: Mapping[str, Any]) -> bool:
    capabilities = (container.get("securityContext") or {}).get("capabilities") or {}
    dropped = {str(c).upper().removeprefix("CAP_") for c in capabilities.get("drop") or []}
    added = {str(c).upper().removeprefix("CAP_") for c in capabilities.get("add") or []}
    bypass = {"DAC_OVERRIDE", "DAC_READ_SEARCH"}
    return bool(added & bypass) or not ("ALL" in dropped or bypass <= dropped)


def check_token_readable(
    pod: Mapping[str, Any], injection: InjectionCheck, settings: MutationSettings
) -> CheckResult:
    """The token file's mode and owner let every container that mounts it read it."""
    check = "token-readable"
    spec = pod.get("spec") or {}
    volume = next((v for v in spec.get("volumes") or [] if v.get("name") == IRSA_VOLUME_NAME), None)
    if volume is None:
        return skipped(check, f"the pod has no {IRSA_VOLUME_NAME} volume (see pod-mutated)")
    if is_windows(spec):
        return skipped(check, "a Windows pod: the token file has no POSIX mode")
    file = _token_file(spec, volume)
    path = f"{settings.token_mount_path}/token"
    pod_context = spec.get("securityContext") or {}
    groups = {int(g) for g in pod_context.get("supplementalGroups") or []}
    if pod_context.get("fsGroup") is not None:
        groups.add(int(pod_context["fsGroup"]))
    unreadable: list[str] = []
    unknown: list[str] = []
    for container in _containers(spec):
        if container.get("name") in injection.skipped or not any(
            m.get("name") == IRSA_VOLUME_NAME for m in container.get("volumeMounts") or []
        ):
            continue
        uid = _effective(container, pod_context, "runAsUser")
        gid = _effective(container, pod_context, "runAsGroup")
        who = f"container {container.get('name')!r} uid {_id(uid)} gid {_id(gid)}"
        readable = _can_read(file, uid, gid, groups, _dac_bypass(container))
        if readable is None and _effective(container, pod_context, "runAsNonRoot"):
            # Non-root for sure, and the file is root's without read for others.
            readable = False
        if readable is False:
            unreadable.append(who)
        elif readable is None:
            unknown.append(who)
    evidence = f"{path}: mode {file.mode:04o} owner {file.uid}:{file.gid} ({file.why})"
    fix = (
        "set spec.securityContext.fsGroup (any group, for example 65534) so the kubelet makes "
        "the token group-readable, or give every container the same runAsUser"
    )
    if unreadable:
        return CheckResult(
            check,
            Status.FAIL,
            f"{evidence}; cannot read it: {', '.join(unreadable)}",
            PERMISSION_DENIED.format(path=path),
            fix,
        )
    if unknown:
        return CheckResult(
            check,
            Status.WARN,
            f"{evidence}; readable only if the image's user or group fits: {', '.join(unknown)}",
            PERMISSION_DENIED.format(path=path),
            fix,
        )
    return ok(check, f"{evidence}; every container that mounts it can read it")


def _id(value: Any) -> str:
    return "image default" if value is None else str(value)


# --- credential-shadowing --------------------------------------------------------------------

_STATIC_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_PROFILE_VARS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def check_credential_shadowing(
    pod: Mapping[str, Any], skipped_containers: Sequence[str]
) -> CheckResult:
    """Nothing the SDK reads before web identity: static keys (every SDK reads the environment
    first), a profile (botocore uses an assume-role profile first; Go reads the profile first),
    or a mounted ``.aws`` directory."""
    check = "credential-shadowing"
    spec = pod.get("spec") or {}
    static: list[str] = []
    soft: list[str] = []
    for container in _containers(spec):
        name = container.get("name")
        if name in skipped_containers:
            continue
        env_names = [str(e.get("name")) for e in container.get("env") or []]
        keys = [n for n in env_names if n in _STATIC_KEYS]
        if keys:
            static.append(f"container {name!r} sets {', '.join(keys)}")
        profiles = [n for n in env_names if n in _PROFILE_VARS]
        if profiles:
            soft.append(f"container {name!r} sets {', '.join(profiles)}")
        for source in container.get("envFrom") or []:
            for kind in ("secretRef", "configMapRef"):
                if kind in source:
                    ref = (source.get(kind) or {}).get("name")
                    soft.append(
                        f"container {name!r} takes env from {kind[:-3]} {ref!r}, which may hold "
                        "AWS_ACCESS_KEY_ID (doctor does not read it)"
                    )
        for mount in container.get("volumeMounts") or []:
            path = str(mount.get("mountPath", ""))
            if "/.aws" in path:
                soft.append(f"container {name!r} mounts {path}, an AWS config or credentials file")
    if static:
        return CheckResult(
            check,
            Status.FAIL,
            "; ".join(static + soft),
            "no error: the SDK signs with the static keys (GetCallerIdentity shows their "
            "identity), never with the role",
            "remove AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from the "
            "container so the SDK reaches the web identity",
        )
    if soft:
        return CheckResult(
            check,
            Status.WARN,
            "; ".join(soft),
            "the pod may run as the profile's identity instead of the role, with no error",
            "make sure the profile or file holds no credentials or role_arn, or remove it",
        )
    return ok(check, "no static keys, profile or mounted AWS credentials in any container")
