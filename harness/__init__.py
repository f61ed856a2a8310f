"""mallocbench harness: instances from compiled JAX programs, the cost model, mappings, and the
hardware loop (realize, measure, select, store, calibrate)."""

from harness import store
from harness.extract import compile_program, extract, from_compiled
from harness.instance import SCHEMA_VERSION, Buffer, CompilerFigures, Instance, InstanceError, LeftOut, Op
from harness.mapping import Mapping, MappingError, capacity, validate
from harness.measure import Measurement, measure
from harness.profiles import Profile, ProfileError, load_profile, profile_names
from harness.realize import Realized, RealizeReport, extract_linked, realize
from harness.select import Selection, select
from harness.simulate import simulate, simulate_ops
from harness.xla_dump import XlaDump, compile_with_dump, read_dump

__all__ = [
    "SCHEMA_VERSION", "Buffer", "CompilerFigures", "Instance", "InstanceError", "LeftOut", "Mapping",
    "MappingError", "Measurement", "Op", "Profile", "ProfileError", "RealizeReport", "Realized", "Selection",
    "XlaDump", "capacity", "compile_program", "compile_with_dump", "extract", "extract_linked", "from_compiled",
    "load_profile", "measure", "profile_names", "read_dump", "realize", "select", "simulate", "simulate_ops",
    "store", "validate",
]
