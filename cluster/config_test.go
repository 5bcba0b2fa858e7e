package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config { c := DevConfig(); c.NodeID = "n1"; return c }
	tests := []struct {
		name     string
		mutate   func(*Config)
		problems int
		isErr    error // besides ErrInvalidConfig
		contains string
	}{
		{"dev preset", func(*Config) {}, 0, nil, ""},
		{"lan preset", func(c *Config) { id := c.NodeID; *c = DefaultConfig(); c.NodeID = id }, 0, nil, ""},
		{"meta node id may repeat NodeID", func(c *Config) { c.Meta.NodeID = "n1" }, 0, nil, ""},
		{"seeds", func(c *Config) { c.Seeds = []string{"127.0.0.1:7946", "node-2.local:7946", "[::1]:1"} }, 0, nil, ""},
		{"no node id", func(c *Config) { c.NodeID = "" }, 1, nil, "NodeID"},
		{"node id with space", func(c *Config) { c.NodeID = "n 1" }, 1, nil, "space"},
		{"node id too long", func(c *Config) { c.NodeID = strings.Repeat("x", MaxNodeIDLen+1) }, 1, nil, "at most"},
		{"bind addr is a name", func(c *Config) { c.BindAddr = "localhost" }, 1, nil, "BindAddr"},
		{"bind port", func(c *Config) { c.BindPort = 70000 }, 1, nil, "BindPort"},
		{"advertise", func(c *Config) { c.AdvertiseAddr = "nope"; c.AdvertisePort = -1 }, 2, nil, "Advertise"},
		{"bad seeds", func(c *Config) { c.Seeds = []string{"127.0.0.1", "h:0", ":7946", "h:x"} }, 4, nil, "seed"},
		{"meta id differs", func(c *Config) { c.Meta.NodeID = "n2" }, 1, nil, "Meta.NodeID"},
		{"meta too large", func(c *Config) { c.Meta.Version = strings.Repeat("v", MaxMetaSize) }, 1, ErrMetaTooLarge, "512"},
		{"probe timeout not below interval", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }, 1, nil, "ProbeTimeout"},
		{"zero everything", func(c *Config) { *c = Config{NodeID: "n1", BindAddr: "127.0.0.1"} }, 15, nil, "JoinTimeout"},
		{"negative reclaim", func(c *Config) { c.DeadNodeReclaimTime = -1 }, 1, nil, "DeadNodeReclaimTime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.problems == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := New(cfg); err != nil {
					t.Fatalf("New() = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
			if tt.isErr != nil && !errors.Is(err, tt.isErr) {
				t.Fatalf("Validate() = %v, want %v", err, tt.isErr)
			}
			if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != tt.problems {
				t.Fatalf("Validate() reported %d problems, want %d:\n%v", n, tt.problems, err)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("Validate() = %v, want it to mention %q", err, tt.contains)
			}
			if _, nerr := New(cfg); !errors.Is(nerr, ErrInvalidConfig) {
				t.Fatalf("New() = %v, want ErrInvalidConfig", nerr)
			}
		})
	}
}

func TestPresets(t *testing.T) {
	lan, dev := DefaultConfig(), DevConfig()
	if lan.BindAddr != "127.0.0.1" || lan.BindPort != 7946 || lan.JoinTimeout != 30*time.Second ||
		lan.RejoinInterval != 10*time.Second || lan.ProbeInterval != time.Second ||
		lan.ProbeTimeout != 500*time.Millisecond || lan.SuspicionMult != 4 || lan.GossipToTheDeadTime != 30*time.Second {
		t.Errorf("DefaultConfig() = %+v", lan)
	}
	if dev.BindPort != 0 || dev.ProbeTimeout != 200*time.Millisecond || dev.SuspicionMult != 3 ||
		dev.GossipInterval != 100*time.Millisecond || dev.GossipToTheDeadTime != 15*time.Second || dev.TCPTimeout != time.Second {
		t.Errorf("DevConfig() = %+v", dev)
	}
}

