"""The embedded PixelDojo emulator: a real HTTP server on loopback.

from pixeldojo_cli.emulator import Emulator

with Emulator(latency=0.5) as emu:
    print(emu.base_url)   # http://127.0.0.1:PORT/api/v1
"""

from pixeldojo_cli.emulator.faults import Fault, FaultPlan
from pixeldojo_cli.emulator.server import FAIL_MARKER, Emulator, RecordedRequest

__all__ = ["FAIL_MARKER", "Emulator", "Fault", "FaultPlan", "RecordedRequest"]
