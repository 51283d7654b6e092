"""What each entry point imports: ``serve`` starts fast because it loads only what it uses, and
the CLI imports a subcommand's module only when that subcommand runs. Checked in a fresh
interpreter, since this test process has long imported everything."""

from __future__ import annotations

import subprocess
import sys


def modules_after(code: str) -> set[str]:
    """The names in ``sys.modules`` after ``code`` ran in a fresh interpreter (printed on the
    last line, after whatever ``code`` printed)."""
    probe = f"{code}\nimport sys\nprint()\nprint(','.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, check=True, timeout=30
    )
    return set(result.stdout.decode().splitlines()[-1].split(","))


def test_the_cli_help_imports_no_subcommand() -> None:
    loaded = modules_after(
        "from irsa_webhook.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert "irsa_webhook.cli" in loaded
    assert "yaml" not in loaded
    assert not {name for name in loaded if name.startswith("irsa_webhook.commands.")}


def test_mutate_does_not_import_the_server() -> None:
    loaded = modules_after(
        "from irsa_webhook.cli import main\n"
        "try:\n    main(['mutate', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert "irsa_webhook.commands.mutate" in loaded
    assert "irsa_webhook.server" not in loaded
    assert "irsa_webhook.commands.serve" not in loaded


def test_doctor_imports_no_aws_code_before_its_aws_checks_and_serve_imports_no_doctor() -> None:
    loaded = modules_after(
        "from irsa_webhook.cli import main\n"
        "try:\n    main(['doctor', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert "irsa_webhook.commands.doctor" in loaded
    assert not {"boto3", "botocore", "irsa_webhook.doctor.aws_side"} & loaded
    assert "irsa_webhook.doctor.command" not in loaded
    served = modules_after(
        "from irsa_webhook.cli import main\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert not {name for name in served if name.startswith("irsa_webhook.doctor")}


HEAVY_FOR_SERVE = {
    "kubernetes": "its configuration loader was ~10 MB and most of a second (kubeconfig.py)",
    "requests": "came with the kubernetes client",
    "urllib3": "came with the kubernetes client",
    "oauthlib": "came with the kubernetes client",
    "boto3": "the webhook never talks to AWS",
    "botocore": "the webhook never talks to AWS",
    "cryptography": "~8 MB for reading one certificate's expiry and subject (certinfo.py)",
    "yaml": "only a kubeconfig is YAML; it is imported when one is read",
    "jsonpatch": "only mutate applies a patch",
    "ctypes": "only for malloc_trim, imported after the first list (heap.py)",
    "irsa_webhook.reconciler": "only with --reconcile on (off by default)",
    "irsa_webhook.leader": "only with --reconcile on (off by default)",
}


def test_serve_imports_neither_the_kubernetes_client_nor_aws_nor_cryptography() -> None:
    loaded = modules_after("import irsa_webhook.commands.serve, irsa_webhook.server")
    assert "irsa_webhook.server" in loaded
    crept_back = {
        name: why
        for name, why in HEAVY_FOR_SERVE.items()
        if any(module == name or module.startswith(f"{name}.") for module in loaded)
    }
    assert crept_back == {}


def test_the_servers_load_no_websocket_protocol() -> None:
    """uvicorn would import one (~0.6 MB) at start-up for connections the webhook never gets."""
    loaded = modules_after(
        "from irsa_webhook.config import ServerSettings\n"
        "from irsa_webhook.httpserver import uvicorn_config\n"
        "config = uvicorn_config(None, ServerSettings(), 0, None)\n"
        "config.load()\n"
        "assert config.ws_protocol_class is None"
    )
    assert "uvicorn.protocols.http.httptools_impl" in loaded
    assert not {name for name in loaded if name.startswith(("websockets", "wsproto"))}
    assert not {name for name in loaded if name.startswith("uvicorn.protocols.websockets")}
