# Loom's developer commands. `make run` and `make test` are the two a
# newcomer needs; see README.md.
GO      ?= go
BIN     := bin/loom-node
DATA    ?= ./loom-data
PORT    ?= 7420

.PHONY: build run test bench vet fmt clean

build:
	$(GO) build -o $(BIN) ./cmd/loom-node

# One node on embedded defaults; try it with `bin/loom-node call counter/c1 add '{"delta":1}'`.
run: build
	./$(BIN) dev --data-dir $(DATA) --http-port $(PORT)

# Every package, race detector on, no cached results.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

# The benchmarks quoted in README.md (Performance).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 3 ./runtime ./journal

vet:
	$(GO) vet ./...

fmt:
	gofmt -w .

clean:
	rm -rf bin
