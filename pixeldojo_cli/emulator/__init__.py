"""The embedded PixelDojo emulator: a real HTTP server on loopback.

from pixeldojo_cli.emulator import Emulator

with Emulator(latency=0.5) as emu:
    print(emu.base_url)   # http://127.0.0.1:PORT/api/v1

The server is imported on first use, so that reading the catalogue (shell
completion under --emulator) does not load http.server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixeldojo_cli.emulator.faults import Fault, FaultPlan
    from pixeldojo_cli.emulator.jobs import FAIL_MARKER
    from pixeldojo_cli.emulator.messages import RecordedRequest
    from pixeldojo_cli.emulator.server import Emulator

__all__ = ["FAIL_MARKER", "Emulator", "Fault", "FaultPlan", "RecordedRequest"]

_HOMES = {
    "Fault": "faults",
    "FaultPlan": "faults",
    "FAIL_MARKER": "jobs",
    "Emulator": "server",
    "RecordedRequest": "messages",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        module = importlib.import_module(f"pixeldojo_cli.emulator.{_HOMES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
