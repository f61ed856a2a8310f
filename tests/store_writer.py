"""A writer process for tests/test_store.py: appends measurement files to a started run in a loop.

Usage: store_writer.py ROOT RUN_ID WRITER APPENDS ROWS_PER_FILE [--wait]
Prints "ready", with --wait reads one line of stdin before writing, then after every append() returns prints
the number of appends committed so far. APPENDS 0 means forever. Row k of append n has seq = n and row = k.
"""

import pathlib
import sys
import types


def _import_store():
    """`harness.results.store` without running `harness/__init__.py`, which imports JAX and the compiler
    modules the store does not use: a writer starts in under a second instead of about four, and what it runs
    is the same `store.append`."""
    harness = types.ModuleType("harness")
    harness.__path__ = [str(pathlib.Path(__file__).resolve().parent.parent / "harness")]
    sys.modules.setdefault("harness", harness)
    from harness.results import store
    return store


store = _import_store()


def main() -> None:
    root, run_id, writer, appends, rows_per_file = sys.argv[1:6]
    print("ready", flush=True)
    if "--wait" in sys.argv[6:]:
        sys.stdin.readline()
    n = 0
    while int(appends) == 0 or n < int(appends):
        rows = [{"workload": "mlp", "size": "ci", "policy": "all-slow", "budget": None, "status": "ok",
                 "error": "", "median_s": 1e-3 * (n + 1), "samples": [1e-3 * (n + 1)] * 3,
                 "writer": writer, "seq": n, "row": k} for k in range(int(rows_per_file))]
        store.append("measurements", rows, run_id, root=root)
        n += 1
        print(n, flush=True)


if __name__ == "__main__":
    main()
