"""The run stage: the suite's extraction, the nightly's cells, calibration of a profile on
measured cells, and the history of runs with its regressions."""
