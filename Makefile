# nola — see README.md. Every target works on a fresh machine with Go.
GO      ?= go
PKGS    := ./...
# Packages whose tests run real goroutines: they also run under -race.
RACE_PKGS := ./rt/... ./registry/... ./nola/... ./faultinject/... ./httpapi/... ./wasm/... ./sim/... ./linearizability/... ./cmd/...

.PHONY: test test-race vet lint bench soak run run-embedded sim-long guests clean FORCE

test: vet test-race
	$(GO) test -count=1 -timeout 25m $(PKGS)

test-race:
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

lint: vet

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./bench/...

# make soak [SOAK=10m] [SOAK_EVERY=10s]: one nola serve on an embedded etcd
# under steady load (counter + kvcounter, 128 actors, 32 callers); samples
# RSS, Go heap, goroutines, fds, etcd db and WAL size, and fails if any keeps
# growing after warm-up (see docs/operations.md).
SOAK       ?= 10m
SOAK_EVERY ?= 10s
soak: bin/nola
	$(GO) run ./bench/soak -nola bin/nola -duration $(SOAK) -every $(SOAK_EVERY)

# make run: build nola, start `nola serve` on an embedded etcd, upload the
# counter WASM module, call two actors, leave the server running.
run: bin/nola
	./examples/demo.sh

# Three servers embedded in one Go process (the embedding API, no etcd).
run-embedded:
	$(GO) run ./examples/cluster

bin/nola: FORCE
	$(GO) build -o bin/nola ./cmd/nola

FORCE:

# Many more simulation seeds than go test runs, with progress (see sim/README.md):
# make sim-long SEEDS=100000 [START=1] [MUTATIONS=SkipStoreFence]
SEEDS ?= 10000
START ?= 1
sim-long:
	$(GO) run ./sim/cmd/nolasim -seeds $(SEEDS) -start $(START) $(if $(MUTATIONS),-mutations $(MUTATIONS))

# C guests of the WASM host (wasm/guests/c): rebuild the committed .wasm files
# from source with clang and lld. .ci/run checks that this reproduces them.
# Go guests need no target: tests build them with the Go toolchain.
CLANG        ?= clang
GUEST_CFLAGS := --target=wasm32 -O2 -mbulk-memory -nostdlib -Wl,--no-entry \
                -Wl,--stack-first -Wl,-z,stack-size=16384
guests:
	@for src in wasm/guests/c/*.c; do \
		echo "$(CLANG) $(GUEST_CFLAGS) -o $${src%.c}.wasm $$src"; \
		$(CLANG) $(GUEST_CFLAGS) -o $${src%.c}.wasm $$src || exit 1; \
	done

clean:
	rm -rf bin nola-data
