"""What a pod's ServiceAccount resolves to: a role and token settings, or nothing.

Three sources can name an identity: ServiceAccount annotations, the ``pod-identity-webhook``
ConfigMap, and the container-credentials (EKS Pod Identity) file. Each is parsed once, when it
changes, into small frozen records; ``resolve_identity`` then applies the precedence rules per pod.
Parsing never raises on bad user data: it keeps what is usable and reports the rest as warnings.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from irsa_webhook.config import (
    DEFAULT_TOKEN_EXPIRATION,
    MAX_TOKEN_EXPIRATION,
    MIN_TOKEN_EXPIRATION,
    MutationSettings,
)
from irsa_webhook.parsing import parse_bool, parse_int64
from irsa_webhook.reasons import AdmissionWarning, Reason

ROLE_ARN_PATTERN = re.compile(r"arn:aws[a-z0-9-]*:iam::\d{12}:role/[A-Za-z0-9_\-/.@+=,]+")

ROLE_ARN = "role-arn"
AUDIENCE = "audience"
STS_REGIONAL_ENDPOINTS = "sts-regional-endpoints"
TOKEN_EXPIRATION = "token-expiration"
SKIP_CONTAINERS = "skip-containers"
_SERVICE_ACCOUNT_KEYS = (ROLE_ARN, AUDIENCE, STS_REGIONAL_ENDPOINTS, TOKEN_EXPIRATION)


class Mode(Enum):
    """How credentials reach the pod; the values are the reference's metric labels."""

    STS_WEB_IDENTITY = "sts_web_identity"
    CONTAINER_CREDENTIALS = "container_credentials"


def clamp_token_expiration(seconds: int, source: str) -> tuple[int, AdmissionWarning | None]:
    """Clamp to the API server's valid range, saying so when the value changed."""
    if seconds < MIN_TOKEN_EXPIRATION:
        return MIN_TOKEN_EXPIRATION, AdmissionWarning(
            Reason.TOKEN_EXPIRATION_BELOW_MINIMUM,
            f"{source} {seconds} is below the minimum; using {MIN_TOKEN_EXPIRATION} seconds",
        )
    if seconds > MAX_TOKEN_EXPIRATION:
        return MAX_TOKEN_EXPIRATION, AdmissionWarning(
            Reason.TOKEN_EXPIRATION_ABOVE_MAXIMUM,
            f"{source} {seconds} is above the maximum; using {MAX_TOKEN_EXPIRATION} seconds",
        )
    return seconds, None


@dataclass(frozen=True, slots=True)
class ServiceAccountEntry:
    """A ServiceAccount as the cache keeps it: its parsed annotations, defaults applied."""

    role_arn: str
    audience: str
    regional_sts: bool
    token_expiration: int
    warnings: tuple[AdmissionWarning, ...] = ()
    """Problems in the annotations, returned as admission warnings for pods that use it."""


