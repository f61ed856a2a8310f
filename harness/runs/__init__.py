"""The run stage: the suite's extraction, the cells of a run (nightly or measure), calibration of a
profile on measured cells, and the history of runs with its regressions."""

from harness.runs.calibration import Calibration, CalibrationError, calibrate, points_from_store
from harness.runs.cells import Cell, RunSpec, load_run, make_spec, mark_fastest, pending, plan, run_local, run_ray
from harness.runs.history import compare, nightly_history, regressions
from harness.runs.programs import Program, load_program

__all__ = ["Calibration", "CalibrationError", "Cell", "Program", "RunSpec", "calibrate", "compare", "load_program",
           "load_run", "make_spec", "mark_fastest", "nightly_history", "pending", "plan", "points_from_store",
           "regressions", "run_local", "run_ray"]
