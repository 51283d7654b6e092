"""A real single-node Kubernetes cluster for the tests and the demo (no Docker, no kind).

``hack/control-plane.sh start DIR --node`` calls ``python3 -m localnode up DIR``. The scripts stay
thin entry points; the cluster's logic lives here, in the standard library only (it runs before
any virtualenv exists). See README.md beside this file for the design and what it needs.
"""
