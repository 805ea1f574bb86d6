# Two commands for a newcomer:  `make up` (demo cluster)  and  `make test`.
# Each creates the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build of torch, installed before the package so nothing pulls a CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: up test lint venv clean images test-docker

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_CPU)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

up: $(BIN)/.installed
	$(BIN)/parm up $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -m "not docker" --cov --cov-report=term-missing $(PYTEST_ARGS)

# parm's images (frontend, model on CPU, Prometheus; PARM_GPU=1 adds the CUDA model) with
# the classic builder, from local bases where Docker Hub cannot be reached.  Needs an engine:
# `deploy/engine/engine.sh start` starts one (as root) where none answers.
images:
	deploy/engine/engine.sh images

# The real-engine tests (marker `docker`): an engine is started where none answers (and
# stopped afterwards, only if this target started it), the images are built, and the
# compose stack, `parm deploy docker` and Prometheus run for real on CPU.
test-docker: $(BIN)/.installed
	deploy/engine/engine.sh start
	status=0; deploy/engine/engine.sh images && \
		$(BIN)/python -m pytest -m docker $(PYTEST_ARGS) || status=$$?; \
		deploy/engine/engine.sh stop; exit $$status

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage
