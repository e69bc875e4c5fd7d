"""A protocol-faithful ComfyUI 0.8.0 simulator (REST + WebSocket) with fault injection."""

from worker.simulator.engine import SimulatorTiming
from worker.simulator.faults import Faults
from worker.simulator.runner import ComfyUISimulator
from worker.simulator.server import SimulatorApp

__all__ = ["ComfyUISimulator", "Faults", "SimulatorApp", "SimulatorTiming"]
