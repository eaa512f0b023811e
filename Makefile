# prezero: the README's commands. Everything here runs as root on a Debian 12 host with Swift.
PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift

.PHONY: all deps build release test demo bench bench-libvirt bench-launch clean

all: build

deps:
	scripts/deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --static-swift-stdlib

# The tests need real huge pages (1 GiB pages first); they are given back afterwards.
# Then the multi-node scenarios in fake-NUMA guests (2 and 4 nodes), on the release binaries.
test: deps
	$(SWIFT) build --build-tests
	scripts/hugepages.sh reserve 2 512
	status=0; $(SWIFT) test --skip-build || status=$$?; scripts/hugepages.sh restore; exit $$status
	$(MAKE) numa NUMA_SCRATCH=.build

# Multi-node NUMA checks: a QEMU (TCG) guest with 2, then 4 fake nodes runs the release
# binaries (Tests/numa/README.md). Its own release build, so it never races a build in .build.
NUMA_SCRATCH ?= .build-numa
.PHONY: numa
numa: deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(NUMA_SCRATCH)
	PREZERO_NUMA_BIN=$(NUMA_SCRATCH)/release scripts/numa.sh 2
	PREZERO_NUMA_BIN=$(NUMA_SCRATCH)/release scripts/numa.sh 4

# The main job: a private prezerod on a temporary hugetlbfs mount, filled, a claim, and the hand-over ratio.
demo: release
	scripts/demo.sh

bench: release
	scripts/hugepages.sh reserve 0 4096
	status=0; .build/release/prezero bench pool $(BENCH_ARGS) || status=$$?; scripts/hugepages.sh restore; exit $$status

# libvirt starts: stock <hugepages/> against a hand-over (BENCH_SIZE GiB, default 8), on a private setup.
bench-libvirt: release
	scripts/bench-libvirt.sh $(BENCH_ARGS)

# QEMU started directly: a fresh file against prezero launch (BENCH_SIZE GiB, default 8).
bench-launch: release
	scripts/bench-launch.sh $(BENCH_ARGS)

clean:
	rm -rf .build
