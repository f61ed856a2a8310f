"""The run stage: the suite's extraction, the cells of a run (nightly or measure), calibration of a
profile on measured cells, and the history of runs with its regressions."""

from harness.runs.calibration import (Calibration, CalibrationError, OpPoint, calibrate, op_points_from_store,
                                     points_from_store)
from harness.runs.cells import Cell, RunSpec, load_run, make_spec, mark_fastest, pending, plan, run_local, run_ray
from harness.runs.history import compare, nightly_history, regressions
from harness.runs.op_times import OpTimesSpec, run_op_times
from harness.runs.programs import Program, load_program

__all__ = ["Calibration", "CalibrationError", "Cell", "OpPoint", "OpTimesSpec", "Program", "RunSpec", "calibrate",
           "compare", "load_program", "load_run", "make_spec", "mark_fastest", "nightly_history", "op_points_from_store",
           "pending", "plan", "points_from_store", "regressions", "run_local", "run_op_times", "run_ray"]
