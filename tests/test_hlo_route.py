"""The HLO route: the compiler's own values (iotas, constants, expansion internals) placed in host memory by
annotating the compiled module, confirmed by XLA's parser and by the annotated module's outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness.device.hlo_route import HLO_UNLINKED_KINDS, hlo_route
from harness.device.realization import extract_linked
from harness.xla import hlo_module
from harness.xla.hlo_text import parse_module
from harness.xla.linking import link


def _pool_grad(x):
    """A max-pool's gradient: XLA expands its select-and-scatter with iotas and a multi-output reduce-window."""
    pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
    return jax.grad(lambda x: pool(x).sum())(x)


@pytest.fixture(scope="module")
def pool_grad():
    args = (jnp.asarray(np.random.default_rng(0).standard_normal((1, 9, 9, 2)), jnp.float32),)
    instance, program, compiled = extract_linked(_pool_grad, args, "pool-grad")
    return instance, link(program, instance), compiled, args


def test_iotas_are_placed_by_the_hlo_route(pool_grad):
    instance, linked, compiled, args = pool_grad
    iotas = [b for b in linked.unlinked if "iota" in instance.buffers[b].hlo_name]
    assert iotas, "the program's expansion should hold iotas no program value links"
    route = hlo_route(instance, linked, compiled.as_text(), args, [compiled(*args)])
    assert set(iotas) <= set(route.placed)
    assert route.outputs_match is True
    assert route.hlo_bytes == sum(instance.buffers[b].bytes for b in route.placed)
    assert route.program_share == linked.linked_share
    assert route.linked_share == pytest.approx(1 - sum(route.unlinked_bytes.values()) / route.total_bytes)
    assert {r.split(":")[0] for r in route.reasons.values()} <= set(HLO_UNLINKED_KINDS)
    placed_names = hlo_module.host_placed(route.annotated_text)
    assert {instance.buffers[b].hlo_name for b in iotas} <= placed_names


def test_a_wrong_reference_places_nothing(pool_grad):
    instance, linked, compiled, args = pool_grad
    route = hlo_route(instance, linked, compiled.as_text(), args, [np.asarray(compiled(*args)) + 1.0])
    assert route.outputs_match is False and route.placed == ()
    assert {r.split(":")[0] for r in route.reasons.values()} >= {"outputs differ"}


def test_annotation_is_read_back_in_host_memory_space():
    text = jax.jit(lambda x: jnp.sin(x) @ x.T).lower(jnp.ones((4, 8))).compile().as_text()
    name = next(i.name for i in parse_module(text).entry_computation.instructions
                if i.opcode != "parameter" and not i.is_root)
    annotated = hlo_module.annotate_host(text, [name])
    assert hlo_module.host_placed(annotated) == {name}
    assert f"%{name}.host = " in annotated and ":S(5)}" in annotated
    x = np.arange(32, dtype=np.float32).reshape(4, 8)
    np.testing.assert_allclose(hlo_module.run_text(annotated, [x])[0], np.sin(x) @ x.T, rtol=1e-5)


def test_a_move_out_of_host_memory_space_is_not_placed():
    text = jax.jit(lambda x: jnp.sin(x) @ x.T).lower(jnp.ones((4, 8))).compile().as_text()
    name = next(i.name for i in parse_module(text).entry_computation.instructions
                if i.opcode != "parameter" and not i.is_root)
    annotated = hlo_module.annotate_host(text, [name])
    assert hlo_module.host_placed(annotated.replace(":S(5)}", "}")) == frozenset()
    no_move = annotated.replace('custom_call_target="MoveToHost"', 'custom_call_target="SomethingElse"')
    assert hlo_module.host_placed(no_move) == frozenset()


def test_a_jaxlib_without_the_api_gives_a_clear_error(monkeypatch):
    from jax._src.lib import _jax

    monkeypatch.delattr(_jax.mlir, "hlo_to_stablehlo")
    with pytest.raises(hlo_module.HloApiError, match="hlo_to_stablehlo"):
        hlo_module.compile_text(jax.jit(lambda x: x + 1.0).lower(jnp.ones(4)).compile().as_text())


