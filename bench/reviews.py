"""Realistic AdmissionReviews: a Deployment's pod as the API server sends it (4-10 KB)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

ROLE_PREFIX = "arn:aws:iam::111122223333:role/bench-"
NAMESPACES = 20


def account_key(index: int) -> tuple[str, str]:
    """(namespace, name) of ServiceAccount ``index``: spread over a few namespaces."""
    return f"bench-{index % NAMESPACES}", f"app-{index}"


def service_account(index: int) -> dict[str, Any]:
    namespace, name = account_key(index)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"eks.amazonaws.com/role-arn": f"{ROLE_PREFIX}{index}"},
        },
    }


def _container(name: str, port: int) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    return {
        "name": name,
        "image": f"123456789012.dkr.ecr.us-west-2.amazonaws.com/{name}:v1.42.7",
        "imagePullPolicy": "IfNotPresent",
        "args": ["--port", str(port), "--log-level", "info"],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [
            {"name": "LOG_FORMAT", "value": "json"},
            {"name": "HTTP_PORT", "value": str(port)},
            {"name": "FEATURE_FLAGS", "value": "alpha,beta,gamma"},
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            },
            {
                "name": "POD_IP",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
            },
        ],
        "resources": {
            "limits": {"cpu": "500m", "memory": "256Mi"},
            "requests": {"cpu": "100m", "memory": "128Mi"},
        },
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {**probe["httpGet"], "path": "/readyz"}},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {
                "name": "kube-api-access-x7k2p",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _without_probes(container: dict[str, Any]) -> dict[str, Any]:
    """Init containers may not have probes (unless restartPolicy=Always)."""
    return {k: v for k, v in container.items() if not k.endswith("Probe")}


def pod(namespace: str, account: str) -> dict[str, Any]:
    """A pod of a Deployment as admission sees it: three containers, an init container."""
    labels = {"app.kubernetes.io/name": "checkout", "pod-template-hash": "7d9f8b6c5d"}
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "checkout-7d9f8b6c5d-",
            "namespace": namespace,
            "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "checkout-7d9f8b6c5d",
                    "uid": "5f0c7a4e-2b1d-4c3a-9e8f-1a2b3c4d5e6f",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2024-05-01T10:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:generateName": {},
                            "f:labels": {
                                ".": {},
                                "f:app.kubernetes.io/name": {},
                                "f:pod-template-hash": {},
                            },
                            "f:ownerReferences": {".": {}, 'k:{"uid":"5f0c7a4e"}': {}},
                        },
                        "f:spec": {
                            "f:containers": {
                                f'k:{{"name":"{n}"}}': {".": {}, "f:image": {}, "f:env": {}}
                                for n in ("app", "sidecar", "proxy")
                            },
                            "f:dnsPolicy": {},
                            "f:restartPolicy": {},
                        },
                    },
                }
            ],
        },
        "spec": {
            "serviceAccountName": account,
            "serviceAccount": account,
            "initContainers": [_without_probes(_container("migrate", 8079))],
            "containers": [
                _container("app", 8080),
                _container("sidecar", 8081),
                _container("proxy", 8082),
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": "checkout-config", "defaultMode": 420}},
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                    },
                },
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    }


def review(index: int) -> bytes:
    """The AdmissionReview for a pod of ServiceAccount ``index``."""
    namespace, account = account_key(index)
    body = {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": str(uuid.UUID(int=index + 1)),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "0c9f6d2a-4e55-4b9b-8d84-3f0c0e4c9b11",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            },
            "object": pod(namespace, account),
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }
    return orjson.dumps(body)


def reviews(accounts: int, count: int = 64) -> list[bytes]:
    """``count`` distinct reviews over the first ``accounts`` ServiceAccounts."""
    step = max(1, accounts // count)
    return [review((i * step) % accounts) for i in range(count)]
