package docs_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/loom-mesh/loom/internal/cosmostest"
	"github.com/loom-mesh/loom/internal/pgtest"
)

// check runs one shell block: what the reader has already done (the
// block before it, as Go code here), then the block.
type check func(t *testing.T, s *session, b block)

// shellChecks are the checks the blocks' markers name.
var shellChecks = map[string]check{
	"readme-two-commands": func(t *testing.T, s *session, b block) {
		for _, st := range steps(b.Text) {
			switch st.Cmd {
			case "make run": // serves until stopped: run it as in the background
				s.step(step{Cmd: st.Cmd + " &"})
			case "make test": // CI runs it: .ci/run must run exactly this, and make must know it
				ci, err := os.ReadFile(filepath.Join(s.repo, ".ci", "run"))
				if err != nil || !strings.Contains(string(ci), "\nexec make test\n") {
					t.Fatalf(".ci/run does not run `make test`: %v\n%s", err, ci)
				}
				cmd := exec.Command("make", "-n", "test")
				cmd.Dir = s.repo
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("make -n test: %v\n%s", err, out)
				}
			default:
				t.Fatalf("the check does not know %q", st.Cmd)
			}
		}
	},
	"readme-first-call": func(t *testing.T, s *session, b block) {
		s.step(step{Cmd: "make run &"})
		s.replace("pkill -9 loom-node", func() string {
			return fmt.Sprintf("pkill -9 -f 'loom-node dev --data-dir %s/loom-data'", s.dir)
		})
		s.run(b)
	},
	"readme-make-cluster": func(t *testing.T, s *session, b block) {
		s.runEach(b) // serves until stopped
	},
	"readme-cluster-tour": func(t *testing.T, s *session, b block) {
		s.step(step{Cmd: "make cluster &"})
		// Which node leads is Raft's choice; the applied index counts what the cluster did.
		s.let(`\b(?:leader|voter) `, `(?:leader|voter) `)
		s.let(`leader: node-1 \(as seen by node-1, raft Leader, applied index \d+\)`,
			`leader: node-\d \(as seen by node-1, raft (?:Leader|Follower), applied index \d+\)`)
		var ownerID string // asked once, before the kill
		owner := func() string {
			if ownerID == "" {
				var v struct{ Owner string }
				getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/v1/admin/actors/counter/c1", s.base), &v)
				if v.Owner == "" {
					t.Fatal("counter/c1 has no owner")
				}
				ownerID = v.Owner
			}
			return ownerID
		}
		s.replace("<pid of its owner>", func() string {
			return fmt.Sprint(pidOf(t, "--node-id "+owner()+" ", s.dir))
		})
		s.replace("<another node's HTTP address>", func() string {
			for i := 1; i <= 3; i++ {
				if fmt.Sprintf("node-%d", i) != owner() {
					return fmt.Sprintf("127.0.0.1:%d", s.base+i-1)
				}
			}
			t.Fatal("no other node")
			return ""
		})
		s.run(b)
	},
	"readme-send-dlq": func(t *testing.T, s *session, b block) {
		s.step(step{Cmd: "make run &"})
		s.run(b)
	},

	// Each backend's commands, one per terminal, on a real server of the
	// kind, with the config the block before shows.
	"redis-cluster": func(t *testing.T, s *session, b block) {
		s.replace("/var/lib/redis", func() string { return mkdir(t, s.dir, "redis") })
		redisSetup(t, s)
		s.runEach(b)
	},
	"postgres-cluster": func(t *testing.T, s *session, b block) {
		postgresSetup(t, s)
		s.runEach(b)
	},
	"cosmos-cluster": func(t *testing.T, s *session, b block) {
		cosmosSetup(t, s)
		s.runEach(b)
	},

	// The benchmarks' commands, each measurement cut to a few hundred
	// milliseconds (or one iteration).
	"bench-code-paths": benchmark,
	"bench-durable":    benchmark,
	"bench-redis": func(t *testing.T, s *session, b block) {
		mkdir(t, s.dir, "tmp", "redis")
		redisSetup(t, s)
		benchmark(t, s, b)
	},
	"bench-postgres": func(t *testing.T, s *session, b block) {
		postgresSetup(t, s)
		benchmark(t, s, b)
	},
	"bench-cosmos": func(t *testing.T, s *session, b block) {
		cs := cosmosSetup(t, s)
		s.replace("https://127.0.0.1:8081/", func() string { return cs.Endpoint })
		benchmark(t, s, b)
	},
	"bench-wal":       benchmark,
	"bench-groups":    benchmark,
	"bench-cold":      benchmark,
	"bench-tasks":     benchmark,
	"bench-cluster":   benchmark,
	"bench-tls":       benchmark,
	"bench-tracing":   benchmark,
	"bench-turn-span": benchmark,

	// The scaling run, as one small cell (4 nodes, 2 groups of 3 each, one
	// round of 300 ms): it needs root, for network namespaces and cgroups,
	// as CI has. Whatever it made must be gone when it ends.
	"scale-sim": func(t *testing.T, s *session, b block) {
		scaleSim(t, s, b, "sudo scripts/scale-sim", "--nodes 4 --groups 2 --members voters", 4, 2)
	},
	// The same options with each group on some of the nodes, planned
	// only (--dry-run): a cell of them runs in the scale-sim check above,
	// and the clusters of TestRaftGroupsOnSomeNodes run them in process.
	"scale-sim-voters": func(t *testing.T, s *session, b block) {
		s.replace("sudo scripts/scale-sim", func() string { return filepath.Join(s.repo, "scripts", "scale-sim") + " --dry-run" })
		out := s.step(step{Cmd: steps(b.Text)[0].Cmd})
		for _, want := range []string{"nodes in (3 6 9) and groups in (1 9)", "(0.1 CPU)", "cluster.groupMembers voters"} {
			if !strings.Contains(out, want) {
				t.Errorf("the plan does not say %q:\n%s", want, out)
			}
		}
	},

	"messaging-send": func(t *testing.T, s *session, b block) {
		s.step(step{Cmd: "make run &"})
		s.eventually("bin/loom-node dlq list") // the failing message dies after its retries
		s.run(b)
	},
	"health": func(t *testing.T, s *session, b block) {
		s.step(step{Cmd: "make run &"})
		s.step(step{Cmd: `bin/loom-node call counter/c1 add '{"delta":1}'`}) // the counter the block shows
		s.joinWant = true                                                    // the block wraps one line of JSON
		s.let(`"session":"s1\.\w+"`, `"session":"s\d+\.\w+"`)
		for _, k := range []string{"leaseRemainingMs", "lastRenewalAgoMs", "term", "commitIndex", "appliedIndex", "lastContactMs"} {
			s.let(`"`+k+`":\d+`, `"`+k+`":\d+`)
		}
		s.run(b)
	},
	"traces": func(t *testing.T, s *session, b block) {
		s.step(step{Cmd: "make run &"})
		s.run(b)
	},
	"tasks-http": func(t *testing.T, s *session, b block) {
		s.writeFile("charge.yaml", fmt.Sprintf("node:\n  httpPort: %d\n  dataDir: %s\n", s.base, filepath.Join(s.dir, "charge-data")))
		s.env = append(s.env, "LOOM_CONFIG_PATH="+filepath.Join(s.dir, "charge.yaml"))
		s.await(nodeReady(s.base, false))
		s.run(b)
	},

	// Securing a cluster, step by step.
	"tls-ca": func(t *testing.T, s *session, b block) {
		s.run(b)
		s.files(0o644, "pki/loom-ca.pem")
		s.files(0o600, "pki/loom-ca-key.pem")
	},
	"tls-node-cert": func(t *testing.T, s *session, b block) {
		s.run(blockBefore(t, b, "sh")) // the CA
		s.run(b)
		s.files(0o644, "pki/node-node-1.pem")
		s.files(0o600, "pki/node-node-1-key.pem")
		data, err := os.ReadFile(filepath.Join(s.dir, "pki", "node-node-1.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pemBlock, _ := pem.Decode(data)
		if pemBlock == nil {
			t.Fatal("pki/node-node-1.pem holds no PEM block")
		}
		cert, err := x509.ParseCertificate(pemBlock.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		names := fmt.Sprint(cert.DNSNames, cert.IPAddresses)
		for _, name := range []string{"n1.example.com", "10.0.0.5", "localhost", "127.0.0.1"} {
			if !strings.Contains(names, name) {
				t.Errorf("the node certificate does not name %s: %s", name, names)
			}
		}
	},
	"tls-client-cert": func(t *testing.T, s *session, b block) {
		s.step(step{Cmd: "loom-node tls ca create --dir pki"})
		s.run(b)
		s.files(0o644, "pki/client-orders-api.pem")
		s.files(0o600, "pki/client-orders-api-key.pem")
	},
	"secure-cluster": func(t *testing.T, s *session, b block) {
		s.run(b)
	},
	"gossip-key": func(t *testing.T, s *session, b block) {
		s.run(b)
		// The commented line is the config that reads the key: it must load.
		_, yaml, ok := strings.Cut(b.Text, "# loom.config.yaml:")
		if !ok {
			t.Fatal("the block shows no config line")
		}
		s.writeFile("loom.config.yaml", strings.TrimSpace(yaml)+"\n")
		s.step(step{Cmd: `test -n "$LOOM_GOSSIP_KEY" && loom-node config print --config loom.config.yaml | grep -cF "gossipKey: '[redacted]'"`,
			Want: []string{"1"}})
	},
	"keyring-rotate": func(t *testing.T, s *session, b block) {
		// A cluster running with a key, as the block before shows.
		s.step(step{Cmd: "export OLD=$(loom-node keygen) && export LOOM_GOSSIP_KEY=$OLD"})
		s.writeFile("loom.config.yaml", "cluster: {gossipKey: \"${LOOM_GOSSIP_KEY}\"}\n")
		s.step(step{Cmd: "loom-node cluster -n 3 --config loom.config.yaml &"})
		keyrings := func() map[string][]string { // node: primary key id, then every key id
			rows := map[string][]string{}
			for _, l := range strings.Split(s.step(step{Cmd: "loom-node keyring list --addr 127.0.0.1:7420"}), "\n")[1:] {
				if f := strings.Fields(l); len(f) == 3 {
					rows[f[0]] = append([]string{f[1]}, strings.Split(f[2], ",")...)
				}
			}
			return rows
		}
		before := keyrings()
		s.run(b)
		after := keyrings()
		if len(before) != 3 || len(after) != 3 {
			t.Fatalf("keyrings of 3 nodes before and after, got %v and %v", before, after)
		}
		for node, ids := range after {
			if len(ids) != 2 || ids[0] != ids[1] || ids[0] == before[node][0] || ids[0] != after["node-1"][0] {
				t.Errorf("%s: keyring %v after the rotation (before: %v); want one new key, the same on every node", node, ids, before[node])
			}
		}
	},
	"token-create": func(t *testing.T, s *session, b block) {
		out := s.step(step{Cmd: steps(b.Text)[0].Cmd})
		if tok := strings.TrimSpace(out); !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(tok) {
			t.Fatalf("token %q is not 32 bytes in base64url", tok)
		}
	},

	// The chaos suite runs for minutes (make test runs its default
	// scenarios): the suite is compiled once, and each command runs it
	// with its flags, listing the tests it would run instead of running
	// them, so a renamed test or flag fails.
	"chaos-commands": func(t *testing.T, s *session, b block) {
		build := exec.Command("go", "test", "-c", "-o", filepath.Join(s.dir, "chaos.test"), "./test/chaos")
		build.Dir = s.repo
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("compiling the chaos suite: %v\n%s", err, out)
		}
		s.env = append(s.env, "CHAOS_DIR="+filepath.Join(s.repo, "test", "chaos"))
		runRE, verboseRE := regexp.MustCompile(`-run (\S+)`), regexp.MustCompile(`(^|\s)-v(\s|$)`)
		for _, st := range steps(b.Text) {
			cmd := strings.TrimPrefix(st.Cmd, "sudo ") // the kernel partitions' own test skips without root
			if strings.HasPrefix(cmd, "make ") {
				s.step(step{Cmd: cmd + " -n"}) // make knows it; print what it would run
				continue
			}
			test, ok := strings.CutPrefix(cmd, "go test ")
			if !ok || !strings.Contains(test, " ./test/chaos") {
				t.Fatalf("the check does not know %q", st.Cmd)
			}
			test = "chaos.test " + strings.Replace(test, " ./test/chaos", "", 1)
			test = verboseRE.ReplaceAllString(test, "${1}-test.v${2}")
			if runRE.MatchString(test) {
				test = runRE.ReplaceAllString(test, "-test.list $1")
			} else {
				test += " -test.list ."
			}
			test = `(d=$PWD; cd "$CHAOS_DIR" && "$d"/` + test + ")" // a test runs in its package's directory
			if out := s.step(step{Cmd: test}); !regexp.MustCompile(`(?m)^Test`).MatchString(out) {
				t.Fatalf("%q matches no test:\n%s", st.Cmd, out)
			}
		}
	},
}

// benchmark runs a block of benchmark commands, shortened; each prints
// its figures.
func benchmark(t *testing.T, s *session, b block) {
	s.short = true
	for _, st := range steps(b.Text) {
		out := s.step(st)
		if strings.HasSuffix(st.Cmd, "&") || !strings.Contains(st.Cmd, "-bench") && !strings.Contains(st.Cmd, "loom-bench") {
			continue // a server, or a file written
		}
		if !regexp.MustCompile(`(?m)^(Benchmark\S+\s+\d+\s|.*ops/s|.*p50)`).MatchString(out) {
			t.Fatalf("%q printed no figures:\n%s", st.Cmd, out)
		}
	}
}

// simLeftovers lists the network namespaces, links and cgroups that a
// run of scripts/scale-sim names after its pid (loomsim-<pid>-<i>,
// lsb<hex pid>, lsv<hex pid>h<i>, loomsim-<pid>) and whose run has ended.
func simLeftovers() []string {
	alive := func(pid int64) bool { return syscall.Kill(int(pid), 0) == nil }
	var out []string
	add := func(kind, name, pid string, base int) {
		if n, err := strconv.ParseInt(pid, base, 64); err == nil && !alive(n) {
			out = append(out, kind+" "+name)
		}
	}
	nsRE, linkRE := regexp.MustCompile(`^loomsim-(\d+)-\d+$`), regexp.MustCompile(`^ls[bv]([0-9a-f]+)(?:[hp]\d+)?$`)
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if m := nsRE.FindStringSubmatch(e.Name()); m != nil {
			add("network namespace", e.Name(), m[1], 10)
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, e := range links {
		if m := linkRE.FindStringSubmatch(e.Name()); m != nil {
			add("link", e.Name(), m[1], 16)
		}
	}
	for _, root := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup"} {
		cgs, _ := filepath.Glob(filepath.Join(root, "loomsim-*"))
		for _, cg := range cgs {
			add("cgroup", cg, strings.TrimPrefix(filepath.Base(cg), "loomsim-"), 10)
		}
	}
	return out
}

// backendConfig writes, as name, the YAML block docs/backends.md shows
// before the shell block check names.
func backendConfig(t *testing.T, s *session, check, name string) {
	t.Helper()
	for _, b := range docBlocks(t, s.repo) {
		if b.Kind == "sh" && b.Arg == check {
			s.writeFile(name, s.apply(blockBefore(t, b, "yaml").Text, false))
			return
		}
	}
	t.Fatalf("no block marked %s", check)
}

// redisSetup readies a session for a Redis server the block starts on
// port 6379, with the password the config reads.
func redisSetup(t *testing.T, s *session) {
	port := fmt.Sprint(freePort(t))
	s.replace("6379", func() string { return port })
	s.env = append(s.env, "REDIS_PASSWORD=docs-secret")
	backendConfig(t, s, "redis-cluster", "loom.redis.yaml")
}

// postgresSetup starts a PostgreSQL server for the session, with the
// database and password the config names.
func postgresSetup(t *testing.T, s *session) {
	pg := pgtest.Start(t, pgtest.Options{Password: "docs-secret"})
	if _, err := pg.Conn(t, "postgres").Exec(t.Context(), "CREATE DATABASE loom"); err != nil {
		t.Fatal(err)
	}
	s.replace("5432", func() string { return fmt.Sprint(pg.Port) })
	s.env = append(s.env, "PGPASSWORD="+pg.Password)
	backendConfig(t, s, "postgres-cluster", "loom.postgres.yaml")
}

// cosmosSetup starts a Cosmos DB test server for the session, in place
// of the account the config names.
func cosmosSetup(t *testing.T, s *session) *cosmostest.Server {
	cs := cosmostest.Start(t)
	s.replace("https://myaccount.documents.azure.com:443/", func() string { return cs.Endpoint })
	s.env = append(s.env, "COSMOS_KEY="+cs.Key)
	// The test server's certificate is its own, as the text after the block says.
	s.replace("  key: ${COSMOS_KEY}", func() string { return "  insecureSkipVerify: true\n  key: ${COSMOS_KEY}" })
	backendConfig(t, s, "cosmos-cluster", "loom.cosmos.yaml")
	return cs
}

// runEach runs every command of a block in the background: each is one
// terminal's server, which runs until stopped.
func (s *session) runEach(b block) {
	s.t.Helper()
	for _, st := range steps(b.Text) {
		s.step(step{Cmd: st.Cmd + " &"})
	}
}

// files checks that each file exists in the session's directory, with
// the given permissions.
func (s *session) files(mode os.FileMode, names ...string) {
	s.t.Helper()
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(s.dir, n))
		if err != nil {
			s.t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			s.t.Errorf("%s: mode %v, want %v", n, fi.Mode().Perm(), mode)
		}
	}
}

// writeFile writes a file in the session's directory.
func (s *session) writeFile(name, content string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func mkdir(t *testing.T, parts ...string) string {
	dir := filepath.Join(parts...)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// blockBefore is the last block in lang before b in its file.
func blockBefore(t *testing.T, b block, lang string) block {
	t.Helper()
	bs, err := parseBlocks(filepath.Join(repoRoot(t), b.File), b.File)
	if err != nil {
		t.Fatal(err)
	}
	var found *block
	for i := range bs {
		if bs[i].Line < b.Line && bs[i].Lang == lang {
			found = &bs[i]
		}
	}
	if found == nil {
		t.Fatalf("%s: no ```%s block before it", b, lang)
	}
	return *found
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestShellBlocks runs every shell block, in the order the docs show them.
func TestShellBlocks(t *testing.T) {
	for _, b := range docBlocks(t, repoRoot(t)) {
		if checked[b.Lang] != "sh" || shellChecks[b.Arg] == nil {
			continue // TestEveryBlockIsChecked names it
		}
		t.Run(b.Arg, func(t *testing.T) {
			t.Logf("%s", b)
			shellChecks[b.Arg](t, newSession(t), b)
		})
	}
}

// scaleSim runs the block with cmd replaced by scripts/scale-sim with
// args (one round of 300 ms), and checks that it measured the cell of
// nodes and groups and left nothing behind. It needs root, for network
// namespaces and cgroups, as CI has.
func scaleSim(t *testing.T, s *session, b block, cmd, args string, nodes, groups int) {
	if os.Geteuid() != 0 {
		t.Skip("scripts/scale-sim needs root (network namespaces, cgroups)")
	}
	before := simLeftovers()
	s.replace(cmd, func() string {
		return filepath.Join(s.repo, "scripts", "scale-sim") + " " + args + " --rounds 1 --duration 300ms"
	})
	var out string
	for _, st := range steps(b.Text) {
		out = s.step(st)
	}
	row := regexp.MustCompile(fmt.Sprintf(`(?m)^\s+%d\s+%d\s+\d+\s+\S+s\s+\S+s\s+\d+µs\s+\d\s`, nodes, groups))
	if !row.MatchString(out) || strings.Contains(out, "FAILED") {
		t.Fatalf("no measured row for %d nodes, %d groups:\n%s", nodes, groups, out)
	}
	for _, x := range simLeftovers() {
		if !slices.Contains(before, x) {
			t.Errorf("scale-sim left %s behind", x)
		}
	}
}
