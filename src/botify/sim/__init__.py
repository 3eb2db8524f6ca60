"""The listener simulator: a vectorised user model, agents, the runner and a Gymnasium env."""

from botify.sim.agents import Agent, ConsoleAgent, Observation, OracleAgent, RandomAgent
from botify.sim.engine import ListenerModel, Sessions, StepResult
from botify.sim.env import RecEnv
from botify.sim.runner import AgentSpec, DaySummary, SimSettings, Simulation, make_agent, run_chunk

__all__ = [
    "Agent", "AgentSpec", "ConsoleAgent", "DaySummary", "ListenerModel", "Observation",
    "OracleAgent", "RandomAgent", "RecEnv", "Sessions", "SimSettings", "Simulation",
    "StepResult", "make_agent", "run_chunk",
]
