"""The device stage: a mapping realized as a runnable program, timed on the local device,
and the fastest of several candidates selected by measurement."""

from harness.device.placements import check_export
from harness.device.realization import NATIVE, Realized, RealizeReport, extract_linked, realize
from harness.device.selection import Selection, select
from harness.device.timing import Measurement, environment, measure

__all__ = ["NATIVE", "Measurement", "Realized", "RealizeReport", "Selection", "check_export", "environment",
           "extract_linked", "measure", "realize", "select"]
