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

# Until the bucket job and the bundled default model land, the demo upscales a few real-world
# photos with the official Real-ESRGAN x4plus weights from the shared folder.
DEMO_MODEL ?= $(SRCORE_SHARED)/weights/RealESRGAN_x4plus.pth
DEMO_IMAGES ?= $(addprefix $(SRCORE_SHARED)/datasets/RealWorld/,Lincoln.png chip.png oldphoto2.png)

demo: venv
	@test -f "$(DEMO_MODEL)" || { echo "demo: $(DEMO_MODEL) not found; set SRCORE_SHARED or DEMO_MODEL=path/to/weights.pth"; exit 2; }
	$(BIN)/srcore models
	$(BIN)/srcore upscale $(DEMO_IMAGES) --model $(DEMO_MODEL) -o demo-out

lint: venv
	$(BIN)/ruff check .
