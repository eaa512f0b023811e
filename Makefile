# prezero: the README's commands. Everything here runs as root on a Debian 12 host with Swift.
PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift

.PHONY: all deps build release test stack-root stack-test sim mutants fuzz isolation hostile load soak demo bench bench-storm bench-bundle bench-libvirt bench-launch bench-reuse install install-files uninstall clean

all: build

deps:
	scripts/deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --static-swift-stdlib

# The tests need real huge pages (1 GiB pages first); they are given back afterwards.
# Where /dev/kvm works but libvirt's QEMU user cannot open it, it gets Debian's udev
# mode for the run and its own back after (`prezero lab run --kvm`); the tests pass under KVM
# and under TCG (PREZERO_ACCEL=tcg forces TCG).
# They include 200 cycles of the chaos soak (make soak runs 1000).
# Then the multi-node scenarios in fake-NUMA guests (2 and 4 nodes), on the release binaries,
# tenant isolation seen from inside a guest, the hostile tenants, and 30 s of libFuzzer on each
# parser of outside input. And the Debian package: built, lintian-clean, installed, used, purged.
# Then the libvirt and QEMU tests and the demo again, on the second stack (make stack-test).
# STACK=host runs the host's stack alone; STACK=backports the second stack's tests alone.
STACK ?= both
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) build --product generate-manual
ifneq ($(STACK),backports)
	SWIFT=$(SWIFT) scripts/swift-tests.sh
	$(MAKE) numa NUMA_SCRATCH=.build
	$(MAKE) deb-test
	$(MAKE) isolation
	$(MAKE) hostile
	$(MAKE) fuzz FUZZ_SECONDS=30
endif
ifneq ($(STACK),host)
	$(MAKE) stack-test
endif

# The stack production hosts run beside Debian 12's own (libvirt 9.0, QEMU 7.2): libvirt 11.3
# and QEMU 10.0 from bookworm-backports, in a Debian 12 root built from empty each time
# (scripts/stack.sh; the host's apt sources and packages are untouched). The libvirt and QEMU
# host suites run against it (STACK_SUITES: the hook, hand-over, lifecycles, shapes, 1 GiB pages,
# examples, the lab, migration), then the demo; prezerod stays on the host.
# Outside the project, which may lie under /tmp (bound into the root); removed after stack-test.
STACK_ROOT ?= /var/tmp/prezero-stack/root
STACK_SUITES ?= HostTests/(Libvirt|LibvirtCLI|LibvirtLifecycle|LibvirtShapes|GigaPages|Examples|LabRun|Migration|Bench)/
.PHONY: stack-root stack-test
stack-root:
	rm -rf $(STACK_ROOT)
	mkdir -p $(dir $(STACK_ROOT))
	scripts/stack.sh build $(STACK_ROOT)

stack-test: stack-root release
	$(SWIFT) build --build-tests
	status=0; \
	SWIFT=$(SWIFT) scripts/stack.sh run $(STACK_ROOT) -- scripts/swift-tests.sh --filter '$(STACK_SUITES)' || status=$$?; \
	[ $$status != 0 ] || scripts/stack.sh run $(STACK_ROOT) -- scripts/demo.sh || status=$$?; \
	rm -rf $(STACK_ROOT); exit $$status

# Multi-node NUMA checks: a QEMU (TCG) guest with 2, then 4 fake nodes runs the release
# binaries (Tests/numa/README.md). Its own release build, so it never races a build in .build.
NUMA_SCRATCH ?= .build-numa
.PHONY: numa
# The pool's state machine over the in-memory model: no root, no huge pages. `make test`
# runs 10,000 sequences; this runs SIM_SEQUENCES of them (from seed SIM_BASE).
SIM_SEQUENCES ?= 100000
SIM_BASE ?= 1
sim:
	$(SWIFT) build --build-tests
	SIM_SEQUENCES=$(SIM_SEQUENCES) SIM_BASE=$(SIM_BASE) $(SWIFT) test --skip-build --filter Simulation

# Six known pool bugs, injected one at a time: the simulation must catch each.
mutants:
	scripts/mutants.py --sequences $(or $(MUTANT_SEQUENCES),10000)

# Tenant isolation seen from inside a guest: A writes a marker over its memory, B boots
# on the same file once prezerod has scrubbed it and scans its RAM; a control on a file
# never scrubbed must show the marker (scripts/isolation.sh).
isolation: release
	scripts/isolation.sh

# Hostile tenants: a former tenant hides a reference to its pool file where no /proc scan sees
# it (a descriptor in flight, io_uring buffer and file, vmsplice, fork-hop, link race), through
# the socket and through prezero launch; it must read none of the next tenant's marker
# (scripts/hostile.sh, Tests/hostile/hostile.c; 64 huge pages of 2 MiB, given back after).
hostile: release
	scripts/hostile.sh

