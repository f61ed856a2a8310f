"""mallocbench harness: extract instances from compiled JAX programs."""

from harness.extract import compile_program, extract, from_compiled
from harness.instance import SCHEMA_VERSION, Buffer, CompilerFigures, Instance, InstanceError, LeftOut, Op
from harness.xla_dump import XlaDump, compile_with_dump, read_dump

__all__ = [
    "SCHEMA_VERSION", "Buffer", "CompilerFigures", "Instance", "InstanceError", "LeftOut", "Op",
    "XlaDump", "compile_program", "compile_with_dump", "extract", "from_compiled", "read_dump",
]
