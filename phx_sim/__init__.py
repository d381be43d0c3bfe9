"""phx_sim: an offline simulator of the four listing sites (docs/simulator.md).

Prefect-free on purpose: the simulator must start in tests, demos and benchmarks without an
orchestration stack, and must never share state with the engine it tests.
"""

from phx_sim.faults import FaultError
from phx_sim.simulator import PORT_NAMES, Simulator

__all__ = ["PORT_NAMES", "FaultError", "Simulator"]
