"""The report stage: tables, plots and the HTML page of a run, and memory-map pictures."""

from harness.report.build import build_report, headline_table, write_index
from harness.report.memory_map import plot_memory_map

__all__ = ["build_report", "headline_table", "plot_memory_map", "write_index"]
