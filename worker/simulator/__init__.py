"""A protocol-faithful ComfyUI 0.8.0 simulator (REST + WebSocket) with fault injection.

May import: ``aiohttp``, the standard library, itself, and of ours only the library's
message definitions (``worker.comfyui.protocol``): it speaks the protocol, it never uses our
clients, so a client bug cannot hide behind a matching simulator bug.
"""

from worker.simulator.engine import SimulatorTiming
from worker.simulator.faults import Faults
from worker.simulator.runner import ComfyUISimulator
from worker.simulator.server import SimulatorApp

__all__ = ["ComfyUISimulator", "Faults", "SimulatorApp", "SimulatorTiming"]
