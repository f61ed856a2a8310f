"""AlphaTensor workloads: matmul programs built from tensor factorizations.

A rank-R factorization of the <a, b, c> matrix-multiplication tensor is an
algorithm that multiplies an (a x b) by a (b x c) block matrix with R block
products instead of a*b*c. The mallocMuZero paper maps the buffers of such
programs, using the factorizations published with AlphaTensor (Fawzi et al.,
"Discovering faster matrix multiplication algorithms with reinforcement
learning", Nature 610, 2022; google-deepmind/alphatensor).

Convention (the published, "symmetrized" one). For shape (a, b, c):

- ``u`` has shape (a*b, R): row ``i*b + j`` holds the coefficients of A[i, j];
- ``v`` has shape (b*c, R): row ``j*c + k`` holds the coefficients of B[j, k];
- ``w`` has shape (c*a, R): row ``k*a + i`` holds the coefficients of C[i, k]
  (note the order: the third factor describes C transposed).

The factors decompose the tensor T with T[i*b + j, j*c + k, k*a + i] = 1 and
zeros elsewhere: ``einsum('ir,jr,kr->ijk', u, v, w) == T``. Term r is
``m_r = (sum_ij u[i*b+j, r] A_ij) @ (sum_jk v[j*c+k, r] B_jk)`` and
``C_ik = sum_r w[k*a+i, r] m_r``.

Data: `load(path)` reads the published ``.npz`` files from a path of the
user's; the factorizations the suite uses are shipped, as small int8 arrays, in
``workloads/data/alphatensor_suite.npz`` (see ``workloads/data/NOTICE.md``,
written by ``scripts/make_alphatensor_data.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from workloads.registry import SIZES, register

__all__ = [
    "Factorization",
    "FactorizationError",
    "UnknownFactorizationError",
    "check",
    "from_published",
    "kronecker",
    "load",
    "matmul_tensor",
    "reconstruct",
    "standard",
    "strassen",
    "strassen_squared",
    "suite_factorization",
    "to_program",
]

FAMILY = "alphatensor"
SUITE_DATA = "alphatensor_suite.npz"
# Published factorizations the suite uses (shipped in workloads/data/SUITE_DATA).
SUITE_KEYS = ("3,4,5", "4,4,4-gpu-v100", "4,4,4-tpu-v2")
FACTOR_NAMES = ("u", "v", "w")
_CHECK_ATOL = 1e-8  # int64 is exact, float64 exact for dyadic coefficients; slack for other floats

PathLike = Union[str, "os.PathLike[str]"]


class FactorizationError(ValueError):
    """A factorization that is malformed or does not decompose its matmul tensor."""


class UnknownFactorizationError(KeyError):
    """A key that is not in a factorization file; the message lists the valid keys."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclasses.dataclass(frozen=True, eq=False)
