"""irsa-webhook: a Kubernetes mutating admission webhook that gives pods AWS IAM identities."""

__version__ = "0.1.0"
