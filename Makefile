# Two commands for a fresh clone: `make demo` and `make test`.
# Both create the virtualenv if needed and (re)install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SRCORE_SHARED ?= ../shared
export SRCORE_SHARED

.PHONY: venv test demo lint

venv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing srcore and its dependencies into $(VENV) ..."
	@$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@$(BIN)/python -c "import srcore, torch; print('srcore', srcore.__version__, '| torch', torch.__version__)"

test: venv
	$(BIN)/python -m pytest -q

demo: venv
	$(BIN)/python jobs/demo.py --out demo-out

lint: venv
	$(BIN)/ruff check .