def parse_service_account(
    annotations: Mapping[str, str] | None, settings: MutationSettings
) -> ServiceAccountEntry:
    """Turn a ServiceAccount's annotations into an entry (precedence: annotation > flag)."""
    annotations = annotations or {}
    warnings: list[AdmissionWarning] = []
    prefix = settings.annotation_prefix

    role_arn = annotations.get(settings.annotation(ROLE_ARN), "")
    if role_arn and settings.compose_role_arn and "arn:" not in role_arn:
        role_arn = f"arn:{settings.aws_partition}:iam::{settings.aws_account_id}:role/{role_arn}"
    if role_arn and not ROLE_ARN_PATTERN.fullmatch(role_arn):
        warnings.append(
            AdmissionWarning(
                Reason.ROLE_ARN_NOT_AN_ARN,
                f"{prefix}/{ROLE_ARN} {_short(role_arn, 40)} is not an IAM role ARN; used as given",
            )
        )

    audience = annotations.get(settings.annotation(AUDIENCE), settings.token_audience)

    regional_sts = settings.sts_regional_endpoint
    raw_sts = annotations.get(settings.annotation(STS_REGIONAL_ENDPOINTS))
    if raw_sts is not None:
        try:
            regional_sts = parse_bool(raw_sts)
        except ValueError:
            warnings.append(
                AdmissionWarning(
                    Reason.STS_REGIONAL_ENDPOINTS_NOT_A_BOOLEAN,
                    f"{prefix}/{STS_REGIONAL_ENDPOINTS} {_short(raw_sts)} is not true or false; "
                    f"using {str(regional_sts).lower()}",
                )
            )

    token_expiration = settings.token_expiration
    raw_expiration = annotations.get(settings.annotation(TOKEN_EXPIRATION))
    if raw_expiration is not None:
        try:
            token_expiration, clamped = clamp_token_expiration(
                parse_int64(raw_expiration), f"{prefix}/{TOKEN_EXPIRATION}"
            )
        except ValueError:
            warnings.append(
                AdmissionWarning(
                    Reason.TOKEN_EXPIRATION_NOT_A_NUMBER,
                    f"{prefix}/{TOKEN_EXPIRATION} {_short(raw_expiration)} is not a number of "
                    f"seconds; using {token_expiration}",
                )
            )
        else:
            if clamped:
                warnings.append(clamped)

    warnings.extend(near_miss_annotations(annotations, settings))
    if not role_arn and not warnings and audience == settings.token_audience:
        # Most ServiceAccounts in a cluster are unannotated; share one entry for all of them.
        return _unannotated(settings, regional_sts, token_expiration)
    return ServiceAccountEntry(
        role_arn=role_arn,
        audience=audience,
        regional_sts=regional_sts,
        token_expiration=token_expiration,
        warnings=tuple(warnings),
    )


_UNANNOTATED: dict[tuple[str, bool, int], ServiceAccountEntry] = {}


def _unannotated(
    settings: MutationSettings, regional_sts: bool, token_expiration: int
) -> ServiceAccountEntry:
    key = (settings.token_audience, regional_sts, token_expiration)
    entry = _UNANNOTATED.get(key)
    if entry is None:
        entry = ServiceAccountEntry("", settings.token_audience, regional_sts, token_expiration)
        _UNANNOTATED[key] = entry
    return entry


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_KNOWN_NAMES = {_normalise(name): name for name in _SERVICE_ACCOUNT_KEYS}


def near_miss_annotations(
    annotations: Mapping[str, str], settings: MutationSettings
) -> list[AdmissionWarning]:
    """Annotations that look like ours but are not, such as ``eks.amazon.com/role-arn``."""
    found: list[AdmissionWarning] = []
    prefix = settings.annotation_prefix
    for key in annotations:
        key_prefix, slash, name = key.partition("/")
        if not slash:
            continue
        if key_prefix == prefix and name == SKIP_CONTAINERS:
            found.append(
                AdmissionWarning(
                    Reason.MISPLACED_ANNOTATION,
                    f"{key} is read from the pod, not the ServiceAccount; "
                    "move it to the pod template",
                )
            )
            continue
        intended = _KNOWN_NAMES.get(_normalise(name))
        if intended is None and key_prefix == prefix:
            close = difflib.get_close_matches(name, _SERVICE_ACCOUNT_KEYS, n=1, cutoff=0.75)
            intended = close[0] if close else None
        if intended is None:
            continue
        similar_prefix = key_prefix == prefix or (
            difflib.SequenceMatcher(None, key_prefix.lower(), prefix.lower()).ratio() >= 0.75
        )
        if similar_prefix and key != f"{prefix}/{intended}":
            found.append(
                AdmissionWarning(
                    Reason.NEAR_MISS_ANNOTATION,
                    f"annotation {_short(key)} is ignored; did you mean {prefix}/{intended}?",
                )
            )
    return found


def _short(value: str, limit: int = 48) -> str:
    """Quote a user value for a one-line warning, cut so the line stays readable."""
    text = value if len(value) <= limit else value[: limit - 3] + "..."
    return repr(text)


@dataclass(frozen=True, slots=True)
class ConfigMapEntry:
    """One ``"namespace/serviceAccount"`` entry of the ConfigMap, defaults applied."""

    role_arn: str
    audience: str
    regional_sts: bool
    token_expiration: int


