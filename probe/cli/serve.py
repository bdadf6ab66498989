"""The ``probe serve`` verb: `add_parser(sub)` registers it on the CLI's subparsers.

``probe serve PATH [--port N] [--host H]`` serves the live view of the runs under PATH
(`probe.serve.make_app_server`) until Ctrl-C, printing its address first.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

__all__ = ["add_parser"]

_DESCRIPTION = (
    "Serve a live local web view of a run store or a folder of them (a sweep's runs/): the "
    "run list with states and loss sparklines, each run's learning curves, per-layer "
    "summaries, CKA heatmaps, embedding with a step slider, cluster geometry, NFM vs AGOP and "
    "the two-point fit, and a compare page. Pages show each newly committed snapshot within "
    "about two seconds while a Recorder writes. Read-only; binds to loopback unless --host says "
    "otherwise."
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on ``sub`` (from ``parser.add_subparsers``); return its parser."""
    p = sub.add_parser(
        "serve",
        help="live web view of runs while they train",
        description=_DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("path", help="a run store, or a folder of them (e.g. artifacts/demo)")
    p.add_argument("--port", type=int, default=8050, help="TCP port (0: any free port)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; anything but loopback exposes the runs to the network",
    )
    p.set_defaults(func=_cmd_serve)
    return p


def _cmd_serve(args: argparse.Namespace) -> int:
    from probe.errors import ConfigError
    from probe.serve import make_app_server

    if not 0 <= args.port <= 65535:
        msg = f"--port must be an int in [0, 65535]; got {args.port}. 0 picks a free port."
        raise ConfigError(msg)
    # One line per request (a page polls every second) would drown the address line.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_app_server(args.path, args.host, args.port)
    print(f"probe serve: {args.path} at http://{args.host}:{server.server_port}/ (Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
