# Loom's developer commands. `make run` and `make test` are the two a
# newcomer needs; see README.md.
GO      ?= go
BIN     := bin/loom-node
DATA    ?= ./loom-data
PORT    ?= 7420
CLUSTER_DATA ?= ./loom-cluster

.PHONY: build run cluster test chaos bench bench-cluster vet fmt clean proto docs

build:
	$(GO) build -o $(BIN) ./cmd/loom-node

# One node on embedded defaults; try it with `bin/loom-node call counter/c1 add '{"delta":1}'`.
run: build
	./$(BIN) dev --data-dir $(DATA) --http-port $(PORT)

# A local cluster of three loom-node processes; Ctrl-C stops them all.
# Node i serves HTTP on PORT+i and gRPC on PORT+100+i.
cluster: build
	./$(BIN) cluster -n 3 --base-port $(PORT) --data-dir $(CLUSTER_DATA)

# Every package, race detector on, no cached results, the longest first
# (LONG_TESTS): go test starts packages in the order it is given them, and
# with the long ones first the short ones fill in beside them instead of
# one long package running alone at the end. ./test/chaos, the longest,
# builds its own loom-node with -tags loomchaos and runs the default scenarios, the Redis
# one, the mixed one (Raft locks, PostgreSQL journals) and the proof that
# the checkers bite; only the Redis ones: go test
# ./test/chaos -run 'TestChaosRedis|TestChaosCheckersBite/redis'); then the tests of the
# test-only machinery (the chaos hook, the unsafe modes, the Redis
# journal's unfenced append), which exist only as the chaos suite builds
# them, with -tags loomchaos: their names begin TestChaos or TestUnsafe;
# beside them, the Raft store's suite again, on the raft-boltdb log store
# (the two wait mostly on timers and disks, so they share the cores well).
# The servers install while vet runs: apt waits on the network and disk,
# vet on the CPU. Vet builds with -race, as the tests do, so that the
# tests reuse what it compiled: from an empty build cache, vet, the tests'
# builds and the binaries the tests build (loom-node, loom-bench, without
# -race) took 471 s so, against 515 s with a plain vet.
LONG_TESTS = ./test/chaos ./test/docs ./node ./cmd/loom-node ./adapters/cosmos/cosmosjournal ./raftlock
test:
	$(GO) vet -race ./... & vet=$$!; \
	./scripts/ensure-redis && ./scripts/ensure-postgres && ./scripts/ensure-cosmos && \
	./scripts/ensure-rabbitmq && ./scripts/ensure-chromium && ./scripts/ensure-tools; ensure=$$?; \
	wait $$vet; vet=$$?; exit $$(( ensure | vet ))
	$(GO) vet -race -tags loomchaos ./node/... ./cmd/... ./adapters/redis/... ./test/chaos
	$(GO) test -race -count=1 -timeout 15m $(LONG_TESTS) ./...
	$(GO) test -race -count=1 -timeout 10m -tags loomchaos -run '^Test(Chaos|Unsafe)' ./node ./cmd/loom-node ./adapters/redis/redisjournal & machinery=$$!; \
	$(GO) test -race -count=1 -timeout 10m ./raftlock -raftlock.logstore boltdb; boltdb=$$?; \
	wait $$machinery; machinery=$$?; exit $$(( machinery | boltdb ))

# The chaos suite with its soak: real loom-node processes killed (-9),
# paused (SIGSTOP), partitioned, their clocks and disks faulted, their
# membership churned and faults combined (a voter wiped, then the leader
# lost while followers lag; the leader paused during a burst of forwarded
# writes), under a recorded load, on 3 then 5 nodes, for
# CHAOS_DURATION in all, then the checkers; as root with ip and tc, also
# every partition cut by the kernel in a network namespace, on 5 nodes for
# a sixth of CHAOS_DURATION. Every run's artifacts (node
# logs, activation logs, fault timeline, history, report.json) stay in
# ./chaos-out. CHAOS_SEED=N replays a run's schedule. `make test` runs only
# the short default scenarios and the proof that the checkers bite.
CHAOS_DURATION ?= 30m
CHAOS_SEED     ?= 0
chaos:
	$(GO) test -v -count=1 -timeout 3h -run 'TestChaos' ./test/chaos \
		-chaos.long -chaos.duration $(CHAOS_DURATION) -chaos.seed $(CHAOS_SEED) -chaos.out $(CURDIR)/chaos-out

# The benchmarks quoted in docs/performance.md: single node, then the
# cluster's code paths (Raft journal, transport, a 3-node cluster in one
# process). For the multi-process figures run `bin/loom-node cluster -n 3
# --tracing=false` (tracing is on by default there) and, in another
# terminal, `go run ./cmd/loom-bench`.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 3 ./runtime ./journal

bench-cluster:
	$(GO) test -run '^$$' -bench . -benchtime 3s -count 3 ./raftlock ./transport ./client

vet:
	$(GO) vet ./...

fmt:
	gofmt -w .

clean:
	rm -rf bin

# Regenerates transport/loompb from proto/ (the generated code is committed,
# so a build needs none of this). Tools: protoc 3.21 (Debian's
# protobuf-compiler), protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.5.1:
#   apt-get install -y protobuf-compiler
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I proto \
		--go_out=. --go_opt=module=github.com/loom-mesh/loom \
		--go-grpc_out=. --go-grpc_opt=module=github.com/loom-mesh/loom \
		proto/loom/v1/loom.proto

# docs regenerates docs/config.md from the config package (a test fails when
# they differ).
docs:
	$(GO) test ./config -run TestConfigReference -update
