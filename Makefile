# mlpipe — two commands: `make run` (train the reference model through Airflow) and `make test`.
# Everything runs from ./.venv and keeps its state under ./.state (both ignored by git).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := $(CURDIR)/.venv
STATE := $(CURDIR)/.state
BIN := $(VENV)/bin
PIPELINE ?= loan_default
ROWS ?= 1000000
SEED ?= 7
TEST_WORKERS ?= 2
# make run DATA_URI=<CSV/Parquet file or folder of parts>: train on other data (the data_uri trigger option)
DATA_URI ?=
RUN_CONF = $(if $(DATA_URI),--conf '{"data_uri": "$(DATA_URI)"}')

# The embedded defaults: Airflow on SQLite, MLflow on SQLite + local artifacts, a local artifact store.
export AIRFLOW_HOME := $(STATE)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(STATE)/airflow/airflow.db
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS := admin:admin
export MLPIPE_STORE := file://$(STATE)/store
export MLFLOW_TRACKING_URI := sqlite:///$(STATE)/mlflow/mlflow.db
export MLPIPE_MLFLOW_ARTIFACTS := file://$(STATE)/mlflow/artifacts
export MLPIPE_OPTUNA_DIR := $(STATE)/optuna
export PATH := $(BIN):$(PATH)
# Podman reads the project's settings for building images and playing pods (images/podman/containers.conf).
export CONTAINERS_CONF ?= $(CURDIR)/images/podman/containers.conf
# The PII hash key is a secret: generated once per machine into .state, never in code or git.
PII_KEY = MLPIPE_PII_KEY="$$(cat $(STATE)/pii.key)"

.PHONY: help venv init env run monitor synth ui test test-celery test-containers images lint bench bench-scale bench-load lock clean

help:
	@echo "make run    create .venv, set up .state, run the $(PIPELINE) training DAG through Airflow, print a summary"
	@echo "make test   lint + the whole test suite (unit, DAG integrity, end-to-end Airflow runs)"
	@echo "make monitor  score the default batch with the champion, then run the monitoring DAG (after make run)"
	@echo "make synth ROWS=1000000   write that many synthetic loans to .state/synth/<ROWS>/ (Parquet parts);"
	@echo "            then  make run DATA_URI=file://$(STATE)/synth/<ROWS>  trains on them"
	@echo "make images   build the task, task-gpu and airflow images with podman (or ENGINE=docker); print sizes"
	@echo "make test-containers   every step of the three DAGs as its pod, played by podman (after make images)"
	@echo "make test-celery   only the Celery stack tests (real Postgres, Redis, S3, MLflow server, Airflow)"
	@echo "make ui     Airflow UI on http://localhost:8080 and MLflow UI on http://localhost:5000"
	@echo "make bench  benchmarks: orchestration overhead, DAG parse time, training vs raw xgboost.train, serving,"
	@echo "            batch scoring vs raw inplace_predict, tuning (TPE vs random), Dask vs single-node,"
	@echo "            drift detection on planted shifts and monitoring a 1M-row window (~25 min)"
	@echo "make bench-scale   the training DAG's steps at 10k/100k/1M/10M synthetic rows: time, peak RSS (~15 min)"
	@echo "make bench-load    the model server under 5 min of steady load, champion reloaded halfway: failures,"
	@echo "            p50/p99 latency, RSS after warm-up/max/end (~7 min)"
	@echo "make lock   re-resolve requirements.in into requirements.lock"
	@echo 'eval "$$(make -s env)"   puts this shell in the same environment (airflow, mlpipe, mlflow commands)'

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

env: init
	@for name in AIRFLOW_HOME AIRFLOW__CORE__DAGS_FOLDER AIRFLOW__CORE__PLUGINS_FOLDER AIRFLOW__CORE__LOAD_EXAMPLES \
	  AIRFLOW__DATABASE__SQL_ALCHEMY_CONN AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS MLPIPE_STORE \
	  MLFLOW_TRACKING_URI MLPIPE_MLFLOW_ARTIFACTS MLPIPE_OPTUNA_DIR PATH; do echo "export $$name='$${!name}'"; done
	@echo "export MLPIPE_PII_KEY=\"\$$(cat $(STATE)/pii.key)\""