@dataclass(frozen=True, slots=True)
class ConfigMapMappings:
    """The parsed ConfigMap, indexed for lookup: exact keys, namespace globs, and ``*``."""

    exact: Mapping[tuple[str, str], ConfigMapEntry] = field(default_factory=dict)
    patterns: tuple[tuple[str, str, ConfigMapEntry], ...] = ()
    """(namespace glob, name, entry), most specific (longest) glob first; ``*`` comes last."""

    def lookup(self, namespace: str, name: str) -> ConfigMapEntry | None:
        """Exact ``ns/name`` wins over a namespace glob; the longest matching glob wins."""
        entry = self.exact.get((namespace, name))
        if entry is not None:
            return entry
        for pattern, pattern_name, candidate in self.patterns:
            if pattern_name == name and fnmatch.fnmatchcase(namespace, pattern):
                return candidate
        return None

    def lookup_exact(self, namespace: str, name: str) -> ConfigMapEntry | None:
        return self.exact.get((namespace, name))

    def __len__(self) -> int:
        return len(self.exact) + len(self.patterns)


EMPTY_CONFIG_MAP = ConfigMapMappings()


class SourceError(ValueError):
    """A whole ConfigMap or container-credentials document is unreadable; the old one stays."""


def _get_ci(obj: Mapping[str, Any], key: str) -> Any:
    """Case-insensitive key lookup, as Go's JSON decoder matches struct fields."""
    if key in obj:
        return obj[key]
    lowered = key.lower()
    for candidate, value in obj.items():
        if candidate.lower() == lowered:
            return value
    return None


def parse_config_map(
    data: str | None, settings: MutationSettings
) -> tuple[ConfigMapMappings, list[str]]:
    """Parse ``data.config``; malformed entries are skipped and reported, never fatal.

    Differences from the reference (difference 6 in the README): audience and regional STS
    default to the flags, expirations are clamped, and namespace globs such as ``team-*`` work.
    """
    if data is None or (isinstance(data, str) and not data.strip()):
        return EMPTY_CONFIG_MAP, []
    if not isinstance(data, str):
        raise SourceError("ConfigMap data.config must be a string of JSON")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"ConfigMap data.config is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SourceError("ConfigMap data.config must be a JSON object of namespace/name keys")
    problems: list[str] = []
    exact: dict[tuple[str, str], ConfigMapEntry] = {}
    patterns: list[tuple[str, str, ConfigMapEntry]] = []
    for key, value in document.items():
        namespace, slash, name = key.partition("/")
        if not slash or not namespace or not name or "/" in name:
            problems.append(f"ConfigMap key {key!r} skipped: use namespace/serviceAccount")
            continue
        if not isinstance(value, dict):
            problems.append(f"ConfigMap entry {key!r} skipped: the value must be an object")
            continue
        entry, problem = _config_map_entry(key, value, settings)
        if entry is None:
            problems.append(problem or f"ConfigMap entry {key!r} skipped")
            continue
        if problem:
            problems.append(problem)
        if any(char in namespace for char in "*?["):
            patterns.append((namespace, name, entry))
        else:
            exact[(namespace, name)] = entry
    patterns.sort(key=lambda item: (item[0] == "*", -len(item[0].replace("*", ""))))
    return ConfigMapMappings(exact=exact, patterns=tuple(patterns)), problems


def _config_map_entry(
    key: str, value: Mapping[str, Any], settings: MutationSettings
) -> tuple[ConfigMapEntry | None, str | None]:
    role_arn = _get_ci(value, "RoleARN")
    if not isinstance(role_arn, str) or not role_arn:
        return None, f"ConfigMap entry {key!r} skipped: RoleARN must be a non-empty string"
    audience = _get_ci(value, "Audience")
    if audience is None:
        audience = settings.token_audience
    if not isinstance(audience, str):
        return None, f"ConfigMap entry {key!r} skipped: Audience must be a string"
    regional_sts = _get_ci(value, "UseRegionalSTS")
    if regional_sts is None:
        regional_sts = settings.sts_regional_endpoint
    if not isinstance(regional_sts, bool):
        return None, f"ConfigMap entry {key!r} skipped: UseRegionalSTS must be true or false"
    expiration = _get_ci(value, "TokenExpiration")
    problem = None
    if expiration is None or expiration == 0:
        expiration = settings.token_expiration
    elif isinstance(expiration, bool) or not isinstance(expiration, int):
        return None, f"ConfigMap entry {key!r} skipped: TokenExpiration must be whole seconds"
    else:
        expiration, clamped = clamp_token_expiration(
            expiration, f"ConfigMap entry {key!r} TokenExpiration"
        )
        # Logged when the ConfigMap is read, not returned to pods: the text is enough there.
        problem = clamped.message if clamped else None
    return ConfigMapEntry(role_arn, audience, regional_sts, expiration), problem


