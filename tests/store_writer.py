"""A writer process for tests/test_store.py: appends measurement files to a started run in a loop.

Usage: store_writer.py ROOT RUN_ID WRITER APPENDS ROWS_PER_FILE [--wait]
Prints "ready", with --wait reads one line of stdin before writing, then after every append() returns prints
the number of appends committed so far. APPENDS 0 means forever. Row k of append n has seq = n and row = k.
"""

import sys

from harness.results import store


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