def test_annotating_an_unknown_or_root_instruction_fails():
    module = parse_module(text := jax.jit(lambda x: x + 1.0).lower(jnp.ones(4)).compile().as_text())
    with pytest.raises(ValueError, match="no array instruction"):
        hlo_module.annotate_host(text, ["no-such-instruction"])
    with pytest.raises(ValueError, match="no array instruction"):
        hlo_module.annotate_host(text, [module.entry_computation.root.name])


def test_an_instance_of_another_program_fails(pool_grad):
    instance, linked, _, _ = pool_grad
    other = jax.jit(lambda x: x * 3.0).lower(jnp.ones(4)).compile().as_text()
    with pytest.raises(ValueError, match="names no instruction"):
        hlo_route(instance, linked, other)


@pytest.mark.parametrize("source,result", [
    ("f32[2,3]{1,0}", "f32[3,2]{0,1}"),  # a transpose in layout only
    ("f32[2,3,4]{2,1,0}", "f32[6,4]{1,0}"),  # a reshape
    ("f32[2,3]{0,1}", "f32[6]{0}"),  # a column-major array read flat
    ("f32[4]{0}", "s32[4]{0}"),  # bits of another element type
])
def test_bitcasts_run_as_their_memory_reinterpretation(source, result):
    text = (f"HloModule m, entry_computation_layout={{({source})->{result}}}\n\n"
            f"ENTRY %main (p: {source.split('{')[0]}) -> {result.split('{')[0]} {{\n"
            f"  %p = {source} parameter(0)\n  ROOT %b = {result} bitcast(%p)\n}}\n")
    shape = tuple(int(d) for d in source.split("[")[1].split("]")[0].split(","))
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    order = [int(d) for d in source.split("{")[1].rstrip("}").split(",")][::-1]  # major to minor
    out_order = [int(d) for d in result.split("{")[1].rstrip("}").split(",")][::-1]
    out_dims = [int(d) for d in result.split("[")[1].split("]")[0].split(",")]
    memory = np.transpose(x, order).ravel()  # the bytes in memory
    dtype = np.int32 if result.startswith("s32") else np.float32
    want = np.transpose(memory.view(dtype).reshape([out_dims[d] for d in out_order]), np.argsort(out_order))
    np.testing.assert_array_equal(hlo_module.run_text(text, [x])[0], want)


def test_workloads_table_shows_both_routes_and_what_neither_reaches():
    from harness.cli.main import _linked_cells
    from harness.runs.suite import SummaryRow

    row = SummaryRow("w", "f", "ci", linked_share=0.7, unlinked_bytes=(("layout copy", 2048),), hlo_share=0.25,
                     hlo_unlinked_bytes=(("tuple element", 1024),))
    shares, reasons = _linked_cells(row)
    assert shares == "70.0% + 25.0% = 95.0%" and "tuple element" in reasons and "layout copy" not in reasons
    shares, reasons = _linked_cells(SummaryRow("w", "f", "ci", linked_share=0.7, unlinked_bytes=(("layout copy", 2048),)))
    assert shares == "70.0%" and "layout copy" in reasons


def test_compiled_host_instructions_counts_results_in_host_memory_space():
    class _Module:
        def to_string(self):
            return ("ENTRY %main (p: f32[4]) -> f32[4] {\n  %p = f32[4]{0} parameter(0)\n"
                    "  %copy-start = (f32[4]{0:S(5)}, f32[4]{0}, u32[]) copy-start(%p)\n"
                    "  %c = f32[4]{0:S(5)} copy-done(%copy-start)\n  ROOT %n = f32[4]{0} negate(%p)\n}\n")

    class _Executable:
        def hlo_modules(self):
            return [_Module()]

    assert hlo_module.compiled_host_instructions(_Executable()) == 2
    cpu = hlo_module.compile_text(jax.jit(lambda x: x + 1.0).lower(jnp.ones(4)).compile().as_text())
    assert hlo_module.compiled_host_instructions(cpu) == 0
