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

# Until the bucket job lands, the demo upscales a few real-world photos (from the shared folder, or
# DEMO_IMAGES) with the bundled default model (or DEMO_MODEL: a weights file or registered name).
DEMO_MODEL ?= srcore-compact-x4
DEMO_IMAGES ?= $(SRCORE_SHARED)/datasets/RealWorld

demo: venv
	@test -e "$(DEMO_IMAGES)" || { echo "demo: $(DEMO_IMAGES) not found; set SRCORE_SHARED or DEMO_IMAGES=images/"; exit 2; }
	$(BIN)/srcore models
	$(BIN)/srcore upscale $(DEMO_IMAGES) --model $(DEMO_MODEL) -o demo-out

lint: venv
	$(BIN)/ruff check .
