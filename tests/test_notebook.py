"""The paper_figures notebook, executed on a real small store: it finds the newest nightly run, rebuilds the
report's tables and figures, and runs on this interpreter's kernel."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from report_fixtures import nightly_runs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return nightly_runs(tmp_path_factory)


def test_the_notebook_rebuilds_the_figures_of_the_newest_nightly_run(run, tmp_path):
    import nbclient
    import nbformat

    root, _, newest = run
    notebook = nbformat.read(REPO / "notebooks" / "paper_figures.ipynb", as_version=4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    assert "RESULTS = " in parameters.source and "RUN_ID = None" in parameters.source
    parameters.source = f"RESULTS = {root!r}\nRUN_ID = None\nFIGURES = {str(tmp_path)!r}"
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print('kernel python:', sys.executable)"))
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) >= 3
    text = "".join(o.get("text", "") for o in outputs)
    assert f"run {newest}:" in text and f"figure files in {tmp_path}" in text
    assert f"kernel python: {sys.executable}\n" in text
    assert {"speedup.png", "speedup.svg", "predicted_vs_measured.png"} <= {p.name for p in tmp_path.iterdir()}
