"""Writes workloads/data/alphatensor_suite.npz and its NOTICE.md from the published AlphaTensor files.

The suite's published factorizations (workloads.alphatensor.SUITE_KEYS) are copied
out of a local copy of the published files (factorizations_r.npz and
factorizations_hardware.npz), checked, and stored without pickles as int8 arrays
"<key>/u", "<key>/v", "<key>/w" so that the suite works from a fresh clone.

    python scripts/make_alphatensor_data.py [--published ../shared/data/alphatensor]
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workloads import alphatensor  # noqa: E402

SOURCES = ("factorizations_r.npz", "factorizations_hardware.npz")
OUT_DIR = REPO / "workloads" / "data"

NOTICE = """\
# AlphaTensor factorizations shipped with mallocbench

`alphatensor_suite.npz` holds the published matrix-multiplication tensor factorizations
that the `alphatensor` workloads use: {keys}.

Source: Fawzi, A. et al., "Discovering faster matrix multiplication
algorithms with reinforcement learning", Nature 610, 47-53 (2022),
https://doi.org/10.1038/s41586-022-05172-4; repository
https://github.com/google-deepmind/alphatensor.

- {r_keys}: from `algorithms/factorizations_r.npz`, licensed under CC BY 4.0
  (https://creativecommons.org/licenses/by/4.0/).
- {hw_keys}: the hardware-tailored <4,4,4> rank-49 factorizations from
  `benchmarking/factorizations.py`, licensed under the Apache License 2.0
  (https://www.apache.org/licenses/LICENSE-2.0).

Changes: the factors are stored unchanged in value, as separate int8 arrays `<key>/u`,
`<key>/v`, `<key>/w` (no pickles) in the published convention: for key "a,b,c", u is
(a*b, R), v is (b*c, R), w is (c*a, R), and einsum('ir,jr,kr->ijk', u, v, w) equals the
tensor with T[i*b+j, j*c+k, k*a+i] = 1. `workloads.alphatensor` checks each one on load.
Written by `scripts/make_alphatensor_data.py`.
"""


def collect(published: Path) -> tuple[dict[str, alphatensor.Factorization], dict[str, str]]:
    """The suite's factorizations, loaded (and checked) from the published files, and their file names."""
    found: dict[str, alphatensor.Factorization] = {}
    origin: dict[str, str] = {}
    for source in SOURCES:
        path = published / source
        if not path.is_file():
            sys.exit(f"missing {path}: pass --published DIR, the folder holding {', '.join(SOURCES)}")
        with np.load(path, allow_pickle=True) as npz:
            keys = [k for k in alphatensor.SUITE_KEYS if k in npz.files]
        for key in keys:
            found[key] = alphatensor.load(path, key)  # type: ignore[assignment]
            origin[key] = source
    missing = [k for k in alphatensor.SUITE_KEYS if k not in found]
    if missing:
        sys.exit(f"keys {missing} not found in {published}")
    return found, origin


def to_arrays(facts: dict[str, alphatensor.Factorization]) -> dict[str, np.ndarray]:
    """"<key>/<factor>" -> int8 array; refuses coefficients that are not small integers."""
    arrays = {}
    for key, f in facts.items():
        for name, x in zip(alphatensor.FACTOR_NAMES, f.factors):
            small = x.astype(np.int8)
            if not np.array_equal(small, x):
                sys.exit(f"{key}/{name}: coefficients do not fit int8")
            arrays[f"{key}/{name}"] = small
    return arrays


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed, but byte-for-byte reproducible (fixed timestamps, sorted names)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=Path, default=REPO.parent / "shared" / "data" / "alphatensor",
                        help="folder with the published factorizations_r.npz and factorizations_hardware.npz "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)

    facts, origin = collect(args.published)
    arrays = to_arrays(facts)
    args.out.mkdir(parents=True, exist_ok=True)
    data_path = args.out / alphatensor.SUITE_DATA
    write_npz(data_path, arrays)

    # Round trip: the shipped file loads without pickles and equals the published entries.
    back = alphatensor.load(data_path, allow_pickle=False)
    assert back == facts, "round trip changed the factorizations"

    r_keys = [k for k in facts if origin[k] == "factorizations_r.npz"]
    hw_keys = [k for k in facts if origin[k] == "factorizations_hardware.npz"]
    notice = NOTICE.format(keys=", ".join(f"`{k}` (rank {facts[k].rank})" for k in facts),
                           r_keys=", ".join(f"`{k}`" for k in r_keys), hw_keys=", ".join(f"`{k}`" for k in hw_keys))
    (args.out / "NOTICE.md").write_text(notice)
    print(f"wrote {data_path} ({data_path.stat().st_size} bytes): {', '.join(facts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
