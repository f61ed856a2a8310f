"""Re-extract the instance files of stored runs with the current extraction (same programs, new op figures).

An instance is derived from the compiled program; when the extraction's accounting changes (e.g. the bytes a
dynamic slice or an in-place update touches), the instances of earlier runs can be brought up to date without
measuring again. The program is rebuilt from its workload and size, compiled, extracted, and must have the same
ops (names, in order) as the stored instance, else the file is left as it was and the mismatch reported.

    python scripts/reextract_instances.py RESULTS RUN_ID [RUN_ID ...]
"""

import sys
from pathlib import Path

import workloads
from harness.device.realization import extract_linked
from harness.results import artifacts, store
from harness.xla.instance import Instance


def reextract(root: str, run_id: str) -> tuple[int, list[str]]:
    """(files rewritten, mismatches) for the instance files of `run_id`'s measurements."""
    frame = store.read("measurements", root, run_ids=[run_id])
    done, mismatches = 0, []
    for row in frame.drop_duplicates("instance_file").to_dict("records"):
        old = Instance.from_json(artifacts.read_text(root, row["instance_file"]))
        fn, args = workloads.get(row["workload"]).build(row["size"])
        new, _, _ = extract_linked(fn, args, old.name)
        if [op.name for op in new.ops] != [op.name for op in old.ops]:
            mismatches.append(f"{row['workload']}/{row['size']}: the compiled program's ops differ")
            continue
        artifacts.write_text(Path(root) / row["instance_file"], new.to_json(), root)
        done += 1
    return done, mismatches


if __name__ == "__main__":
    for run in sys.argv[2:]:
        n, bad = reextract(sys.argv[1], run)
        print(f"{run}: {n} instance files rewritten; {len(bad)} left: {bad}")
