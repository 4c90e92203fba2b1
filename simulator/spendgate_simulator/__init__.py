"""A simulated OpenAI-compatible provider for tests, demos and the proxy benchmark.

``create_app(SimulatorConfig(...))`` gives an aiohttp application; ``spendgate simulate-provider``
serves it. Answers are deterministic functions of the request body; see docs/simulator.md.
"""

from spendgate_simulator.app import create_app
from spendgate_simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig", "create_app"]
