"""mallocbench harness: instances from compiled JAX programs, the cost model, mappings, and the
hardware loop (realize, measure, select, store, calibrate)."""

from harness.results import store
from harness.xla.extraction import compile_program, extract, from_compiled
from harness.xla.instance import SCHEMA_VERSION, Buffer, CompilerFigures, Instance, InstanceError, LeftOut, Op
from harness.model.mapping import Mapping, MappingError, capacity, validate
from harness.device.timing import Measurement, measure
from harness.model.profiles import Profile, ProfileError, load_profile, profile_names
from harness.device.realization import Realized, RealizeReport, extract_linked, realize
from harness.device.selection import Selection, select
from harness.model.simulator import simulate, simulate_ops
from harness.xla.dump import XlaDump, compile_with_dump, read_dump

__all__ = [
    "SCHEMA_VERSION", "Buffer", "CompilerFigures", "Instance", "InstanceError", "LeftOut", "Mapping",
    "MappingError", "Measurement", "Op", "Profile", "ProfileError", "RealizeReport", "Realized", "Selection",
    "XlaDump", "capacity", "compile_program", "compile_with_dump", "extract", "extract_linked", "from_compiled",
    "load_profile", "measure", "profile_names", "read_dump", "realize", "select", "simulate", "simulate_ops",
    "store", "validate",
]
