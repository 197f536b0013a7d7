# nola — see README.md. Every target works on a fresh machine with Go.
GO      ?= go
PKGS    := ./...
# Packages whose tests run real goroutines: they also run under -race.
RACE_PKGS := ./rt/... ./registry/... ./nola/... ./faultinject/...

.PHONY: test test-race vet lint bench run sim-long jepsen guests clean

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

run:
	$(GO) run ./examples/cluster

clean:
	rm -rf bin nola-data