lock:
	$(BIN)/uv pip compile requirements.in --python-version 3.11 --no-header -o requirements.lock

$(STATE)/pii.key:
	mkdir -p $(STATE) && umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_hex(32))" > $@

$(STATE)/airflow/airflow.db: | venv
	mkdir -p $(STATE)/airflow $(STATE)/mlflow $(STATE)/store
	airflow db migrate > $(STATE)/airflow/db-migrate.log

init: venv $(STATE)/pii.key $(STATE)/airflow/airflow.db

run: init
	@$(PII_KEY) mlpipe profile --keep dags/pipelines/$(PIPELINE).yaml
	$(PII_KEY) airflow dags test $(PIPELINE)_training $(RUN_CONF) > $(STATE)/last-run.log 2>&1 \
	  || { summary="$$(mlpipe summary --latest $(PIPELINE) 2>/dev/null)" || true; \
	       if [[ "$$summary" == *FAILED* ]]; then echo "$$summary"; else tail -n 60 $(STATE)/last-run.log; fi; \
	       echo "The DAG run failed: full log in $(STATE)/last-run.log"; exit 1; }
	@mlpipe summary --latest $(PIPELINE)
	@echo
	@echo "Look at it:  make ui   then  Airflow http://localhost:8080 (admin, password in"
	@echo "             $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)  and  MLflow http://localhost:5000"

monitor: init
	$(PII_KEY) airflow dags test $(PIPELINE)_scoring > $(STATE)/last-scoring.log 2>&1 \
	  || { tail -n 40 $(STATE)/last-scoring.log; echo "Scoring failed (is there a champion? make run first)"; exit 1; }
	$(PII_KEY) airflow dags test $(PIPELINE)_monitoring > $(STATE)/last-monitoring.log 2>&1 \
	  || { tail -n 40 $(STATE)/last-monitoring.log; echo "Monitoring failed: $(STATE)/last-monitoring.log"; exit 1; }
	@mlpipe summary --latest $(PIPELINE) --kind scoring
	@mlpipe summary --latest $(PIPELINE) --kind monitoring

synth: venv
	mlpipe synth --rows $(ROWS) --seed $(SEED) --output file://$(STATE)/synth/$(ROWS)
	@echo "Train on them:  make run DATA_URI=file://$(STATE)/synth/$(ROWS)"

ui: init
	@echo "Airflow: http://localhost:8080   MLflow: http://localhost:5000   (Ctrl-C stops both)"
	trap 'kill 0' EXIT; \
	mlflow server --backend-store-uri $(MLFLOW_TRACKING_URI) --default-artifact-root $(MLPIPE_MLFLOW_ARTIFACTS) \
	  --host 127.0.0.1 --port 5000 > $(STATE)/mlflow-ui.log 2>&1 & \
	$(PII_KEY) airflow standalone

# ruff; hadolint on the Dockerfiles; import-linter: the package's layers (pyproject.toml [tool.importlinter]).
lint: venv
	ruff check plugins dags tests
	hadolint images/*/Dockerfile
	lint-imports --no-cache

images:
	images/build.sh

# Test files run on TEST_WORKERS processes (a file's tests stay on one, sharing its fixtures); the 25
# slowest tests are listed at the end. The container tests need the images, so they are built first.
test: lint images
	pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

# Every step of the three DAGs as the pod the kubernetes runtime builds, played by podman (tests/containers/).
test-containers: venv images
	pytest -q -m containers

test-celery: venv
	pytest -q -s -m celery

bench: init
	$(PII_KEY) python tests/benchmarks/bench_dag.py
	$(PII_KEY) python tests/benchmarks/bench_train.py
	$(PII_KEY) python tests/benchmarks/bench_serving.py
	python tests/benchmarks/bench_score.py
	python tests/benchmarks/bench_tune.py
	python tests/benchmarks/bench_dask.py
	python tests/benchmarks/bench_monitor.py
	$(PII_KEY) python tests/benchmarks/bench_seeds.py

bench-scale: init
	python tests/benchmarks/bench_scale.py

bench-load: init
	python tests/benchmarks/bench_load.py

clean:
	rm -rf $(STATE)