class Factorization:
    """Factors (u, v, w) of the <a, b, c> matmul tensor, in the module's convention.

    u: (a*b, R), v: (b*c, R), w: (c*a, R). Shapes are validated on construction
    (FactorizationError naming `name`); the tensor identity is verified by `check`.
    Factors are stored as read-only int64 arrays, or float64 where a coefficient
    is not an integer.
    """

    name: str
    shape: tuple[int, int, int]
    u: np.ndarray = dataclasses.field(repr=False)
    v: np.ndarray = dataclasses.field(repr=False)
    w: np.ndarray = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else ()
        if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
            raise FactorizationError(f"factorization {self.name!r}: shape must be three positive ints, got {self.shape!r}")
        a, b, c = (int(d) for d in shape)
        object.__setattr__(self, "shape", (a, b, c))
        rows = {"u": (a * b, "a*b"), "v": (b * c, "b*c"), "w": (c * a, "c*a")}
        ranks = {}
        for fname in FACTOR_NAMES:
            x = _as_factor(self.name, fname, getattr(self, fname))
            want, formula = rows[fname]
            if x.shape[0] != want:
                raise FactorizationError(
                    f"factorization {self.name!r}: factor {fname} has {x.shape[0]} rows, "
                    f"expected {formula} = {want} for shape {(a, b, c)}")
            ranks[fname] = x.shape[1]
            object.__setattr__(self, fname, x)
        if len(set(ranks.values())) != 1:
            detail = ", ".join(f"{k}: {r}" for k, r in ranks.items())
            raise FactorizationError(f"factorization {self.name!r}: inconsistent ranks ({detail} columns)")

    @property
    def rank(self) -> int:
        """R, the number of rank-one terms (block products)."""
        return int(self.u.shape[1])

    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, w)."""
        return self.u, self.v, self.w

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Factorization):
            return NotImplemented
        return (self.name, self.shape) == (other.name, other.shape) and all(
            np.array_equal(x, y) for x, y in zip(self.factors, other.factors))

    __hash__ = None  # type: ignore[assignment]  (holds arrays)


def _as_factor(name: str, fname: str, x: Any) -> np.ndarray:
    """A read-only 2-D int64 (or float64, for non-integer coefficients) copy of `x`."""
    try:
        arr = np.asarray(x)
    except Exception as e:  # noqa: BLE001  (ragged or otherwise unreadable)
        raise FactorizationError(f"factorization {name!r}: factor {fname} is not an array ({e})") from None
    if arr.ndim != 2:
        raise FactorizationError(f"factorization {name!r}: factor {fname} must be 2-D, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise FactorizationError(f"factorization {name!r}: factor {fname} has non-numeric dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise FactorizationError(f"factorization {name!r}: factor {fname} has non-finite coefficients")
        arr = arr.astype(np.int64) if np.array_equal(arr, np.round(arr)) else arr.astype(np.float64)
    else:
        arr = arr.astype(np.int64)
    arr = np.array(arr, copy=True)
    arr.setflags(write=False)
    return arr


def matmul_tensor(a: int, b: int, c: int) -> np.ndarray:
    """T of shape (a*b, b*c, c*a) with T[i*b+j, j*c+k, k*a+i] = 1, zeros elsewhere."""
    t = np.zeros((a * b, b * c, c * a), dtype=np.int64)
    i, j, k = np.meshgrid(np.arange(a), np.arange(b), np.arange(c), indexing="ij")
    t[i * b + j, j * c + k, k * a + i] = 1
    return t


def reconstruct(f: Factorization) -> np.ndarray:
    """einsum('ir,jr,kr->ijk', u, v, w): int64 for integer factors, else float64.

    Sums the rank-one terms over their nonzeros only (the factors are sparse), so
    even rank-990 factorizations take milliseconds.
    """
    dtype = np.int64 if all(x.dtype == np.int64 for x in f.factors) else np.float64
    u, v, w = (x.astype(dtype) for x in f.factors)
    out = np.zeros((u.shape[0], v.shape[0], w.shape[0]), dtype)
    for r in range(f.rank):
        iu, iv, iw = np.flatnonzero(u[:, r]), np.flatnonzero(v[:, r]), np.flatnonzero(w[:, r])
        out[np.ix_(iu, iv, iw)] += u[iu, r][:, None, None] * v[iv, r][None, :, None] * w[iw, r][None, None, :]
    return out


def check(f: Factorization) -> Factorization:
    """Verifies einsum('ir,jr,kr->ijk', u, v, w) == T; returns `f` or raises FactorizationError."""
    a, b, c = f.shape
    t = matmul_tensor(a, b, c)
    got = reconstruct(f)
    bad = np.argwhere(np.abs(got - t) > _CHECK_ATOL)
    if len(bad):
        first = tuple(int(x) for x in bad[0])
        raise FactorizationError(
            f"factorization {f.name!r} (rank {f.rank}) does not decompose the <{a},{b},{c}> matmul tensor: "
            f"{len(bad)} of {t.size} entries differ, first at {first}: got {got[first]:g}, expected {t[first]}")
    return f


def strassen() -> Factorization:
    """Strassen's algorithm: <2,2,2> in rank 7."""
    # Rows: A11 A12 A21 A22 (u), B11 B12 B21 B22 (v), C11 C21 C12 C22 (w: index k*2+i).
    u = [[1, 0, 1, 0, 1, -1, 0],
         [0, 0, 0, 0, 1, 0, 1],
         [0, 1, 0, 0, 0, 1, 0],
         [1, 1, 0, 1, 0, 0, -1]]
    v = [[1, 1, 0, -1, 0, 1, 0],
         [0, 0, 1, 0, 0, 1, 0],
         [0, 0, 0, 1, 0, 0, 1],
         [1, 0, -1, 0, 1, 0, 1]]
    w = [[1, 0, 0, 1, -1, 0, 1],   # C11 = M1 + M4 - M5 + M7
         [0, 1, 0, 1, 0, 0, 0],    # C21 = M2 + M4
         [0, 0, 1, 0, 1, 0, 0],    # C12 = M3 + M5
         [1, -1, 1, 0, 0, 1, 0]]   # C22 = M1 - M2 + M3 + M6
    return Factorization("strassen", (2, 2, 2), np.array(u), np.array(v), np.array(w))


def standard(a: int, b: int, c: int) -> Factorization:
    """The schoolbook algorithm: <a,b,c> in rank a*b*c (term (i, j, k) is A[i, j] B[j, k])."""
    u = np.zeros((a * b, a * b * c), np.int64)
    v = np.zeros((b * c, a * b * c), np.int64)
    w = np.zeros((c * a, a * b * c), np.int64)
    for r, (i, j, k) in enumerate(np.ndindex(a, b, c)):
        u[i * b + j, r] = v[j * c + k, r] = w[k * a + i, r] = 1
    return Factorization(f"standard-{a}x{b}x{c}", (a, b, c), u, v, w)


def kronecker(f: Factorization, g: Factorization, name: str | None = None) -> Factorization:
    """The product factorization of <a1*a2, b1*b2, c1*c2> in rank R1*R2 (f on the outer blocks)."""
    (a1, b1, c1), (a2, b2, c2) = f.shape, g.shape
    r1, r2 = f.rank, g.rank

    def kron(x: np.ndarray, y: np.ndarray, p1: int, q1: int, p2: int, q2: int) -> np.ndarray:
        # x rows are p*q1 + q over (p1, q1); y likewise over (p2, q2); outer index p1*p2, inner q1*q2.
        out = np.einsum("pqr,stz->psqtrz", x.reshape(p1, q1, r1), y.reshape(p2, q2, r2))
        return out.reshape(p1 * p2 * q1 * q2, r1 * r2)

    u = kron(f.u, g.u, a1, b1, a2, b2)
    v = kron(f.v, g.v, b1, c1, b2, c2)
    w = kron(f.w, g.w, c1, a1, c2, a2)
    return Factorization(name or f"kron({f.name},{g.name})", (a1 * a2, b1 * b2, c1 * c2), u, v, w)


def strassen_squared() -> Factorization:
    """Strassen applied to itself: <4,4,4> in rank 49."""
    s = strassen()
    return kronecker(s, s, name="strassen-squared")


def _parse_shape(key: str) -> tuple[int, int, int]:
    """'a,b,c' or 'a,b,c-suffix' -> (a, b, c)."""
    head = key.split("-", 1)[0]
    try:
        dims = tuple(int(d) for d in head.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) <= 0:
        raise FactorizationError(f"factorization {key!r}: key must start with 'a,b,c' (three positive ints)")
    return dims  # type: ignore[return-value]


def from_published(key: str, raw: Any) -> Factorization:
    """A Factorization from one published entry: (3, n*n, R) array or object array of 3 arrays."""
    shape = _parse_shape(key)
    arr = np.asarray(raw)
    if arr.dtype == object:
        parts = list(arr.reshape(-1)) if arr.ndim else [arr.item()]
    elif arr.ndim == 3:
        parts = list(arr)
    else:
        raise FactorizationError(
            f"factorization {key!r}: expected an array of shape (3, rows, R) or an object array of three "
            f"factors, got shape {arr.shape} dtype {arr.dtype}")
    if len(parts) != 3:
        raise FactorizationError(f"factorization {key!r}: wrong number of factors: got {len(parts)}, expected 3 (u, v, w)")
    return Factorization(key, shape, *parts)


def _group_keys(files: list[str]) -> dict[str, list[str]]:
    """Entry name -> npz keys: one published key, or 'name/u', 'name/v', 'name/w'."""
    groups: dict[str, list[str]] = {}
    for k in files:
        name, sep, part = k.rpartition("/")
        if sep and part in FACTOR_NAMES:
            groups.setdefault(name, []).append(k)
        else:
            groups.setdefault(k, []).append(k)
    return groups


def load(path: PathLike, key: str | None = None, *, allow_pickle: bool = True
         ) -> Union[dict[str, Factorization], Factorization]:
    """Loads factorizations from an .npz file; every one is `check`ed before it is returned.

    Reads the published files (``factorizations_r.npz``, ``factorizations_hardware.npz``;
    keys "a,b,c" or "a,b,c-<suffix>") and the split format of the shipped file
    (int arrays "<key>/u", "<key>/v", "<key>/w"). Returns dict name -> Factorization,
    or the one Factorization for `key`.

    The published non-square entries are object arrays, which numpy stores as pickles:
    they need ``allow_pickle=True`` (the default here), and unpickling can run code, so
    load only files you trust; pass ``allow_pickle=False`` for files in the split format.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no AlphaTensor factorization file at {os.fspath(path)!r}")
    with np.load(path, allow_pickle=allow_pickle) as npz:
        groups = _group_keys(list(npz.files))
        if key is not None and key not in groups:
            raise UnknownFactorizationError(
                f"no factorization {key!r} in {os.fspath(path)!r}; valid keys: {', '.join(_sorted_keys(groups))}")
        wanted = _sorted_keys(groups) if key is None else [key]
        out = {name: check(_read_entry(npz, name, groups[name], allow_pickle)) for name in wanted}
    return out if key is None else out[key]


def _sorted_keys(groups: dict[str, Any]) -> list[str]:
    def order(k: str) -> tuple:
        try:
            return (0, _parse_shape(k), k)
        except FactorizationError:
            return (1, (), k)
    return sorted(groups, key=order)


def _read_entry(npz: Any, name: str, keys: list[str], allow_pickle: bool) -> Factorization:
    try:
        if keys == [name]:
            return from_published(name, npz[name])
        parts = {k.rpartition("/")[2]: npz[k] for k in keys}
    except FactorizationError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e) and not allow_pickle:
            raise FactorizationError(
                f"factorization {name!r} is stored as an object array (pickle); load it with allow_pickle=True "
                "if you trust the file") from None
        raise
    missing = [p for p in FACTOR_NAMES if p not in parts]
    if missing:
        raise FactorizationError(
            f"factorization {name!r}: wrong number of factors: has {', '.join(sorted(parts))}, missing {', '.join(missing)}")
    return Factorization(name, _parse_shape(name), parts["u"], parts["v"], parts["w"])


@functools.cache
def _suite_factorizations() -> dict[str, Factorization]:
    resource = importlib.resources.files(__package__ or "workloads").joinpath("data", SUITE_DATA)
    with importlib.resources.as_file(resource) as path:
        return load(path, allow_pickle=False)  # type: ignore[return-value]


def suite_factorization(key: str) -> Factorization:
    """A published factorization shipped with the suite (keys: SUITE_KEYS), checked on load."""
    facts = _suite_factorizations()
    if key not in facts:
        raise UnknownFactorizationError(f"no shipped factorization {key!r}; valid keys: {', '.join(facts)}")
    return facts[key]


def _combine(terms: list[tuple[float, Any]]) -> Any:
    """sum(coef * x), skipping zeros; coefficient 1 adds and -1 subtracts without a multiply."""
    acc = None
    for coef, x in terms:
        if coef == 0:
            continue
        if acc is None:
            acc = x if coef == 1 else -x if coef == -1 else coef * x
        elif coef == 1:
            acc = acc + x
        elif coef == -1:
            acc = acc - x
        else:
            acc = acc + coef * x
    return acc


def _nonzeros(x: np.ndarray) -> list[list[tuple[int, float | int]]]:
    """For each row of `x`, its nonzero (column, coefficient) pairs.

    Coefficients are Python scalars: weakly typed in JAX, they keep the matrices' dtype.
    """
    out = []
    for row in x:
        cols = np.flatnonzero(row)
        out.append([(int(j), int(row[j]) if float(row[j]).is_integer() else float(row[j])) for j in cols])
    return out


def to_program(f: Factorization, precision: Any = jax.lax.Precision.HIGHEST) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """fn(A, B) = A @ B computed with f's R block products.

    A (M, K) is split into a x b blocks, B (K, N) into b x c; M, K, N must be
    divisible by a, b, c. Term r, under ``jax.named_scope(f"term{r}")``, computes
    m_r = (u-weighted sum of A blocks) @ (v-weighted sum of B blocks); C block (i, k)
    is the w-weighted sum of the m_r. Zero coefficients are skipped.

    The program is meant for jax.numpy (and jit). Given two numpy arrays it runs the
    same block algorithm with numpy operations instead, a fast eager path used to
    test large factorizations (tens of thousands of block additions) in little time.
    """
    a, b, c = f.shape
    u_cols, v_cols = _nonzeros(f.u.T), _nonzeros(f.v.T)  # term r -> [(row, coefficient)]
    w_rows = _nonzeros(f.w)  # row k*a+i (block C[i, k]) -> [(term, coefficient)]
    used = {r for terms in w_rows for r, _ in terms}

    def program(A: jax.Array, B: jax.Array) -> jax.Array:
        (M, K), (K2, N) = A.shape, B.shape
        if K != K2:
            raise ValueError(f"cannot multiply {A.shape} by {B.shape}")
        if M % a or K % b or N % c:
            raise ValueError(f"factorization {f.name!r} {f.shape} needs M % {a}, K % {b}, N % {c} == 0; "
                             f"got A {A.shape}, B {B.shape}")
        xp = np if isinstance(A, np.ndarray) and isinstance(B, np.ndarray) else jnp
        matmul = np.matmul if xp is np else functools.partial(jnp.matmul, precision=precision)
        bm, bk, bn = M // a, K // b, N // c
        # Blocks by factor row: A[i, j] is u row i*b+j, B[j, k] is v row j*c+k.
        a_blk = [A[i * bm:(i + 1) * bm, j * bk:(j + 1) * bk] for i in range(a) for j in range(b)]
        b_blk = [B[j * bk:(j + 1) * bk, k * bn:(k + 1) * bn] for j in range(b) for k in range(c)]
        products: dict[int, Any] = {}
        for r in range(f.rank):
            if r not in used or not u_cols[r] or not v_cols[r]:
                continue  # the term is zero or unused
            with jax.named_scope(f"term{r}"):
                left = _combine([(coef, a_blk[row]) for row, coef in u_cols[r]])
                right = _combine([(coef, b_blk[row]) for row, coef in v_cols[r]])
                products[r] = matmul(left, right)
        dtype = xp.result_type(A, B)
        rows = []
        for i in range(a):
            row = []
            for k in range(c):
                blk = _combine([(coef, products[r]) for r, coef in w_rows[k * a + i] if r in products])
                row.append(xp.zeros((bm, bn), dtype) if blk is None else blk)
            rows.append(row)
        return xp.block(rows)

    program.__name__ = program.__qualname__ = "alphatensor_" + "".join(ch if ch.isalnum() else "_" for ch in f.name)
    return program


# --- the suite -----------------------------------------------------------------------------

# Size (workloads.SIZES) -> (target side, block alignment). small and medium take about 3x and 10x
# the time of ci per call on a 2-core CPU (for calibration); full is the accelerator size.
_TARGET = {"ci": (256, 8), "small": (384, 8), "medium": (640, 16), "full": (8192, 128)}


def _dims(shape: tuple[int, int, int], size: str) -> tuple[int, int, int]:
    """(M, K, N) near the size's target, each divisible into aligned blocks of the grid."""
    target, align = _TARGET[size]
    return tuple(max(1, round(target / (d * align))) * d * align for d in shape)  # type: ignore[return-value]


