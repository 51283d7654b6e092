"""python3 -m localnode up|down|status|holder|preflight|images|snapshot ..."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from . import host, images, netns
from .layout import Layout
from .node import HostLock, Node, NodeError, k8s_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localnode", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status"):
        commands.add_parser(name).add_argument("dir", type=Path)
    holder = commands.add_parser("holder", help="internal: keeps the node's namespaces")
    holder.add_argument("dir", type=Path)
    holder.add_argument("lock_fd", type=int)
    commands.add_parser("preflight", help="print why this host cannot run a node; exit 1 if so")
    commands.add_parser("packages", help="apt-get install the node's Debian packages if missing")
    commands.add_parser("images", help="build the node's images if missing; print their tars")
    commands.add_parser("snapshot", help="print the host state the node must leave unchanged")
    wait_free = commands.add_parser("wait-free", help="wait until no node runs on this host")
    wait_free.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            Node(args.dir).up()
        elif args.command == "down":
            Node(args.dir).down()
        elif args.command == "status":
            return 0 if Node(args.dir).status() else 1
        elif args.command == "holder":
            netns.hold(Layout(args.dir.resolve()), args.lock_fd)
        elif args.command == "preflight":
            reason = host.why_no_node()
            if reason:
                print(reason)
                return 1
        elif args.command == "packages":
            host.ensure_packages()
        elif args.command == "images":
            for image in images.all_images(k8s_version()):
                print(f"{image.name} {image.tar}")
        elif args.command == "wait-free":
            HostLock(None, args.seconds).close()
        elif args.command == "snapshot":
            print(json.dumps(asdict(host.snapshot()), indent=1))
    except (NodeError, RuntimeError) as error:
        print(f"[node] ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
