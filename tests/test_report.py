"""The report of a real small nightly run: tables and their figures, plots, the HTML page in a real browser,
measured speedups, a corrupt run, bad run ids and the index over runs."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import GRID, nightly_runs

from harness.runs import history as regressions
from harness.report import build as report
from harness.results import store
from harness.cli.main import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return nightly_runs(tmp_path_factory)


def _report(root, run_id, out=None):
    past = regressions.nightly_history(root, store.read_manifest(run_id, root))
    return report.build_report(run_id, root, out, history=past, regressions=regressions.regressions(past))


def test_tables_hold_the_figures_of_the_cells(run):
    root, _, run_id = run
    paths = _report(root, run_id)
    out = paths["dir"]
    cells = store.read("cells", root, run_ids=[run_id])
    sim = {(r.workload, r.policy, None if math.isnan(r.budget) else r.budget): r.simulated_s for r in cells.itertuples()}
    table = pd.read_csv(out / "simulated-budget-0.5.csv", index_col="workload")
    for w in GRID["workload_names"]:
        assert table.loc[w, "xla-msa (s)"] == pytest.approx(sim[w, "xla-msa", 0.5])
        assert table.loc[w, "cpsat (s)"] == pytest.approx(sim[w, "cpsat", 0.5])
        assert table.loc[w, "all-fast (s)"] == pytest.approx(sim[w, "all-fast", None])
    # The figures' arithmetic is checked on hand-made cells below; here, what the policies' order implies:
    # all-fast <= cpsat <= xla-msa <= all-slow, so cpsat captures a share in [0, 1] and all-slow none; a
    # workload with less than report.ROOM of room above xla-msa has no share ("-", read back as NaN).
    for row in ["geometric mean", *GRID["workload_names"]]:
        assert float(table.loc[row, "cpsat speedup"]) >= 1 - 1e-9
        assert float(table.loc[row, "all-slow speedup"]) <= 1 + 1e-9
        if row != "geometric mean":
            room = 1 - sim[row, "all-fast", None] / sim[row, "xla-msa", 0.5]
            assert math.isnan(float(table.loc[row, "cpsat captured"])) == (room <= report.ROOM)
            if room <= report.ROOM:
                continue
        assert -1e-9 <= float(table.loc[row, "cpsat captured"]) <= 1 + 1e-9
        assert float(table.loc[row, "all-slow captured"]) <= 1e-9
    assert table.loc["matmul-chain", "first-fit (s)"] == "failed"                       # a failed cell says so
    assert set(table.index) == {*GRID["workload_names"], "geometric mean"}
    alphatensor = pd.read_csv(out / "alphatensor-simulated-budget-0.5.csv", index_col="workload")
    assert set(alphatensor.index) == {"alphatensor-strassen", "geometric mean"}
    measured = pd.read_csv(out / "measured-budget-0.5.csv", index_col="workload")
    native = {r.workload: r.median_s for r in cells[cells.policy == "xla-native"].itertuples()}
    assert measured.loc["matmul-chain", "xla-native (s)"] == pytest.approx(native["matmul-chain"])
    tex = (out / "simulated-budget-0.5.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "failed" in tex
    md = (out / "simulated-budget-0.5.md").read_text()
    assert "| matmul-chain |" in md and "failed" in md
    names = {p.name for p in paths["plots"]}
    for stem in ("speedup", "predicted_vs_measured", "history"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert any(n.startswith("memory_map-") for n in names)
    assert all(p.stat().st_size > 1000 for p in paths["plots"])
    html = paths["html"].read_text()
    assert "first-fit exploded" in html and run_id in html


def _cells(simulated: dict, optimal: tuple = ()) -> pd.DataFrame:
    """Cells of simulated seconds {(workload, policy): s}, all ok at budget 0.5 (all-fast unbudgeted)."""
    return pd.DataFrame([{"workload": w, "policy": p, "budget": math.nan if p == "all-fast" else 0.5,
                          "simulated_s": s, "status": "ok", "optimal": (w, p) in optimal}
                         for (w, p), s in simulated.items()])


def test_speedups_and_shares_captured_by_hand():
    cells = _cells({
        ("a", "xla-msa"): 12.0, ("a", "cpsat"): 6.0, ("a", "all-slow"): 16.0, ("a", "all-fast"): 4.0,
        ("b", "xla-msa"): 24.0, ("b", "cpsat"): 3.0, ("b", "all-slow"): 30.0, ("b", "all-fast"): 2.0,
        # no room to improve: all-fast within 0.1% of xla-msa, so no share here, nor in the total
        ("c", "xla-msa"): 5.0, ("c", "cpsat"): 5.0, ("c", "all-slow"): 5.0, ("c", "all-fast"): 4.999,
    }, optimal={("a", "cpsat")})
    table = report.simulated_table(cells, 0.5)
    expected = {  # (cpsat speedup, cpsat captured, all-slow speedup, all-slow captured)
        "a": (2.0, 6 / 8, 0.75, -4 / 8),
        "b": (8.0, 21 / 22, 0.8, -6 / 22),
        "c": (1.0, math.nan, 1.0, math.nan),
        # geometric means of the speedups; total shares (6 + 21) / (8 + 22) and (-4 - 6) / (8 + 22)
        "geometric mean": (16 ** (1 / 3), 0.9, 0.6 ** (1 / 3), -1 / 3),
    }
    columns = ["cpsat speedup", "cpsat captured", "all-slow speedup", "all-slow captured"]
    for row, values in expected.items():
        got = [float(table.loc[row, c]) for c in columns]
        assert got == pytest.approx(list(values), nan_ok=True), row
    assert table.loc["a", "optimum (s)"] == 6.0 and math.isnan(table.loc["b", "optimum (s)"])


def test_headline_is_the_geometric_mean_speedup_per_policy_and_budget(run):
    root, _, run_id = run
    cells = store.read("cells", root, run_ids=[run_id])
    head = report.headline_table(cells).set_index("policy")
    table = report.simulated_table(cells, 0.25)
    assert head.loc["cpsat", "speedup @ 0.25"] == pytest.approx(table.loc["geometric mean", "cpsat speedup"])
    assert head.loc["cpsat", "speedup @ 0.25"] >= 1 - 1e-9          # warm-started with xla-msa: never worse
    assert head.loc["cpsat", "captured @ 0.25"] == pytest.approx(table.loc["geometric mean", "cpsat captured"])
    assert head.loc["xla-msa", "captured @ 0.25"] == 0 and head.loc["all-fast", "captured @ 0.25"] == 1
    assert "xla-native" not in head.index                            # measured only: no simulated speedup
    assert head.loc["first-fit", "failed"] == 2 and head.loc["xla-msa", "ok"] == 4


def test_a_regression_in_the_history_is_on_the_page(run, tmp_path):
    root, first, second = run

    def worse(rows):
        rows.loc[rows.policy == "xla-msa", "simulated_s"] *= 1.5                  # the simulator got worse

    copy = tmp_path / "results"
    third = _copy_run(root, second, copy, worse)
    paths = _report(str(copy), third)
    assert paths["regressions_found"] == 4
    assert "simulated" in paths["html"].read_text().split('id="regressions"')[1][:3000]


def _copy_run(root: str, run_id: str, copy: Path, change) -> str:
    """A new run in a copy of the store: the cells of `run_id` after `change(rows)`; returns its id."""
    shutil.copytree(root, copy)
    meta = {k: v for k, v in store.read_manifest(run_id, root).items()
            if k not in ("run_id", "started", "status", "finished", "schema_version")}
    new = store.start_run(meta, str(copy))
    rows = store.read("cells", str(copy), run_ids=[run_id]).drop(columns=["run_id", "schema_version"])
    change(rows)
    for row in rows.to_dict("records"):
        store.append("cells", [row], new, str(copy), key=f"cell-{row['cell']:05d}")
    return new


def test_measured_speedups_and_the_simulators_accuracy_on_the_runs_own_cells(run, tmp_path):
    root, _, second = run
    faked = {"all-slow": 2.0, "cpsat": 1.25}              # measured time relative to xla-native's

    def measure(rows):
        native = rows[rows.policy == "xla-native"].set_index("workload").median_s
        for policy, factor in faked.items():
            mine = (rows.policy == policy) & (rows.status == "ok")
            rows.loc[mine, "median_s"] = rows.loc[mine, "workload"].map(native).to_numpy() * factor

    copy = tmp_path / "results"
    third = _copy_run(root, second, copy, measure)
    paths = report.build_report(third, str(copy))
    cells = store.read("cells", str(copy), run_ids=[third])
    table = pd.read_csv(paths["dir"] / "measured-budget-0.5.csv", index_col="workload")
    for policy, factor in faked.items():
        for w in GRID["workload_names"]:
            assert float(table.loc[w, f"{policy} speedup"]) == pytest.approx(1 / factor)
        assert float(table.loc["geometric mean", f"{policy} speedup"]) == pytest.approx(1 / factor)
    assert "first-fit (s)" not in table                    # never measured, so not a column
    points = cells[cells.median_s.notna() & (cells.status == "ok")]
    assert len(points) == 2 + 4 * len(faked)                # xla-native, and each faked policy at 2 budgets
    accuracy = report.prediction_accuracy(cells)
    error = np.abs(points.simulated_s - points.median_s) / points.median_s
    assert accuracy["n_points"] == len(points) and accuracy["mape"] == pytest.approx(error.mean())
    assert -1 <= accuracy["kendall_tau"] <= 1
    assert report.read_calibration(third, str(copy)) is None
    assert (paths["dir"] / "predicted_vs_measured.svg").stat().st_size > 1000


def test_a_corrupt_part_file_is_named_and_the_report_still_written(run, tmp_path):
    root, first, _ = run
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    victim = sorted((copy / "cells" / first).glob("part-*.parquet"))[0]
    victim.write_bytes(b"PAR1 garbage")
    with pytest.warns(UserWarning):
        paths = _report(str(copy), first)
    html = paths["html"].read_text()
    assert victim.name in html and "Problems reading this run" in html
    assert (copy / "corrupt" / "cells" / first / victim.name).exists()


def test_an_unknown_run_is_named(run, capsys):
    root, _, _ = run
    with pytest.raises(store.StoreError, match="no-such-run"):
        report.build_report("no-such-run", root)
    assert main(["report", "no-such-run", "--results", root]) == 2
    assert "no-such-run" in capsys.readouterr().err


def test_the_index_links_every_reported_run_and_names_a_bad_manifest(run, tmp_path):
    root, first, second = run
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    assert main(["report", first, "--results", str(copy)]) == 0
    assert main(["report", second, "--results", str(copy)]) == 0
    (copy / "runs" / first / "manifest.json").write_text("{ not json")
    index = report.write_index(str(copy)).read_text()
    assert f"{second}/index.html" in index and f"{first}/index.html" not in index
    assert "not a readable JSON manifest" in index
    elsewhere = report.write_index(str(copy), str(tmp_path / "site"))
    href = re.search(rf'href="([^"]*{second}/index.html)"', elsewhere.read_text()).group(1)
    assert (elsewhere.parent / href).resolve() == (copy / "reports" / second / "index.html").resolve()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_the_html_report_renders_in_headless_chromium_with_every_image_and_table(run, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: scripts/ensure_chromium.sh should have installed it")
        pytest.skip("chromium is not installed (make test installs it where it can)")
    root, _, run_id = run
    paths = _report(root, run_id, str(tmp_path / "report"))
    url = paths["html"].resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r'<body[^>]*data-images-loaded="(\d+)"[^>]*data-images-total="(\d+)"', dom)
    assert body, dom[:2000]
    loaded, total = map(int, body.groups())
    assert total == len([p for p in paths["plots"] if p.suffix == ".png"]) and loaded == total > 0
    sections = re.findall(r'<section class="table" id="([^"]+)">', dom)
    assert sorted(sections) == sorted(p.stem for p in paths["tables"] if p.suffix == ".csv")
    for table_id in ("manifest", "failures"):
        assert f'id="{table_id}"' in dom
    assert dom.count("<table") >= len(sections) + 3
    # the summary comes first: what ran, the headline, the speedup figure (loaded) and every table's formats
    assert re.search(r'data-summary-figure="loaded"', dom)
    summary = dom[dom.index('id="summary"'):dom.index('id="manifest"')]
    assert 'id="what-ran"' in summary and 'id="headline"' in summary and 'src="speedup.png"' in summary
    assert "cpsat" in summary and "xla-msa" in summary and "Simulated" in summary
    for name in sections:
        for fmt in ("md", "tex", "csv"):
            assert f'href="{name}.{fmt}"' in summary
    shot = tmp_path / "report.png"
    subprocess.run(["bash", str(REPO / "scripts" / "screenshot_report.sh"), str(paths["html"]), str(shot)],
                   check=True, timeout=120)
    assert shot.stat().st_size > 10_000
    artifacts = REPO / ".artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(shot, artifacts / "report.png")


def test_predicted_vs_measured_draws_the_per_op_points_of_a_calibration(tmp_path):
    import json as _json

    import pandas as _pd

    from harness.report.build import plot_predicted_vs_measured
    cells_frame = _pd.DataFrame({"status": ["ok", "ok"], "median_s": [1e-3, 2e-3], "simulated_s": [1.1e-3, 1.8e-3]})
    calibration = _json.loads(open("results/calibration/cpu-local.json").read())
    paths = plot_predicted_vs_measured(cells_frame, calibration, tmp_path)
    assert [p.name for p in paths][0].startswith("predicted_vs_measured") and all(p.stat().st_size for p in paths)
    assert calibration["op_n_points"] == calibration["per_op"]["fitted"]["n_points"] > 1000
    assert 0 < len(calibration["op_points_sample"]) <= 400
