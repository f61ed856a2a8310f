"""Tests for the model workloads: mlp, transformer, cnn, attention, rnn, matmul.

"ci" sizes are compiled and run; the other sizes ("small", "medium", "full") are only
traced and lowered from shapes (`builder(size, abstract=True)`, `jax.eval_shape`,
`jax.jit(fn).lower`), so nothing large is allocated or compiled.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from workloads import attention, cnn, matmul, mlp, registry, rnn, transformer

MODULES = (attention, cnn, matmul, mlp, rnn, transformer)
EXPECTED = {
    "mlp-train": "mlp",
    "gpt-block-train": "transformer",
    "vit-encoder": "transformer",
    "resnet-block-train": "cnn",
    "alexnet-train": "cnn",
    "unet": "cnn",
    "mha-fwd-bwd": "attention",
    "lstm-scan": "rnn",
    "matmul-chain": "matmul",
}
TRAINING = {"mlp-train", "gpt-block-train", "resnet-block-train", "alexnet-train", "lstm-scan"}
FULL_ARGS_LIMIT = 16 * 2**30  # bytes; "full" must fit an accelerator with room to run
CPU_ARGS_LIMIT = 64 * 2**20  # bytes; "small" and "medium" run on a CPU for calibration
NAMES = sorted(EXPECTED)


def leaves(tree):
    """The array (or ShapeDtypeStruct) leaves of `tree`."""
    return jax.tree_util.tree_leaves(tree)


def signature(tree):
    """Tree structure with (shape, dtype) at the leaves."""
    return jax.tree_util.tree_map(lambda x: (tuple(x.shape), np.dtype(x.dtype)), tree)


def test_registered_with_families():
    mine = {w.name: w.family for w in map(registry.get, registry.names("full")) if w.family in set(EXPECTED.values())}
    assert mine == EXPECTED
    assert set(EXPECTED) <= set(registry.names("ci"))
    dims = {name for module in MODULES for name in module.DIMS}
    assert dims == set(EXPECTED)
    for name in EXPECTED:
        assert registry.get(name).description


def test_unknown_workload_lists_valid_names():
    with pytest.raises(registry.UnknownWorkloadError) as info:
        registry.get("nope")
    message = str(info.value)
    assert "nope" in message
    for name in EXPECTED:
        assert name in message


def arg_bytes(args):
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in leaves(args))


def test_sizes_increase_and_suites_are_ci_and_full():
    assert registry.SIZES == ("ci", "small", "medium", "full")
    assert registry.SUITES == ("ci", "full")
    for suite in registry.SUITES:
        assert set(EXPECTED) <= set(registry.names(suite))
    with pytest.raises(ValueError, match="unknown suite 'medium'; valid suites: ci, full"):
        registry.names("medium")


@pytest.mark.parametrize("name", ["matmul-chain", "alphatensor-strassen"])
def test_unknown_size_names_the_valid_sizes(name):
    with pytest.raises(ValueError, match="valid sizes") as info:
        registry.get(name).build("huge")
    message = str(info.value)
    assert "'huge'" in message and repr(name) in message
    assert message.endswith("valid sizes: ci, small, medium, full")


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_dims_grow_from_size_to_size(module):
    for name, sizes in module.DIMS.items():
        assert set(sizes) == set(registry.SIZES), name
        for smaller, larger in zip(registry.SIZES, registry.SIZES[1:]):
            a_dims, b_dims = sizes[smaller], sizes[larger]
            assert a_dims.keys() == b_dims.keys(), name
            flat_a, flat_b = [], []
            for k in a_dims:
                a, b = np.atleast_1d(a_dims[k]), np.atleast_1d(b_dims[k])
                if a.shape != b.shape:  # e.g. more levels of a U-Net: compare the count
                    a, b = np.array([len(a)]), np.array([len(b)])
                flat_a += a.tolist()
                flat_b += b.tolist()
            assert all(b >= a for a, b in zip(flat_a, flat_b)), (name, smaller, larger)
            assert any(b > a for a, b in zip(flat_a, flat_b)), (name, smaller, larger)


@pytest.mark.parametrize("name", NAMES)
def test_every_size_builds_from_shapes_and_flops_grow(name):
    """Each size builds abstract and lowers; args and XLA's flops strictly grow ci < small < medium < full."""
    flops, sizes_bytes = [], []
    for size in registry.SIZES:
        fn, args = registry.get(name).builder(size, abstract=True)
        assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves(args)), size
        sizes_bytes.append(arg_bytes(args))
        if size in ("small", "medium"):
            assert sizes_bytes[-1] < CPU_ARGS_LIMIT, (size, sizes_bytes[-1])
        cost = jax.jit(fn).lower(*args).cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops.append(cost["flops"])
    assert all(a < b for a, b in zip(flops, flops[1:])), dict(zip(registry.SIZES, flops))
    assert all(a < b for a, b in zip(sizes_bytes, sizes_bytes[1:])), dict(zip(registry.SIZES, sizes_bytes))


@pytest.mark.parametrize("name", NAMES)
def test_ci_compiles_and_runs(name):
    fn, args = registry.get(name).build("ci")
    assert not hasattr(fn, "lower"), "fn must be a plain (un-jitted) function"
    assert isinstance(args, tuple)
    assert all(isinstance(x, jax.Array) for x in leaves(args))
    assert all(x.dtype in (np.float32, np.int32) for x in leaves(args))
    compiled = jax.jit(fn).lower(*args).compile()
    out = compiled(*args)
    for x in leaves(out):
        if np.issubdtype(x.dtype, np.floating):
            assert np.isfinite(np.asarray(x)).all(), name
    if name in TRAINING:
        params, opt_state, loss = out[:3]
        assert signature(params) == signature(args[0])
        assert signature(opt_state) == signature(args[1])
        assert np.shape(loss) == () and float(loss) > 0
        assert any(not np.array_equal(a, b) for a, b in zip(leaves(args[0]), leaves(params))), "params unchanged"


@pytest.mark.parametrize("name", NAMES)
def test_ci_build_is_deterministic_and_matches_abstract(name):
    w = registry.get(name)
    _, args = w.build("ci")
    _, again = w.build("ci")
    _, abstract = w.builder("ci", abstract=True)
    assert all(np.array_equal(a, b) for a, b in zip(leaves(args), leaves(again)))
    assert signature(abstract) == signature(args)
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves(abstract))


@pytest.mark.parametrize("name", NAMES)
def test_full_traces_from_shapes(name):
    fn, args = registry.get(name).builder("full", abstract=True)
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves(args))
    full_bytes = arg_bytes(args)
    assert 0 < full_bytes < FULL_ARGS_LIMIT
    _, ci_args = registry.get(name).builder("ci", abstract=True)
    assert full_bytes > 10 * arg_bytes(ci_args)
    out = jax.eval_shape(fn, *args)
    if name in TRAINING:
        assert signature(out[0]) == signature(args[0])
        assert signature(out[1]) == signature(args[1])
