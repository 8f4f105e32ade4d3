# Two commands set everything up on a fresh machine (Python >= 3.9 with venv):
#   make demo   -- the main job on the bundled demo cluster snapshot
#   make test   -- the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PLUGIN := $(VENV)/bin/kubectl-cpumodel
DEMO := examples/demo-cluster

.PHONY: demo test dist bench clean

$(VENV)/.installed: setup.cfg pyproject.toml requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e .
	touch $@

demo: $(VENV)/.installed
	$(PLUGIN) common -f $(DEMO)
	@echo
	$(PLUGIN) diff hv-01 hv-04 -f $(DEMO)
	@echo
	$(PLUGIN) why-not vm/db-1 -f $(DEMO)
	@echo
	$(PLUGIN) why-not vm/web-1 hv-01 -f $(DEMO)
	@echo
	$(PLUGIN) drain-check hv-03 -f $(DEMO)
	@echo
	$(PLUGIN) drain-check --all -f $(DEMO)
	@echo
	$(PLUGIN) audit -A -f $(DEMO)
	@echo
	$(PLUGIN) set --cluster Skylake-Server-IBRS --dry-run=client -f $(DEMO)

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2

clean:
	rm -rf $(VENV) build dist man *.egg-info

dist: $(VENV)/.installed
	$(PY) tools/build_dist.py

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py
