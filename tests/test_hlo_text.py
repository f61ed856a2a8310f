"""The HLO text parser: shapes, sizes, tuples, attributes and clear errors."""

import pytest

from harness.xla.hlo_text import ArrayShape, HloParseError, TupleShape, parse_module, parse_shape

MODULE = """HloModule jit_f, is_scheduled=true, input_output_alias={ {0}: (1, {}, may-alias) }, entry_computation_layout={(f32[4]{0})->f32[4]{0}}

%body (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p = (s32[], f32[4]{0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %x = f32[4]{0} get-tuple-element(%p), index=1
  %e = f32[4]{0} exponential(%x), metadata={op_name="jit(f)/exp, \\"quoted\\"" stack_frame_id=1}
  ROOT %t = (s32[], f32[4]{0}) tuple(%i, /*index=1*/%e)
}

ENTRY %main (a: f32[4], b: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  %b = f32[4]{0} parameter(1)
  %c = s32[] constant(0)
  %t0 = (s32[], f32[4]{0}) tuple(%c, %a)
  %w = (s32[], f32[4]{0}) while(%t0), condition=%body, body=%body, backend_config={"known_trip_count":{"n":"7"}}
  ROOT %r = f32[4]{0} get-tuple-element(%w), index=1
}
"""


def test_parse_module_structure():
    module = parse_module(MODULE)
    assert module.entry == "main"
    assert [i.name for i in module.entry_computation.instructions] == ["a", "b", "c", "t0", "w", "r"]
    body = module.computations["body"]
    assert body.root.name == "t" and body.root.operands == ["i", "e"]
    assert module.instruction("e").op_name == 'jit(f)/exp, \\"quoted\\"'
    assert module.instruction("w").backend_config["known_trip_count"]["n"] == "7"
    assert module.instruction("w").called("body") == ["body"]
    assert module.input_output_alias == {(1, ()): (0,)}


def test_shapes_and_sizes():
    assert parse_shape("f32[8,16]{1,0}") == ArrayShape("f32", (8, 16), (1, 0))
    assert parse_shape("f32[8,16]{1,0}").byte_size == 512
    assert parse_shape("pred[3]{0}").byte_size == 3
    assert parse_shape("bf16[3,5]{1,0:T(8,128)(2,1)}").byte_size == 8 * 128 * 2
    t = parse_shape("(s32[], f32[4]{0}, (f32[2]{0}))")
    assert isinstance(t, TupleShape) and t.byte_size == 24 and t.elements[2].byte_size == 8


@pytest.mark.parametrize("text", ["f33[4]", "f32[4", "banana"])
def test_bad_shape_is_named(text):
    with pytest.raises(HloParseError, match="cannot parse shape"):
        parse_shape(text)


def test_not_a_module():
    with pytest.raises(HloParseError, match="HloModule"):
        parse_module("ENTRY %main () -> f32[] {\n}\n")
