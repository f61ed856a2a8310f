"""The bottom stage: a compiled XLA program read as a mapping instance.

HLO text is parsed (`hlo_text`), its ops priced (`hlo_costs`), its buffers' live ranges
found as XLA's scheduler left them (`liveness`), and the result assembled as an
`Instance` (`extraction`, `instance`); `link` ties the instance's buffers back to the
values of the JAX program, and `dump` reads XLA's own dump of the same compile.
"""

from harness.xla.dump import XlaDump, compile_with_dump, read_dump
from harness.xla.extraction import compile_program, extract, from_compiled
from harness.xla.instance import SCHEMA_VERSION, Buffer, CompilerFigures, Instance, InstanceError, LeftOut, Op
from harness.xla.linking import Link, link
from harness.xla.scoped_program import Program, jit, trace

__all__ = ["SCHEMA_VERSION", "Buffer", "CompilerFigures", "Instance", "InstanceError", "LeftOut", "Link", "Op",
           "Program", "XlaDump", "compile_program", "compile_with_dump", "extract", "from_compiled", "jit", "link",
           "read_dump", "trace"]
