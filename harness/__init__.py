"""mallocbench harness: instances from compiled JAX programs, the cost model, mappings."""

from harness.extract import compile_program, extract, from_compiled
from harness.instance import SCHEMA_VERSION, Buffer, CompilerFigures, Instance, InstanceError, LeftOut, Op
from harness.mapping import Mapping, MappingError, capacity, validate
from harness.profiles import Profile, ProfileError, load_profile, profile_names
from harness.simulate import simulate, simulate_ops
from harness.xla_dump import XlaDump, compile_with_dump, read_dump

__all__ = [
    "SCHEMA_VERSION", "Buffer", "CompilerFigures", "Instance", "InstanceError", "LeftOut", "Mapping",
    "MappingError", "Op", "Profile", "ProfileError", "XlaDump", "capacity", "compile_program",
    "compile_with_dump", "extract", "from_compiled", "load_profile", "profile_names", "read_dump",
    "simulate", "simulate_ops", "validate",
]
