#!/usr/bin/env bash
# Everything only a GPU can show, in one command on one H100/H200 (under 8 minutes of device time):
# the ci suite solved by xla-msa, cpsat and mallocmuzero at budget 0.5 on the GPU's offload profile,
# realized and measured (xla-native the floor), per-op times, calibration of the offload side and the
# report, under results/device/<device>/.  `scripts/device_check.sh --dry-run` on any machine prints the
# plan and checks the cuda export of every mapping the run would realize.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
exec "$PYTHON" -c 'import sys; from harness.cli.main import main; sys.exit(main())' device-check "$@"
