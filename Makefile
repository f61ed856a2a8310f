# The two set-up commands of the README: `make nightly` (the main job) and `make test`.
# Each creates .venv and installs the project with its dev extra when needed.
PYTHON ?= python3
VENV := .venv
# Test processes: one per core, at most 4 (each holds its own JAX and compiles its own programs).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
INSTALLED := $(VENV)/.installed

.PHONY: nightly test bench device-check clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

nightly: $(INSTALLED)
	$(VENV)/bin/mallocbench nightly --suite ci

test: $(INSTALLED)
	bash scripts/ensure_chromium.sh
	$(VENV)/bin/python -m pytest -q -n $(TEST_JOBS) --dist loadfile

bench: $(INSTALLED)
	mkdir -p .benchmarks
	$(VENV)/bin/python -m pytest -q -m "" tests/test_benchmarks.py tests/test_benchmarks_game.py tests/test_benchmarks_measure.py tests/test_benchmarks_agent.py tests/test_benchmarks_nightly.py tests/test_benchmarks_report.py \
		--benchmark-enable --benchmark-columns=min,median,max,rounds --benchmark-json=.benchmarks/latest.json

# On one H100/H200: everything only a GPU can show (scripts/device_check.sh; --dry-run on any machine).
device-check: $(INSTALLED)
	PYTHON=$(VENV)/bin/python bash scripts/device_check.sh

clean:
	rm -rf $(VENV) *.egg-info
