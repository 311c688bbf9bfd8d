# Pruning Explorer: `make run` starts the app on the embedded demo, `make test` runs every test.
# Both set themselves up on a fresh clone (virtual environment, pinned CPU torch, Chromium for tests).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
PORT ?= 8501
# Who may reach the app: 127.0.0.1 (this machine) unless HOST says otherwise; see the README's "Sharing the app".
HOST ?= 127.0.0.1
# Modules whose factories (package.module:function) the Model page may call, comma-separated; none by default.
FACTORIES ?= $(PRUNER_FACTORIES)
# The one folder a shared app (HOST beyond loopback) reads "Path on this machine" from; none: paths off.
PATHS ?= $(PRUNER_PATH_ROOT)
# Upload limit in MB: 1024 on loopback; a shared app accepts at most 200 (pruner_core.frontends.serving.SHARED_UPLOAD_MB).
UPLOAD_MB ?= $(if $(filter 127.% localhost ::1,$(HOST)),1024,200)
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.test-installed

.PHONY: run test test-core test-pages test-e2e bench lint chromium train-demo clean screenshots

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first, pinned, so the local CPU wheel is used and nothing pulls a CUDA build.
$(INSTALLED): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e . $(TORCH)
	touch $@

$(TEST_INSTALLED): $(INSTALLED)
	$(PY) -m pip install --quiet -e '.[test,mlflow]' $(TORCH)
	touch $@

run: $(INSTALLED)
	PRUNER_FACTORIES='$(FACTORIES)' PRUNER_PATH_ROOT='$(PATHS)' $(PY) -m streamlit run app.py \
		--server.address $(HOST) --server.port $(PORT) --server.headless true --server.maxUploadSize $(UPLOAD_MB)

chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Debian's Chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null; \
	else \
		echo "The browser tests need Chromium: install it (Debian/Ubuntu: sudo apt-get install chromium) and run make test again"; \
		exit 1; \
	fi

test: $(TEST_INSTALLED) chromium
	$(PY) -m ruff check .
	$(PY) -m pytest tests

test-core: $(TEST_INSTALLED)
	$(PY) -m pytest tests/core

test-pages: $(TEST_INSTALLED)
	$(PY) -m pytest tests/pages

test-e2e: $(TEST_INSTALLED) chromium
	$(PY) -m pytest tests/e2e

bench: $(TEST_INSTALLED) chromium  # the UI benchmarks drive Chromium with Playwright (a test extra)
	$(PY) bench/run.py $(if $(ONLY),--only $(ONLY))

# The README tour's screenshots: made by the browser tests (test-output/e2e/), copied into assets/screenshots/.
TOUR := model-page inspect-page sensitivity-page prune-page compare-page graph-page
screenshots: $(TEST_INSTALLED) chromium
	$(PY) -m pytest tests/e2e
	for name in $(TOUR); do cp test-output/e2e/$$name.png assets/screenshots/$$name.png; done

lint: $(TEST_INSTALLED)
	$(PY) -m ruff check .

# Re-make the embedded demo (committed; only needed to reproduce it).
train-demo: $(INSTALLED)
	$(PY) -m pip install --quiet -e '.[data]' $(TORCH)
	$(PY) scripts/make_mnist5k.py
	$(VENV)/bin/pruner train-demo

clean:
	rm -rf $(VENV) test-output .pytest_cache
