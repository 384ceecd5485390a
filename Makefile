# pipeline-studio: `make run` serves the app, `make test` runs every test. Both set up what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
TEST_ENV := GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: run test bench bench-deps space system system-test browser setup dev clean

run: setup system
	GRADIO_ANALYTICS_ENABLED=False $(PY) app.py $(ARGS)

test: dev system-test browser
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

bench: dev system-test bench-deps
	$(TEST_ENV) $(PY) bench/run_all.py

# The speed peer (faster-whisper) for bench/long_audio_cpu.py: into build/bench-site, never the venv,
# so the app's runtime never sees it; their other needs (numpy, tokenizers, onnxruntime) are already there.
bench-deps: build/bench-site/.installed
build/bench-site/.installed: requirements-bench.txt | $(PY)
	$(PIP) install --no-deps --upgrade --target build/bench-site -r requirements-bench.txt
	touch $@

space: setup
	$(PY) spaces/build.py $(if $(HARDWARE),--hardware $(HARDWARE))

setup: $(VENV)/.runtime-installed
dev: $(VENV)/.dev-installed

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: a CPU wheel; anything looser pulls a multi-GB CUDA build.
$(VENV)/.runtime-installed: requirements.txt | $(PY)
	$(PIP) install "torch==2.13.0"
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	$(PIP) install -r requirements-dev.txt
	touch $@

system:
	@scripts/system-deps.sh run

system-test:
	@scripts/system-deps.sh test

# Debian's chromium where it exists; otherwise Playwright's own build.
browser: $(VENV)/.dev-installed
	@[ -x /usr/bin/chromium ] || [ -f $(VENV)/.playwright-chromium ] || \
		($(PY) -m playwright install chromium && touch $(VENV)/.playwright-chromium)

clean:
	rm -rf $(VENV) .pytest_cache build