# One host test, its filter $(2), with the environment $(1), as make test runs it.
define on_hugepages
	$(SWIFT) build --build-tests
	$(1) SWIFT=$(SWIFT) scripts/swift-tests.sh --filter $(2)
endef

# 32 clients against prezerod beside idle, slow and hanging-up peers, LOAD_SECONDS long
# (default 60; make test runs the same test for 10 s). LOAD_ABUSE=0: the clients alone.
LOAD_SECONDS ?= 60
LOAD_ABUSE ?= 1
load: deps
	$(call on_hugepages,LOAD_SECONDS=$(LOAD_SECONDS) LOAD_ABUSE=$(LOAD_ABUSE),loadAndAbuse)

# The chaos soak: SOAK_CYCLES tenant turnovers (default 1000; make test runs 200) through
# the socket, the hook and prezero launch, with kill -9 of prezerod, QEMU and the launcher;
# SOAK_SEED repeats a run's tenants and kill aims (its seed is printed first; the timing is the machine's).
SOAK_CYCLES ?= 1000
SOAK_SEED ?=
soak: deps
	$(call on_hugepages,SOAK_CYCLES=$(SOAK_CYCLES) SOAK_SEED=$(SOAK_SEED),chaosSoak)

# libFuzzer over the parsers of outside input (FUZZ_SECONDS each, default 30); see scripts/fuzz.sh.
fuzz: deps
	scripts/fuzz.sh

numa: deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(NUMA_SCRATCH)
	PREZERO_NUMA_BIN=$(NUMA_SCRATCH)/release scripts/numa.sh 2
	PREZERO_NUMA_BIN=$(NUMA_SCRATCH)/release scripts/numa.sh 4

# The main job: a private prezerod on a temporary hugetlbfs mount, filled, a claim, and the hand-over ratio.
demo: release
	scripts/demo.sh

# The pool bench (prezero-bench pool): fill with 1 and N workers beside 1 and N files fallocated
# on the node, recycle, hand-over, fill budget; 8 GiB of 2 MiB pages unless BENCH_ARGS says.
bench: release
	.build/release/prezero lab run --reserve 2M:4096 -- .build/release/prezero-bench pool $(BENCH_ARGS)

# A boot storm (prezero-bench storm): 32 claims of 256 MiB at once, then 32 releases, beside
# 32 VMs preallocating at once; BENCH_ARGS as prezero-bench --help says.
bench-storm: release
	.build/release/prezero lab run --reserve 2M:4096 -- .build/release/prezero-bench storm $(BENCH_ARGS)

# The benches for a machine with nothing installed (no Swift, libvirt, QEMU or network):
# the static prezero-bench and scripts/bench-bundle/run.sh in .build/prezero-bench-bundle.tar.gz.
# There: tar xzf it, then sudo OUT=DIR bench-bundle/run.sh (under 8 minutes; JSON per bench in DIR).
bench-bundle: release
	rm -rf .build/bench-bundle && mkdir -p .build/bench-bundle
	cp .build/release/prezero-bench scripts/bench-bundle/run.sh .build/bench-bundle/
	strip .build/bench-bundle/prezero-bench
	tar -C .build -czf .build/prezero-bench-bundle.tar.gz bench-bundle
	@ls -l .build/prezero-bench-bundle.tar.gz

# libvirt starts: stock <hugepages/> against a hand-over (BENCH_SIZE GiB, default 8), on a private setup.
bench-libvirt: release
	scripts/bench-libvirt.sh $(BENCH_ARGS)

# QEMU started directly: a fresh file against prezero launch (BENCH_SIZE GiB, default 8).
bench-launch: release
	scripts/bench-launch.sh $(BENCH_ARGS)

# Release to reuse (a 64 MiB file back in clean/), quiet and with 2000 idle processes of
# 8 threads and 64 descriptors each; medians of 10 and their ratio.
bench-reuse: release
	scripts/bench-reuse.sh

# Installing like a real tool: binaries, the libvirt hook, systemd units, completions, docs.
# PREFIX (default /usr/local) and DESTDIR as usual; the hook and the config go under
# $(DESTDIR)/etc. An existing /etc/prezero/prezerod.yaml is never overwritten.
BIN ?= .build/release
SYSTEMD_DIR ?= $(PREFIX)/lib/systemd/system
install: release install-files