def _builder(make: Callable[[], Factorization]) -> Callable[..., tuple[Callable[..., Any], tuple[Any, ...]]]:
    def build(size: str, abstract: bool = False) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """`(program, (A, B))` at `size`: A (M, K), B (K, N) float32 (shapes only if `abstract`)."""
        f = make()
        m, k, n = _dims(f.shape, size)
        if abstract:
            return to_program(f), (jax.ShapeDtypeStruct((m, k), jnp.float32), jax.ShapeDtypeStruct((k, n), jnp.float32))
        ka, kb = jax.random.split(jax.random.key(0))
        args = (jax.random.normal(ka, (m, k), jnp.float32), jax.random.normal(kb, (k, n), jnp.float32))
        return to_program(f), args
    return build


def _describe(what: str, shape: tuple[int, int, int], rank: int) -> str:
    dims = ", ".join(f"{s} {'x'.join(map(str, _dims(shape, s)))}" for s in SIZES)
    return f"{what}: <{shape[0]},{shape[1]},{shape[2]}> block matmul in {rank} products (M x K x N {dims})"


register("alphatensor-strassen", FAMILY, _describe("Strassen", (2, 2, 2), 7))(_builder(strassen))
register("alphatensor-strassen-squared", FAMILY, _describe("Strassen squared", (4, 4, 4), 49))(
    _builder(strassen_squared))
register("alphatensor-4x4-gpu-v100", FAMILY, _describe("AlphaTensor, tailored to V100 (published)", (4, 4, 4), 49))(
    _builder(lambda: suite_factorization("4,4,4-gpu-v100")))
register("alphatensor-4x4-tpu-v2", FAMILY, _describe("AlphaTensor, tailored to TPU v2 (published)", (4, 4, 4), 49))(
    _builder(lambda: suite_factorization("4,4,4-tpu-v2")))
register("alphatensor-3x4x5", FAMILY, _describe("AlphaTensor (published)", (3, 4, 5), 47))(
    _builder(lambda: suite_factorization("3,4,5")))
