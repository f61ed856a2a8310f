"""Tests for workloads.alphatensor: factorizations, the loader, the programs, the suite."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads import alphatensor as at
from workloads import registry

# The published files live outside the repository and are never committed.
PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "data" / "alphatensor"
SUITE_NAMES = {
    "alphatensor-strassen": ((2, 2, 2), 7),
    "alphatensor-strassen-squared": ((4, 4, 4), 49),
    "alphatensor-4x4-gpu-v100": ((4, 4, 4), 49),
    "alphatensor-4x4-tpu-v2": ((4, 4, 4), 49),
    "alphatensor-3x4x5": ((3, 4, 5), 47),
}
TOL = 1e-5


def published(name: str) -> Path:
    path = PUBLISHED / name
    if not path.is_file():
        pytest.skip(f"published AlphaTensor data not found at {path}")
    return path


@pytest.fixture(scope="module")
def published_r() -> dict[str, at.Factorization]:
    return at.load(published("factorizations_r.npz"))


@pytest.fixture(scope="module")
def published_hw() -> dict[str, at.Factorization]:
    return at.load(published("factorizations_hardware.npz"))


def shipped_path() -> Path:
    return Path(str(importlib.resources.files("workloads").joinpath("data", at.SUITE_DATA)))


def rel_err(c, ref) -> float:
    c, ref = np.asarray(c, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(c - ref) / np.linalg.norm(ref))


def operands(shape, block: int = 4, seed: int = 0, numpy: bool = False):
    """Random normal float32 (a*block, b*block) and (b*block, c*block) matrices."""
    a, b, c = shape
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((a * block, b * block), dtype=np.float32)
    B = rng.standard_normal((b * block, c * block), dtype=np.float32)
    return (A, B) if numpy else (jnp.asarray(A), jnp.asarray(B))


def reference(A, B):
    return jnp.dot(jnp.asarray(A), jnp.asarray(B), precision=jax.lax.Precision.HIGHEST)


def save(path: Path, **entries) -> Path:
    np.savez(path, **entries)
    return path


# --- built-in factorizations ---------------------------------------------------------------


def test_strassen_is_rank_7_and_passes_check():
    f = at.check(at.strassen())
    assert (f.shape, f.rank) == ((2, 2, 2), 7)
    np.testing.assert_array_equal(at.reconstruct(f), at.matmul_tensor(2, 2, 2))


def test_strassen_squared_is_4x4_rank_49_and_passes_check():
    f = at.check(at.strassen_squared())
    assert (f.shape, f.rank) == ((4, 4, 4), 49)


def test_kronecker_of_rectangular_factorizations():
    f = at.check(at.kronecker(at.standard(1, 2, 3), at.strassen()))
    g = at.check(at.kronecker(at.strassen(), at.standard(2, 1, 3)))
    assert (f.shape, f.rank, g.shape, g.rank) == ((2, 4, 6), 42, (4, 2, 6), 42)


def test_matmul_tensor_layout():
    t = at.matmul_tensor(2, 3, 4)
    assert t.shape == (6, 12, 8) and t.sum() == 24
    i, j, k = 1, 2, 3
    assert t[i * 3 + j, j * 4 + k, k * 2 + i] == 1


def test_factors_are_read_only():
    f = at.strassen()
    with pytest.raises(ValueError):
        f.u[0, 0] = 5


# --- published data ------------------------------------------------------------------------


def test_every_published_r_entry_loads_and_passes_check(published_r):
    assert len(published_r) == 93
    for key, f in published_r.items():
        assert f.name == key and f.shape == tuple(int(d) for d in key.split(","))
        at.check(f)
    assert published_r["3,4,5"].rank == 47 and published_r["4,4,4"].rank == 49


def test_hardware_entries_load_and_pass_check(published_hw):
    assert sorted(published_hw) == ["4,4,4-gpu-v100", "4,4,4-tpu-v2"]
    for f in published_hw.values():
        assert (f.shape, f.rank) == ((4, 4, 4), 49)
        at.check(f)


def test_load_one_key():
    f = at.load(published("factorizations_r.npz"), "2,2,3")
    assert isinstance(f, at.Factorization) and (f.shape, f.rank) == ((2, 2, 3), 11)


def test_f2_entries_fail_the_real_check_but_hold_mod_2():
    path = published("factorizations_f2.npz")
    with np.load(path, allow_pickle=True) as npz:
        raw = {k: npz[k] for k in npz.files}
    assert len(raw) == 20
    for key, entry in raw.items():
        f = at.from_published(key, entry)  # well-formed, but arithmetic is modulo 2
        np.testing.assert_array_equal(at.reconstruct(f) % 2, at.matmul_tensor(*f.shape))
        with pytest.raises(at.FactorizationError, match=f"'{key}'.*does not decompose"):
            at.load(path, key)
    with pytest.raises(at.FactorizationError, match="does not decompose"):
        at.load(path)


# --- shipped data --------------------------------------------------------------------------


def test_shipped_file_is_small_int8_without_pickles():
    path = shipped_path()
    assert path.stat().st_size <= 50_000
    with np.load(path, allow_pickle=False) as npz:
        assert sorted({k.rpartition("/")[0] for k in npz.files}) == sorted(at.SUITE_KEYS)
        assert all(npz[k].dtype == np.int8 for k in npz.files)
    facts = at.load(path, allow_pickle=False)
    assert sorted(facts) == sorted(at.SUITE_KEYS)


def test_shipped_notice_names_source_and_licenses():
    text = Path(str(importlib.resources.files("workloads").joinpath("data", "NOTICE.md"))).read_text()
    for needle in ("Nature 610", "2022", "google-deepmind/alphatensor", "CC BY 4.0", "Apache", "Fawzi"):
        assert needle in text


def test_shipped_factorizations_equal_the_published_ones(published_r, published_hw):
    everything = {**published_r, **published_hw}
    for key in at.SUITE_KEYS:
        assert at.suite_factorization(key) == everything[key], key


def test_unknown_shipped_key_lists_valid_keys():
    with pytest.raises(KeyError, match="4,4,4-gpu-v100"):
        at.suite_factorization("5,5,5")


# --- programs ------------------------------------------------------------------------------


SUITE_FACTORIZATIONS = {
    "strassen": at.strassen,
    "strassen-squared": at.strassen_squared,
    **{key: (lambda key=key: at.suite_factorization(key)) for key in at.SUITE_KEYS},
}


@pytest.mark.parametrize("name", sorted(SUITE_FACTORIZATIONS))
def test_suite_programs_equal_dot(name):
    f = SUITE_FACTORIZATIONS[name]()
    A, B = operands(f.shape, block=8)
    C = at.to_program(f)(A, B)
    assert C.dtype == jnp.float32 and C.shape == (A.shape[0], B.shape[1])
    assert rel_err(C, reference(A, B)) < TOL


def test_hardware_programs_equal_dot(published_hw):
    for f in published_hw.values():
        A, B = operands(f.shape, seed=1)
        assert rel_err(at.to_program(f)(A, B), reference(A, B)) < TOL, f.name


def test_every_published_r_program_equals_dot(published_r):
    # numpy operands: the same block algorithm, evaluated eagerly by numpy (820k block ops in all).
    for key, f in published_r.items():
        A, B = operands(f.shape, numpy=True)
        assert rel_err(at.to_program(f)(A, B), reference(A, B)) < TOL, key


@pytest.mark.parametrize("key", ["2,2,3", "3,3,3", "3,4,11", "4,4,4", "5,5,5"])
def test_published_r_programs_in_jax_equal_dot(published_r, key):
    # Includes 3,4,11, whose coefficients include 0.5 and 0.125.
    f = published_r[key]
    A, B = operands(f.shape, seed=2)
    C = at.to_program(f)(A, B)
    assert isinstance(C, jax.Array) and rel_err(C, reference(A, B)) < TOL


def test_program_is_jittable_and_names_its_terms():
    f = at.strassen()
    A, B = operands(f.shape)
    C = jax.jit(at.to_program(f))(A, B)
    assert rel_err(C, reference(A, B)) < TOL
    hlo = jax.jit(at.to_program(f)).lower(A, B).as_text(debug_info=True)
    assert "term6" in hlo


def test_program_rejects_indivisible_shapes():
    fn = at.to_program(at.strassen())
    with pytest.raises(ValueError, match="strassen"):
        fn(jnp.ones((3, 4)), jnp.ones((4, 4)))
    with pytest.raises(ValueError):
        fn(jnp.ones((4, 4)), jnp.ones((6, 4)))


@settings(max_examples=25, deadline=None)
@given(a=st.integers(1, 3), b=st.integers(1, 3), c=st.integers(1, 3), block=st.integers(1, 3))
def test_kronecker_programs_equal_dot(a, b, c, block):
    f = at.check(at.kronecker(at.standard(a, b, c), at.strassen()))
    A, B = operands(f.shape, block=block, numpy=True)
    assert rel_err(at.to_program(f)(A, B), np.asarray(A, np.float64) @ np.asarray(B, np.float64)) < TOL


# --- bad input -----------------------------------------------------------------------------


def test_wrong_row_count_names_the_key(tmp_path):
    path = save(tmp_path / "bad.npz", **{"2,2,2": np.zeros((3, 5, 7), np.int32)})
    with pytest.raises(at.FactorizationError, match=r"'2,2,2'.*factor u has 5 rows, expected a\*b = 4"):
        at.load(path)


def test_wrong_number_of_factors_names_the_key(tmp_path):
    path = save(tmp_path / "bad.npz", **{"2,2,2": np.zeros((2, 4, 7), np.int32)})
    with pytest.raises(at.FactorizationError, match="'2,2,2'.*wrong number of factors"):
        at.load(path, "2,2,2")


def test_non_square_entry_errors_name_the_key(tmp_path):
    s = at.standard(2, 2, 3)
    ragged = np.empty(3, dtype=object)
    ragged[:] = [s.u, s.v, s.w[:, :-1]]
    rows = np.empty(3, dtype=object)
    rows[:] = [s.u, s.v[:-1], s.w]
    path = save(tmp_path / "bad.npz", **{"2,2,3": ragged, "2,3,2": rows})
    with pytest.raises(at.FactorizationError, match="'2,2,3'.*inconsistent ranks"):
        at.load(path, "2,2,3")
    with pytest.raises(at.FactorizationError, match=r"'2,3,2'.*factor u has 4 rows, expected a\*b = 6"):
        at.load(path, "2,3,2")
    with pytest.raises(at.FactorizationError, match="allow_pickle"):
        at.load(path, "2,2,3", allow_pickle=False)


def test_split_entry_missing_a_factor_names_the_key(tmp_path):
    s = at.strassen()
    path = save(tmp_path / "bad.npz", **{"2,2,2/u": s.u, "2,2,2/v": s.v})
    with pytest.raises(at.FactorizationError, match="'2,2,2'.*missing w"):
        at.load(path)


def test_bad_key_names_the_key(tmp_path):
    path = save(tmp_path / "bad.npz", **{"two": np.zeros((3, 4, 7), np.int32)})
    with pytest.raises(at.FactorizationError, match="'two'"):
        at.load(path)


def test_flipped_coefficient_fails_check_naming_the_key(tmp_path):
    s = at.strassen()
    good = np.stack(s.factors)
    bad = good.copy()
    bad[0, 0, 0] = -bad[0, 0, 0]
    path = save(tmp_path / "flipped.npz", **{"2,2,2": good, "4,4,4": np.stack(at.strassen_squared().factors)})
    assert at.load(path, "2,2,2") == at.Factorization("2,2,2", (2, 2, 2), *s.factors)
    path = save(tmp_path / "flipped.npz", **{"2,2,2": bad})
    with pytest.raises(at.FactorizationError, match=r"'2,2,2'.*does not decompose the <2,2,2> matmul tensor"):
        at.load(path, "2,2,2")
    with pytest.raises(at.FactorizationError, match="'2,2,2'"):
        at.load(path)


def test_unknown_key_lists_valid_keys(tmp_path):
    path = save(tmp_path / "ok.npz", **{"2,2,2": np.stack(at.strassen().factors),
                                        "4,4,4": np.stack(at.strassen_squared().factors)})
    with pytest.raises(KeyError, match=r"'3,3,3'.*valid keys: 2,2,2, 4,4,4") as info:
        at.load(path, "3,3,3")
    assert isinstance(info.value, at.UnknownFactorizationError)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        at.load(tmp_path / "nope.npz")


def test_constructor_validates_shapes():
    s = at.strassen()
    with pytest.raises(at.FactorizationError, match="'x'.*factor w has 3 rows, expected c\\*a = 4"):
        at.Factorization("x", (2, 2, 2), s.u, s.v, s.w[:3])
    with pytest.raises(at.FactorizationError, match="'x'.*must be 2-D"):
        at.Factorization("x", (2, 2, 2), s.u, s.v, s.w[0])


# --- the suite -----------------------------------------------------------------------------


def test_suite_workloads_are_registered():
    names = {n for n in registry.names() if registry.get(n).family == "alphatensor"}
    assert names >= set(SUITE_NAMES)


def test_full_sizes_are_near_8192_and_divisible():
    for shape, _ in SUITE_NAMES.values():
        dims = at._dims(shape, "full")
        assert all(d % (s * 128) == 0 and abs(d - 8192) <= s * 64 for d, s in zip(dims, shape))
    assert at._dims((4, 4, 4), "full") == (8192, 8192, 8192)
    assert at._dims((3, 4, 5), "full") == (8064, 8192, 8320)


def test_every_size_is_aligned_near_its_target_and_grows():
    assert tuple(at._TARGET) == registry.SIZES
    for shape, _ in SUITE_NAMES.values():
        by_size = []
        for size in registry.SIZES:
            target, align = at._TARGET[size]
            dims = at._dims(shape, size)
            assert all(d % (s * align) == 0 and abs(d - target) <= s * align / 2 for d, s in zip(dims, shape)), size
            by_size.append(dims)
        for smaller, larger in zip(by_size, by_size[1:]):
            assert all(a < b for a, b in zip(smaller, larger)), (shape, by_size)


@pytest.mark.parametrize("name", sorted(SUITE_NAMES))
def test_suite_workload_builds_from_shapes_at_every_size_and_flops_grow(name):
    w = registry.get(name)
    shape, _ = SUITE_NAMES[name]
    flops = []
    for size in registry.SIZES:
        fn, args = w.builder(size, abstract=True)
        m, k, n = at._dims(shape, size)
        assert all(isinstance(x, jax.ShapeDtypeStruct) and x.dtype == jnp.float32 for x in args)
        assert [x.shape for x in args] == [(m, k), (k, n)]
        cost = jax.jit(fn).lower(*args).cost_analysis()
        flops.append((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
    assert all(a < b for a, b in zip(flops, flops[1:])), dict(zip(registry.SIZES, flops))
    _, ci_args = w.build("ci")
    assert [x.shape for x in ci_args] == [x.shape for x in w.builder("ci", abstract=True)[1]]


@pytest.mark.parametrize("name", sorted(SUITE_NAMES))
def test_suite_workload_ci_compiles_and_equals_dot(name):
    fn, args = registry.get(name).build("ci")
    assert all(x.dtype == jnp.float32 for x in args) and len(args) == 2
    assert all(200 <= d <= 320 for x in args for d in x.shape)
    C = jax.jit(fn)(*args)
    assert rel_err(C, reference(*args)) < TOL
