"""What ``protocol.py`` takes from uvicorn's internals, pinned so that a new uvicorn fails here,
loudly and by name, instead of in production.

``BoundedHttpToolsProtocol`` subclasses uvicorn's private ``HttpToolsProtocol``, repeats its
``data_received`` and hooks the parser callbacks. Neither is a public API: a uvicorn release may
change them in a patch version. So the project pins uvicorn below the next minor version, and this
test fingerprints every uvicorn method the subclass repeats or wraps. When a fingerprint changes,
read uvicorn's new method next to ours in ``protocol.py``, port what changed, then record the new
fingerprint (``fingerprint()`` below prints it) and raise the pin.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from irsa_webhook.protocol import BoundedHttpToolsProtocol

REPO = Path(__file__).resolve().parents[2]

FINGERPRINTS = {
    # repeated in BoundedHttpToolsProtocol.data_received
    "HttpToolsProtocol.data_received": "02c2572f1df55907",
    # wrapped: ours call these and rely on what they set
    "HttpToolsProtocol.on_message_begin": "0efab6f9456c4987",
    "HttpToolsProtocol.on_headers_complete": "7e259152e5aade71",
    "HttpToolsProtocol.on_message_complete": "377f9122ee6f3ab8",
    "HttpToolsProtocol.connection_made": "ba1915817ccf6c1b",
    "HttpToolsProtocol.connection_lost": "21bb5222b35990e7",
    "HttpToolsProtocol._unset_keepalive_if_required": "58f4ffce604d92dd",
    "HttpToolsProtocol.send_400_response": "0b0d3ace8d263788",
    # _close reads response_started/response_complete and sets disconnected/message_event
    "RequestResponseCycle.__init__": "459bebd3022b64c2",
}
"""sha256 (first 16 hex digits) of each method's source, as uvicorn 0.54.0 has it."""


def fingerprint(qualified_name: str) -> str:
    owner, _, method = qualified_name.partition(".")
    target: Any = getattr(getattr(httptools_impl, owner), method)
    source = textwrap.dedent(inspect.getsource(target))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def test_uvicorn_is_pinned_below_the_next_minor_version() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (uvicorn_requirement,) = [d for d in dependencies if d.startswith("uvicorn")]
    upper = re.search(r"<\s*(\d+)\.(\d+)", uvicorn_requirement)
    assert upper is not None, f"{uvicorn_requirement!r} has no upper bound; protocol.py needs one"
    major, minor = (int(part) for part in uvicorn.__version__.split(".")[:2])
    assert (int(upper.group(1)), int(upper.group(2))) == (major, minor + 1), (
        f"{uvicorn_requirement!r}: pin below the minor after the one these fingerprints are of"
    )


def test_the_uvicorn_methods_protocol_py_repeats_or_wraps_are_unchanged() -> None:
    changed = {
        name: fingerprint(name) for name in FINGERPRINTS if fingerprint(name) != FINGERPRINTS[name]
    }
    assert changed == {}, (
        f"uvicorn {uvicorn.__version__} changed {', '.join(sorted(changed))}, which protocol.py "
        "repeats or relies on: port the change into BoundedHttpToolsProtocol, then record the "
        f"new fingerprints {changed}"
    )


def test_the_fingerprints_see_a_change_to_a_method() -> None:
    source = textwrap.dedent(inspect.getsource(HttpToolsProtocol.data_received))
    edited = source.replace("self.parser.feed_data(data)", "self.parser.feed_data(bytes(data))")
    assert edited != source
    assert (
        hashlib.sha256(edited.encode()).hexdigest()[:16]
        != FINGERPRINTS["HttpToolsProtocol.data_received"]
    )


def test_what_the_subclass_reads_from_uvicorn_still_exists() -> None:
    assert issubclass(BoundedHttpToolsProtocol, HttpToolsProtocol)
    assert {408, 431} <= set(httptools_impl.STATUS_LINE)
    for name in ("_should_upgrade", "handle_websocket_upgrade", "_unsupported_upgrade_warning"):
        assert callable(getattr(HttpToolsProtocol, name, None)), name
    for method, attributes in (
        (RequestResponseCycle.__init__, ("response_started", "response_complete", "disconnected")),
        (RequestResponseCycle.__init__, ("message_event",)),
        (HttpToolsProtocol.__init__, ("parser", "pipeline", "cycle", "server_state", "loop")),
        (HttpToolsProtocol.__init__, ("logger",)),
        (HttpToolsProtocol.connection_made, ("transport", "client")),
        (HttpToolsProtocol.on_message_begin, ("url", "headers")),
    ):
        assigned = set(re.findall(r"self\.(\w+)\s*(?::[^=\n]*)?=", inspect.getsource(method)))
        missing = set(attributes) - assigned
        assert not missing, f"{method.__qualname__} no longer sets {sorted(missing)}"
