# make demo : run the demo migration end to end    make test : run the test suite
# make airflow : the Airflow UI with the demo (standalone, login printed; Ctrl-C stops it)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PYTHONPATH := $(CURDIR)/plugins
export SODA_CORE_TELEMETRY_ENABLED := false

.PHONY: demo airflow test test-quick venv bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.txt -r requirements-dev.txt -c constraints.txt \
	  || $(VENV)/bin/pip install -q -r requirements.txt -r requirements-dev.txt -c constraints.txt
	touch $@

demo: venv
	$(PY) scripts/demo.py

airflow: venv
	$(PY) scripts/airflow_ui.py

# test processes (pytest-xdist; each runs whole test modules, with its own databases)
TEST_WORKERS ?= 2

test: venv
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

test-quick: venv  # for iteration only: without the end-to-end DAG runs (CI runs everything)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not e2e" tests

bench: venv
	$(PY) bench/bench_matching.py
	$(PY) bench/bench_dedupe_scale.py --contacts 100000

clean:
	rm -rf .airflow reports