func TestMetaSizeBoundary(t *testing.T) {
	base := Meta{NodeID: "n1", Version: "v"}
	longest := base // with every group bit set, which checkMetaSize leaves room for
	longest.Leads, longest.ReadyGroups = ^uint64(0), ^uint64(0)
	b, _ := encodeMeta(longest, true)
	fill := MaxMetaSize - len(b) + 1 // Version of this length makes the encoding exactly MaxMetaSize
	for _, tt := range []struct {
		extra   int
		wantErr bool
	}{{fill - 1, false}, {fill, false}, {fill + 1, true}} {
		m := base
		m.Version = strings.Repeat("v", tt.extra)
		err := checkMetaSize(m)
		if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrMetaTooLarge)) {
			t.Errorf("Version of %d bytes: checkMetaSize = %v, want error %v", tt.extra, err, tt.wantErr)
		}
	}
	m := Meta{NodeID: "n1", GRPCAddr: "a:1", RaftAddr: "b:2", HTTPAddr: "c:3", Version: "v"}
	for _, leaving := range []bool{false, true} {
		b, err := encodeMeta(m, leaving)
		if err != nil {
			t.Fatal(err)
		}
		w, err := decodeMeta(b)
		if err != nil || w.Meta != m || w.Leaving != leaving {
			t.Fatalf("round trip: %+v %v, want %+v leaving %v", w, err, m, leaving)
		}
	}
	if _, err := decodeMeta(nil); err == nil {
		t.Fatal("decodeMeta(nil) succeeded")
	}
	if _, err := decodeMeta([]byte("{")); err == nil {
		t.Fatal("decodeMeta(garbage) succeeded")
	}
}

// recordHandler keeps the records it is given.
type recordHandler struct {
	slog.Handler
	recs *[]slog.Record
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	*h.recs = append(*h.recs, r)
	return nil
}

func TestMemberlistLoggerLevels(t *testing.T) {
	var recs []slog.Record
	l := NewMemberlistLogger(slog.New(recordHandler{recs: &recs}))
	tests := []struct {
		line    string
		level   slog.Level
		message string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Marking n2 as failed", slog.LevelInfo, "Marking n2 as failed"},
		{"[WARN] memberlist: Refuting a suspect message", slog.LevelWarn, "Refuting a suspect message"},
		{"[ERR] memberlist: Conflicting address for n1", slog.LevelError, "Conflicting address for n1"},
		{"[ERROR] something", slog.LevelError, "something"},
		{"no prefix at all", slog.LevelInfo, "no prefix at all"},
	}
	for _, tt := range tests {
		l.Print(tt.line)
	}
	if len(recs) != len(tests) {
		t.Fatalf("%d records, want %d", len(recs), len(tests))
	}
	for i, tt := range tests {
		if recs[i].Level != tt.level || recs[i].Message != tt.message {
			t.Errorf("%q logged as %v %q, want %v %q", tt.line, recs[i].Level, recs[i].Message, tt.level, tt.message)
		}
	}
	NewMemberlistLogger(nil).Print("[ERR] discarded") // must not panic
}

