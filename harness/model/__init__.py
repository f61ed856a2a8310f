"""The model stage: hardware profiles, mappings and the one cost model that prices them.

`costmodel` is the formula (pure JAX, called by the game, every policy and `simulate`);
`simulator` is its NumPy-facing entry point; `mapping` holds a mapping and its rules
(budget, capacity, validity); `profiles` the hardware figures with their sources (a fitted profile
also the machine it was fitted on).
"""

from harness.model.costmodel import Candidates, Tables, candidates, total_time
from harness.model.mapping import Mapping, MappingError, capacity, check_budget, validate
from harness.model.profiles import FittedOn, Profile, ProfileError, default_profile, load_profile, profile_names
from harness.model.simulator import cost_tables, simulate, simulate_ops

__all__ = ["Candidates", "FittedOn", "Mapping", "MappingError", "Profile", "ProfileError", "Tables", "candidates",
           "capacity", "check_budget", "default_profile", "load_profile", "cost_tables", "profile_names", "simulate",
           "simulate_ops", "total_time", "validate"]
