# The README's two commands: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SHARED_MNIST := ../shared/data/MNIST/raw
PROBE_DATA ?= $(HOME)/.cache/probe/data
export PROBE_DATA

.PHONY: demo test bench lint venv seed-data clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Offline machines: copy the verified MNIST archives next to us (if present) into the data root.
seed-data:
	@if [ -d "$(SHARED_MNIST)" ] && [ ! -f "$(PROBE_DATA)/MNIST/raw/t10k-labels-idx1-ubyte.gz" ]; then \
		mkdir -p "$(PROBE_DATA)/MNIST/raw" && cp $(SHARED_MNIST)/*.gz "$(PROBE_DATA)/MNIST/raw/"; \
		echo "seeded $(PROBE_DATA) from $(SHARED_MNIST)"; fi

demo: $(STAMP) seed-data
	$(VENV)/bin/probe demo

test: $(STAMP) seed-data
	$(PY) -m pytest -q

bench: $(STAMP) seed-data
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check hooks probe tests benchmarks
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .mypy_cache

# The 750-run study (not part of `make test`; ~15 min on 2 cores): the sweep, then the curve
# report with the group tests by class pair and by recurrent cell (docs/distributed.md).
.PHONY: study-750
STUDY ?= artifacts/study-750
study-750: $(STAMP)
	$(VENV)/bin/probe sweep configs/sweep-study-750.toml --out $(STUDY) --workers 2
	$(VENV)/bin/probe curve-report $(STUDY)/table.parquet --group pair --out $(STUDY)/report-pair
	$(VENV)/bin/probe curve-report $(STUDY)/table.parquet --group model --out $(STUDY)/report-model
