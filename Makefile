# `make demo` and `make test` create .venv on first use (Python 3.10, the pinned
# TFX 1.16 stack from requirements.lock), then run.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed

# Python 3.10: $PYTHON310, python3.10 on PATH, or any pyenv 3.10.x (the pyenv
# shim alone fails unless PYENV_VERSION is set, so it is checked by running it).
PYTHON310 ?= $(shell for p in python3.10 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.10.*/bin/python3.10 \
  $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10.*/bin/python3.10 2>/dev/null) /usr/bin/python3.10 /usr/local/bin/python3.10; do \
  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo "$$p"; break; }; done)

.PHONY: demo test venv lock clean which-python chromium

which-python:
	@echo "$(PYTHON310)"

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it or set PYTHON310=/path/to/python3.10" >&2; exit 1; }
	@echo "creating $(VENV) with $(PYTHON310) (first use: about 5 minutes)"
	rm -rf $(VENV)
	"$(PYTHON310)" -m venv $(VENV)
	# wheel and setuptools first, so source packages build as wheels, not setup.py install
	$(VENV)/bin/pip install --quiet --no-deps $$(grep -E '^(wheel|setuptools)==' requirements.lock)
	$(VENV)/bin/pip install --quiet --no-deps -r requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/aitm run

test: $(STAMP) chromium
	$(VENV)/bin/python -m pytest -v -rs --durations=15 -n auto --dist loadgroup

# The report tests render the HTML report in Debian's chromium: installed here when
# this is root on a machine with apt-get, else make stops before the suite saying how.
CHROMIUM ?= chromium
AS_ROOT ?= $(shell [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && echo yes)
chromium:
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { \
	  if [ "$(AS_ROOT)" = yes ]; then \
	    echo "installing Debian's chromium (the report tests render the HTML report in it)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq chromium; \
	  else \
	    echo "make test needs Chromium for the report tests; install it, then run make test again:" >&2; \
	    echo "  sudo apt-get install chromium" >&2; exit 1; \
	  fi; }

# Re-resolve requirements.in into requirements.lock (needs uv: pip install uv).
lock:
	uv pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock

clean:
	rm -rf runs