# Man pages: prezero(8), every subcommand a section of it, and prezerod(8), from the commands' own
# help (swift-argument-parser's generate-manual, run on the binaries in BIN); prezero-hook(8)
# and prezerod.yaml(5) are written by hand in docs/man (a test checks they name every key).
# The tool is built beside BIN, in BIN's configuration, only when missing: `make test` builds it
# before the tests, which run `make install-files` while swift test holds the build directory.
MAN_DIR ?= .build/man
GENERATE_MANUAL ?= $(BIN)/generate-manual
.PHONY: man
man:
	[ -x $(GENERATE_MANUAL) ] || $(SWIFT) build $(if $(findstring release,$(BIN)),-c release) --product generate-manual
	rm -rf $(MAN_DIR) && mkdir -p $(MAN_DIR)
	gm=$(GENERATE_MANUAL); day=$$(git log -1 --format=%cs 2>/dev/null || date +%F); \
		$$gm $(BIN)/prezero --section 8 --date $$day --authors "the prezero developers" -o $(MAN_DIR) && \
		$$gm $(BIN)/prezerod --section 8 --date $$day --authors "the prezero developers" -o $(MAN_DIR)
	# A blank line in help text is a paragraph break, which mdoc spells .Pp.
	sed -i 's/^$$/.Pp/' $(MAN_DIR)/prezero.8 $(MAN_DIR)/prezerod.8
	cp docs/man/prezero-hook.8 docs/man/prezerod.yaml.5 $(MAN_DIR)/

install-files: man
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/libexec/prezero \
		$(DESTDIR)/etc/prezero $(DESTDIR)$(SYSTEMD_DIR) \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/doc/prezero $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 644 $(MAN_DIR)/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 $(MAN_DIR)/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 755 $(BIN)/prezerod $(DESTDIR)$(PREFIX)/sbin/prezerod
	install -m 755 $(BIN)/prezero $(DESTDIR)$(PREFIX)/bin/prezero
	install -m 755 $(BIN)/prezero-hook $(DESTDIR)$(PREFIX)/libexec/prezero/prezero-hook
	install -m 755 $(BIN)/prezero-bench $(DESTDIR)$(PREFIX)/libexec/prezero/prezero-bench
	sed 's|/usr/local/sbin/prezerod|$(PREFIX)/sbin/prezerod|; s|/usr/local/share/doc|$(PREFIX)/share/doc|' \
		examples/systemd/prezerod.service > $(DESTDIR)$(SYSTEMD_DIR)/prezerod.service
	sed 's|/usr/local/share/doc|$(PREFIX)/share/doc|' examples/systemd/prezero.slice > $(DESTDIR)$(SYSTEMD_DIR)/prezero.slice
	chmod 644 $(DESTDIR)$(SYSTEMD_DIR)/prezerod.service $(DESTDIR)$(SYSTEMD_DIR)/prezero.slice
	$(BIN)/prezero --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/prezero
	$(BIN)/prezero --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_prezero
	install -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/prezero/README.md
	[ -e $(DESTDIR)/etc/prezero/prezerod.yaml ] || install -m 644 examples/prezerod.yaml $(DESTDIR)/etc/prezero/prezerod.yaml
	# The hook and hook.conf as `prezero install` lays them out (its defaults are the one place for those paths).
	$(BIN)/prezero install --root "$(DESTDIR)" --hook $(BIN)/prezero-hook
	@echo "installed under $(DESTDIR)$(PREFIX); restart libvirtd so that it finds the hook"

# A Debian package of the release binaries, from a staged make install (scripts/deb.sh), then
# checked with lintian: no error and no warning; each override is explained in packaging/lintian-overrides.
.PHONY: deb
deb: release
	rm -rf .build/deb && scripts/deb.sh .build/deb
	lintian --fail-on error,warning .build/deb/prezero_*_amd64.deb

# The package on this machine: installed, a libvirt start handed over by its binaries and its
# hook, removed and purged; the file lists of /etc, /usr and /var/lib must be as before.
.PHONY: deb-test
deb-test: deb
	scripts/deb-test.sh .build/deb/prezero_*_amd64.deb

uninstall:
	if [ -x $(DESTDIR)$(PREFIX)/bin/prezero ]; then $(DESTDIR)$(PREFIX)/bin/prezero install --uninstall --root "$(DESTDIR)"; \
	else rm -f $(DESTDIR)/etc/libvirt/hooks/qemu.d/prezero; fi
	rm -f $(DESTDIR)$(PREFIX)/sbin/prezerod $(DESTDIR)$(PREFIX)/bin/prezero $(DESTDIR)$(PREFIX)/libexec/prezero/prezero-hook \
		$(DESTDIR)$(PREFIX)/libexec/prezero/prezero-bench $(DESTDIR)$(SYSTEMD_DIR)/prezerod.service $(DESTDIR)$(SYSTEMD_DIR)/prezero.slice \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/prezero $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_prezero \
		$(DESTDIR)$(PREFIX)/share/doc/prezero/README.md $(DESTDIR)$(PREFIX)/share/man/man5/prezerod.yaml.5
	rm -f $(DESTDIR)$(PREFIX)/share/man/man8/prezero.8 \
		$(DESTDIR)$(PREFIX)/share/man/man8/prezerod.8 $(DESTDIR)$(PREFIX)/share/man/man8/prezero-hook.8
	-rmdir $(DESTDIR)$(PREFIX)/libexec/prezero $(DESTDIR)$(PREFIX)/share/doc/prezero 2>/dev/null
	@echo "removed; /etc/prezero is kept"

clean:
	rm -rf .build .build-numa