@dataclass(frozen=True, slots=True)
class ContainerCredentialsConfig:
    """The (namespace, serviceAccount) pairs that use EKS Pod Identity instead of IRSA."""

    identities: frozenset[tuple[str, str]] = frozenset()

    def __contains__(self, key: object) -> bool:
        return key in self.identities


EMPTY_CONTAINER_CREDENTIALS = ContainerCredentialsConfig()


def parse_container_credentials(content: bytes | str | None) -> ContainerCredentialsConfig:
    """Parse the container-credentials file; missing or empty means no pod uses it."""
    if content is None or not content.strip():
        return EMPTY_CONTAINER_CREDENTIALS
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"container-credentials file is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SourceError('container-credentials file must be {"identities": [...]}')
    identities = _get_ci(document, "identities") or []
    if not isinstance(identities, list):
        raise SourceError("container-credentials identities must be a list")
    pairs: set[tuple[str, str]] = set()
    for item in identities:
        if not isinstance(item, dict):
            raise SourceError("each container-credentials identity must be an object")
        namespace = _get_ci(item, "namespace")
        name = _get_ci(item, "serviceAccount")
        if not isinstance(namespace, str) or not isinstance(name, str):
            raise SourceError(
                "each container-credentials identity needs string namespace and serviceAccount"
            )
        pairs.add((namespace, name))
    return ContainerCredentialsConfig(frozenset(pairs))


@dataclass(frozen=True, slots=True)
class Identity:
    """What a pod gets: the mode, the role (IRSA only) and the token settings."""

    mode: Mode
    role_arn: str
    audience: str
    regional_sts: bool
    token_expiration: int
    source: str
    """Where it came from, for the decision log: service-account, config-map, ..."""
    warnings: tuple[AdmissionWarning, ...] = ()


def resolve_identity(
    namespace: str,
    service_account: str,
    entry: ServiceAccountEntry | None,
    config_map: ConfigMapMappings,
    container_credentials: ContainerCredentialsConfig,
    settings: MutationSettings,
) -> Identity | None:
    """Pick the identity for a pod's ServiceAccount, or None to leave the pod alone.

    Precedence, as the reference: a container-credentials listing wins over everything (its
    token settings come from the ServiceAccount entry, else the exact ConfigMap entry, else
    defaults). Otherwise an annotated ServiceAccount wins over the ConfigMap's exact key, which
    wins over its namespace patterns. The pod's own ``token-expiration`` annotation is applied
    later, by the mutation, because it belongs to the pod.
    """
    warnings = entry.warnings if entry is not None else ()
    if (namespace, service_account) in container_credentials:
        if entry is not None:
            regional_sts, expiration = entry.regional_sts, entry.token_expiration
        elif (exact := config_map.lookup_exact(namespace, service_account)) is not None:
            regional_sts, expiration = exact.regional_sts, exact.token_expiration
        else:
            regional_sts, expiration = False, DEFAULT_TOKEN_EXPIRATION
        return Identity(
            mode=Mode.CONTAINER_CREDENTIALS,
            role_arn="",
            audience=settings.container_credentials_audience,
            regional_sts=regional_sts,
            token_expiration=expiration,
            source="container-credentials",
            warnings=warnings,
        )
    if entry is not None and entry.role_arn:
        return Identity(
            mode=Mode.STS_WEB_IDENTITY,
            role_arn=entry.role_arn,
            audience=entry.audience,
            regional_sts=entry.regional_sts,
            token_expiration=entry.token_expiration,
            source="service-account",
            warnings=warnings,
        )
    mapped = config_map.lookup(namespace, service_account)
    if mapped is not None:
        return Identity(
            mode=Mode.STS_WEB_IDENTITY,
            role_arn=mapped.role_arn,
            audience=mapped.audience,
            regional_sts=mapped.regional_sts,
            token_expiration=mapped.token_expiration,
            source="config-map",
            warnings=warnings,
        )
    return None
