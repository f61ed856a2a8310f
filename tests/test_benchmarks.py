"""Benchmarks: extraction time per workload beside its compile time (`make bench`).

Each workload has two benchmarks in one group, `compile` (jit, lower, compile on
the local backend) and `extract` (building the instance from the compiled
program), so the table shows what extraction adds to compilation. Under
`make test` they run once each, as smoke tests.
"""

import jax
import pytest

import workloads
from harness import from_compiled


@pytest.mark.parametrize("name", workloads.names("ci"))
@pytest.mark.parametrize("stage", ["compile", "extract"])
def test_extraction_beside_compile(benchmark, name, stage):
    fn, args = workloads.get(name).build("ci")
    benchmark.group = name

    def fresh_lowering():
        jax.clear_caches()  # JAX would otherwise hand back the executable it compiled before
        return (jax.jit(fn).lower(*args),), {}

    if stage == "compile":
        compiled = benchmark.pedantic(lambda lowered: lowered.compile(), setup=fresh_lowering, rounds=3)
    else:
        compiled = jax.jit(fn).lower(*args).compile()
        instance = benchmark.pedantic(from_compiled, args=(compiled, name), rounds=5, iterations=1)
        benchmark.extra_info.update(ops=len(instance.ops), buffers=len(instance.buffers))
    assert compiled.as_text()