func TestSubscriberCoalescing(t *testing.T) {
	c, err := New(testConfig(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := c.Subscribe()
	fast, cancelFast := c.Subscribe()
	ev := func(i int) Event {
		return Event{Type: EventUpdate, Member: Member{NodeID: "m", Addr: "a:" + string(rune('0'+i%10))}}
	}

	publish := func(n int) {
		for i := range n {
			c.mu.Lock()
			c.publishLocked(ev(i)) // must never block
			c.mu.Unlock()
			// the fast subscriber keeps up
			if got := <-fast; got.Type != EventUpdate {
				t.Fatalf("fast subscriber got %v", got.Type)
			}
		}
	}
	publish(SubscriberBuffer + 50)
	if len(ch) != SubscriberBuffer+1 {
		t.Fatalf("slow subscriber holds %d events, want %d", len(ch), SubscriberBuffer+1)
	}
	for i := range SubscriberBuffer {
		if got := <-ch; got.Type != EventUpdate {
			t.Fatalf("event %d is %v, want update", i, got.Type)
		}
	}
	if got := <-ch; got.Type != EventResync || got.Member != (Member{}) {
		t.Fatalf("after the buffer: %+v, want one resync", got)
	}
	// Caught up: normal delivery resumes.
	publish(3)
	for range 3 {
		if got := <-ch; got.Type != EventUpdate {
			t.Fatalf("after resync: %v, want update", got.Type)
		}
	}
	// Falling behind again yields a second resync.
	publish(SubscriberBuffer + 1)
	if len(ch) != SubscriberBuffer+1 {
		t.Fatalf("holds %d, want %d", len(ch), SubscriberBuffer+1)
	}

	cancel()
	cancel() // idempotent
	for range ch {
	}
	cancelFast()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	late, lateCancel := c.Subscribe()
	if _, ok := <-late; ok {
		t.Fatal("subscription after Close is open")
	}
	lateCancel()
}

func TestLifecycleErrors(t *testing.T) {
	c, err := New(testConfig(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Leave(ctx); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Leave before Start = %v", err)
	}
	if err := c.UpdateMeta(ctx, Meta{}); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("UpdateMeta before Start = %v", err)
	}
	if got := c.LocalNode(); got.NodeID != "n1" || got.Addr != "" || got.Meta.NodeID != "n1" {
		t.Fatalf("LocalNode before Start = %+v", got)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("second Start = %v", err)
	}
	if got := c.LocalNode(); got.Addr == "" || strings.HasSuffix(got.Addr, ":0") || got.State != StateAlive {
		t.Fatalf("LocalNode after Start = %+v, want the real port", got)
	}
	if err := c.UpdateMeta(ctx, Meta{NodeID: "other"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("UpdateMeta with another id = %v", err)
	}
	if err := c.UpdateMeta(ctx, Meta{Version: strings.Repeat("v", MaxMetaSize)}); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("UpdateMeta too large = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := c.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v", err)
	}
	if err := c.Leave(ctx); err != nil {
		t.Fatalf("Leave after Close = %v", err)
	}
	if err := c.UpdateMeta(ctx, Meta{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("UpdateMeta after Close = %v", err)
	}

	// Close without Start is fine, and Start after it is refused.
	c2, _ := New(testConfig(t, "n2"))
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v", err)
	}
}

func TestRejoinTargetsAndReap(t *testing.T) {
	cfg := testConfig(t, "n1", "10.0.0.1:7946", "seed.example:7946")
	cfg.ReconnectTimeout = time.Hour
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old := now.Add(-2 * time.Hour)
	for _, m := range []Member{
		{NodeID: "n1", State: StateDead, Addr: "127.0.0.1:1", Since: old}, // self: never a target, never reaped
		{NodeID: "n2", State: StateAlive, Addr: "127.0.0.1:2", Since: old},
		{NodeID: "n3", State: StateDead, Addr: "127.0.0.1:3", Since: now},
		{NodeID: "n4", State: StateLeft, Addr: "127.0.0.1:4", Since: now},   // left on purpose: not a target
		{NodeID: "n5", State: StateDead, Addr: "10.0.0.1:7946", Since: now}, // also a seed: listed once
		{NodeID: "n6", State: StateDead, Addr: "127.0.0.1:6", Since: old},   // reaped
		{NodeID: "n7", State: StateLeft, Addr: "127.0.0.1:7", Since: old},   // reaped
	} {
		c.members[m.NodeID] = &entry{m: m}
	}
	tests := []struct {
		name string
		reap bool
		want []string
	}{
		{"before reaping", false, []string{"10.0.0.1:7946", "seed.example:7946", "127.0.0.1:3", "127.0.0.1:6"}},
		{"after reaping", true, []string{"10.0.0.1:7946", "seed.example:7946", "127.0.0.1:3"}},
	}
	for _, tt := range tests {
		if tt.reap {
			c.reap(now)
		}
		got := c.rejoinTargets(c.seeds)
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: targets %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := memberIDs(c.Members()); strings.Join(got, " ") != "n1(dead) n2(alive) n3(dead) n4(left) n5(dead)" {
		t.Errorf("after reaping: %v", got)
	}
}

func TestSeedsExceptSelf(t *testing.T) {
	tests := []struct {
		seeds []string
		want  []string
	}{
		{[]string{"127.0.0.1:7000"}, nil},
		{[]string{"localhost:7000", "127.0.0.1:7000", "127.0.0.1:7000"}, nil},
		{[]string{"127.0.0.1:7001", "127.0.0.1:7000", "h:7000"}, []string{"127.0.0.1:7001", "h:7000"}},
	}
	for _, tt := range tests {
		cfg := testConfig(t, "n1", tt.seeds...)
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		local := &memberlist.Node{Name: "n1", Addr: net.ParseIP("127.0.0.1"), Port: 7000}
		if got := c.seedsExceptSelf(local); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("seeds %v: %v, want %v", tt.seeds, got, tt.want)
		}
	}
}

// TestNoGoroutinesLeft: after Close, neither this package's goroutines nor
// memberlist's remain. (Not parallel: it counts every goroutine.)
func TestNoGoroutinesLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	a := startNode(t, testConfig(t, "n1"))
	b := startNode(t, testConfig(t, "n2", a.LocalNode().Addr))
	waitFor(t, 5*time.Second, "two alive", func() error { return seesAlive(a, "n1", "n2") })
	_, cancel := a.Subscribe()
	defer cancel()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "goroutines gone", func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}
