# nola — see README.md. Every target works on a fresh machine with Go.
GO      ?= go
PKGS    := ./...
# Packages whose tests run real goroutines: they also run under -race.
RACE_PKGS := ./rt/... ./registry/... ./nola/... ./faultinject/... ./httpapi/... ./wasm/... ./sim/... ./linearizability/... ./cmd/... ./internal/race

.PHONY: test test-race vet lint bench soak run run-embedded sim-long model guests clean fuzz jepsen jepsen-short jepsen-embedded jepsen-mutations FORCE

test: vet test-race
	$(GO) test -count=1 -timeout 25m $(PKGS)
	$(MAKE) jepsen-short

test-race:
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

# make lint: go.mod tidy, gofmt, go vet and staticcheck at a pinned version
# (fetched through the module proxy on first use).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint: vet
	$(GO) mod tidy -diff
	$(GO) run $(STATICCHECK) $(PKGS)

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

# jepsen-lite (see cmd/jepsen-lite/README.md): real etcd and nola processes
# on this machine under real faults, checked by porcupine, a lost-write
# check and the execution-trace activation oracle. Exit 0 only if every
# checker passed.
# make jepsen-short: one 45 s run, every nemesis, ≤ 90 s wall (in make test).
JEPSEN_SEED ?= 1
jepsen-short:
	$(GO) run ./cmd/jepsen-lite --seed $(JEPSEN_SEED) --duration 45s --out jepsen-out/short
# make jepsen [JEPSEN_RUNS=5] [JEPSEN_DURATION=120s]: the long suite, every
# nemesis, JEPSEN_RUNS runs on a 3-member etcd then JEPSEN_RUNS on a
# 5-member etcd, a summary table after each.
# 120 s histories of a hot map key with many indeterminate puts can take
# porcupine more than the default 20 s on a loaded machine (an Unknown
# fails the run): the long suite gives it 60 s.
JEPSEN_RUNS     ?= 5
JEPSEN_DURATION ?= 120s
JEPSEN_LONG     := --seed $(JEPSEN_SEED) --runs $(JEPSEN_RUNS) --duration $(JEPSEN_DURATION) --check-budget 60s
jepsen:
	$(GO) run ./cmd/jepsen-lite $(JEPSEN_LONG) --etcd-members 3 --out jepsen-out/long-3
	$(GO) run ./cmd/jepsen-lite $(JEPSEN_LONG) --etcd-members 5 --servers 5 --out jepsen-out/long-5
	$(GO) run ./cmd/jepsen-lite $(JEPSEN_LONG) --embedded --out jepsen-out/long-embedded
# make jepsen-embedded: one nola serve on its embedded etcd, kill -9 and
# restart on the same data directory; no acknowledged write may be lost.
jepsen-embedded:
	$(GO) run ./cmd/jepsen-lite --seed $(JEPSEN_SEED) --duration 45s --embedded --fault-gap 4s --out jepsen-out/embedded
# make jepsen-mutations: every protocol mutation must be caught (a FAIL
# verdict) within JEPSEN_MUT_RUNS runs; the target fails if one is not.
JEPSEN_MUT_RUNS ?= 3
JEPSEN_MUTATIONS ?= SkipStoreFence IgnoreIncarnation SkipDeadlineCheck TimerIgnoresFence DeleteSkipsGeneration
# the lease nemeses: the faults that make a server outlive its lease
JEPSEN_MUT_NEMESES ?= stall-etcd,pause,partition-etcd
# SkipStoreFence needs a late commit that lands after a new owner wrote and
# a reader that sees the store afterwards: the stale-owner rounds, alone.
# DeleteSkipsGeneration needs no fault: the deletion workload exposes it.
JEPSEN_FENCE_NEMESES ?= stale-owner
# The tool runs as a binary, not through go run: go run turns every
# non-zero exit into 1, and only 1 (a checker found a violation) means
# caught — 2 is a run that could not be set up, 3 a check that failed
# without finding anything (a porcupine budget that ran out): not a catch.
jepsen-mutations:
	$(GO) build -o bin/jepsen-lite ./cmd/jepsen-lite
	@set -e; for m in $(JEPSEN_MUTATIONS); do \
	  nem=$(JEPSEN_MUT_NEMESES); gap=6s; \
	  if [ $$m = SkipStoreFence ]; then nem=$(JEPSEN_FENCE_NEMESES); gap=4s; fi; \
	  if [ $$m = DeleteSkipsGeneration ]; then nem=none; fi; \
	  rc=0; bin/jepsen-lite --seed $(JEPSEN_SEED) --runs $(JEPSEN_MUT_RUNS) --stop-on-fail --duration 45s --nemeses $$nem --fault-gap $$gap --unsafe-mutation $$m --out jepsen-out/mutation-$$m || rc=$$?; \
	  if [ $$rc -ne 1 ]; then echo "jepsen-mutations: $$m NOT caught (exit $$rc)"; exit 1; fi; \
	  echo "jepsen-mutations: $$m caught"; \
	done

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

# The protocol model (see model/README.md): each mutation's shortest
# counterexample as a numbered trace, then every scope explored
# exhaustively (progress on stderr; reachability, liveness, final table).
# make model [SCOPE=2x1]
SCOPE ?=
model:
	$(GO) run ./model/cmd/nolamodel -mutations
	$(GO) run ./model/cmd/nolamodel $(if $(SCOPE),-scope $(SCOPE))

# Every fuzz target of the module, FUZZTIME each (their seed corpora run as
# ordinary tests in make test): make fuzz [FUZZTIME=5m] [FUZZ=FuzzUnpack]
FUZZTIME ?= 1m
FUZZ     ?= .
fuzz:
	@$(GO) test -list '^Fuzz' $(PKGS) 2>/dev/null | awk '/^Fuzz/ {f[n++]=$$1} /^ok/ {for (i=0;i<n;i++) print $$2, f[i]; n=0}' | \
	while read pkg target; do \
		echo "$$target" | grep -Eq -- '$(FUZZ)' || continue; \
		echo "== $$pkg $$target ($(FUZZTIME))"; \
		out=$$($(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$pkg" 2>&1); st=$$?; \
		echo "$$out" | tail -4; [ $$st = 0 ] || exit 1; \
	done

# C guests of the WASM host (wasm/guests/c): rebuild the committed .wasm files
# from source with clang and lld. .ci/run checks that this reproduces them.
# Go guests need no target: tests build them with the Go toolchain.
CLANG        ?= clang
GUEST_CFLAGS := --target=wasm32 -O2 -mbulk-memory -nostdlib -Wl,--no-entry \
                -Wl,--stack-first -Wl,-z,stack-size=15360
guests:
	@for src in wasm/guests/c/*.c; do \
		echo "$(CLANG) $(GUEST_CFLAGS) -o $${src%.c}.wasm $$src"; \
		$(CLANG) $(GUEST_CFLAGS) -o $${src%.c}.wasm $$src || exit 1; \
	done

clean:
	rm -rf bin nola-data
