# The two entry points of the README. Each sets up its own venv on a fresh clone.
PY ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: demo test testbeds venv clean-demo

$(STAMP): pyproject.toml requirements.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python bin/cis490-spool demo

# the test beds' Debian packages first: installed when root, else one line naming them
testbeds:
	@scripts/testbed-packages

# lint first ([tool.ruff] in pyproject.toml), so CI fails on a lint error; then the suite,
# which ends with its 20 slowest tests (to keep CI time in view)
test: testbeds $(STAMP)
	$(VENV)/bin/ruff check . bin/cis490-spool
	$(VENV)/bin/python -m pytest -q --durations=20 tests

clean-demo:
	rm -rf spool/* demo-data reports
