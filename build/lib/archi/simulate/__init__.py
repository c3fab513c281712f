"""Simulated CHEOPS visits written exactly as the DRP delivers them, with their truth."""

from archi.simulate.config import DEFAULT_FIELD, SimulationConfig, StarSpec
from archi.simulate.core import SimulatedVisit, simulate_visit
from archi.simulate.truth import TruthTables, read_truth

__all__ = ["SimulationConfig", "StarSpec", "DEFAULT_FIELD", "simulate_visit",
           "SimulatedVisit", "read_truth", "TruthTables"]
