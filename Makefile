# vzlibvirt: every target installs what it needs, so a fresh Debian 12 machine (root) works.
# Packages are installed with services kept from starting (policy-rc.d exit 101): libvirtd,
# bird and frr run only where the lab and the tests start them, inside namespaces.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := libvirt-daemon libvirt-daemon-driver-lxc libvirt-daemon-driver-qemu \
	libvirt-clients libvirt-dev pkg-config gcc qemu-system-x86 busybox-static iproute2 \
	iputils-ping iputils-arping nftables libnftables1 python3-nftables dnsmasq-base tcpdump procps \
	iperf3 virtinst mmdebstrap openssh-client e2fsprogs ebtables iptables libvirt-daemon-config-nwfilter bird2 frr
PYTEST_ARGS ?=

.PHONY: deps venv test unit lint bench demo clean
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "== installing Debian packages: $$missing"; \
		guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then guard=/usr/sbin/policy-rc.d; \
			printf '#!/bin/sh\nexit 101\n' > $$guard; chmod 755 $$guard; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; rc=$$?; \
		if [ -n "$$guard" ]; then rm -f $$guard; fi; exit $$rc; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check vzlibvirt tests bench

unit: venv
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

test: venv lint
	$(VENV)/bin/pytest -q -ra $(PYTEST_ARGS)

bench: venv
	$(PY) bench/hook_cost.py

demo: venv
	$(VENV)/bin/vzlibvirt lab demo

clean:
	rm -rf $(VENV) build *.egg-info
