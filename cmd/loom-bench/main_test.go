package main

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// res is a measurement of calls calls in one second, with the given
// latencies.
func res(calls int64, lat ...time.Duration) result {
	return result{calls: calls, elapsed: time.Second, lat: lat}
}

func TestSummarizeTakesMediansOfTheRoundsRatios(t *testing.T) {
	names := []string{"grpc-unary", "grpc-stream", "remote-get"}
	// The machine gets busier and quieter between rounds: every rate moves,
	// the ratios of each round stay near 2x unary and 0.5x stream except in
	// round 2, where remote-get alone was slowed.
	measured := [][]result{
		{res(100, time.Millisecond), res(400, time.Millisecond), res(200, 3*time.Millisecond)},
		{res(50, time.Millisecond), res(200, time.Millisecond), res(100, 1*time.Millisecond)},
		{res(100, time.Millisecond), res(400, time.Millisecond), res(20, 2*time.Millisecond)},
		{res(80, time.Millisecond), res(300, time.Millisecond), res(180, 4*time.Millisecond)},
	}
	sums := summarize(names, measured)
	get := sums[2]
	if get.name != "remote-get" {
		t.Fatalf("summary 2 is %q", get.name)
	}
	// Rates 20, 100, 180, 200: median (100+180)/2.
	if got := get.rate(); got != 140 {
		t.Errorf("median rate = %v, want 140", got)
	}
	// Ratios to unary: 2, 2, 0.2, 2.25 -> sorted 0.2, 2, 2, 2.25 -> median 2.
	if got := median(get.ratio["grpc-unary"]); got != 2 {
		t.Errorf("median ratio to unary = %v, want 2", got)
	}
	// To stream: 0.5, 0.5, 0.05, 0.6 -> median 0.5.
	if got := median(get.ratio["grpc-stream"]); got != 0.5 {
		t.Errorf("median ratio to stream = %v, want 0.5", got)
	}
	// Latencies of all rounds together, sorted.
	if len(get.lat) != 4 || get.q(0.5) != 3*time.Millisecond || get.q(0) != time.Millisecond {
		t.Errorf("latencies = %v, p50 %v", get.lat, get.q(0.5))
	}
	// A baseline's ratio to itself is 1 in every round.
	if v := sums[0].ratio["grpc-unary"]; len(v) != 4 || v[0] != 1 || v[3] != 1 {
		t.Errorf("unary to itself: %v", v)
	}
}

func TestSummarizeWithoutBaselinesHasNoRatios(t *testing.T) {
	e := errors.New("boom")
	measured := [][]result{{{name: "durable-add", calls: 10, errors: 2, elapsed: time.Second, firstErr: e}}}
	sums := summarize([]string{"durable-add"}, measured)
	if len(sums[0].ratio) != 0 {
		t.Errorf("ratios without baselines: %v", sums[0].ratio)
	}
	if sums[0].errors != 2 || !errors.Is(sums[0].firstErr, e) {
		t.Errorf("errors %d, first %v", sums[0].errors, sums[0].firstErr)
	}
	var out bytes.Buffer
	report(&out, sums, 64, time.Second, 1, 10)
	if !strings.Contains(out.String(), "first error: boom") || strings.Contains(out.String(), "ranges") {
		t.Errorf("report:\n%s", out.String())
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{1, 3}, 2},
		{[]float64{1, 2, 9}, 2},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestBadFlagsAreRefused(t *testing.T) {
	for _, args := range [][]string{{"--rounds", "0"}, {"--callers", "0"}, {"--duration", "0s"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if !strings.Contains(errOut.String(), "must be") {
			t.Errorf("%v: stderr %q", args, errOut.String())
		}
	}
}

func TestWarmUpCallsEveryActorOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	if err := warmUp(8, 1000, func(a int) error {
		mu.Lock()
		seen[a]++
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1000 {
		t.Fatalf("%d actors called, want 1000", len(seen))
	}
	for a, n := range seen {
		if n != 1 || a < 0 || a >= 1000 {
			t.Fatalf("actor %d called %d times", a, n)
		}
	}
	boom := errors.New("boom")
	if err := warmUp(4, 100, func(a int) error {
		if a == 50 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
}

func TestDurableAddIsComparedWithRawRaft(t *testing.T) {
	names := []string{"raft-apply", "durable-add"}
	measured := [][]result{
		{res(1000), res(500)},
		{res(800), res(600)},
		{res(1200), res(300)},
	}
	sums := summarize(names, measured)
	// Ratios 0.5, 0.75, 0.25: median 0.5.
	if got := median(sums[1].ratio["raft-apply"]); got != 0.5 {
		t.Errorf("durable-add over raft-apply = %v, want 0.5", got)
	}
	var out bytes.Buffer
	report(&out, sums, 64, time.Second, 3, 10)
	lines := strings.Split(out.String(), "\n")
	if !strings.HasSuffix(lines[1], "x raft") {
		t.Errorf("header %q has no raft column", lines[1])
	}
	if f := strings.Fields(lines[3]); f[0] != "durable-add" || f[len(f)-1] != "0.50" || f[len(f)-2] != "-" {
		t.Errorf("durable-add row %q", lines[3])
	}
	if !strings.Contains(out.String(), "durable-add  calls/s 300-600, x raft 0.25-0.75") {
		t.Errorf("ranges:\n%s", out.String())
	}
}

func TestDurableAddIsComparedWithRedisOnlyWhenItRan(t *testing.T) {
	names := []string{"redis-xadd", "durable-add", "send"}
	measured := [][]result{
		{res(1000), res(500), res(2000)},
		{res(800), res(200), res(1200)},
		{res(1200), res(900), res(1800)},
	}
	sums := summarize(names, measured)
	// durable-add: 0.5, 0.25, 0.75 -> 0.5; send: 2, 1.5, 1.5 -> 1.5.
	if got := median(sums[1].ratio["redis-xadd"]); got != 0.5 {
		t.Errorf("durable-add over redis-xadd = %v, want 0.5", got)
	}
	if got := median(sums[2].ratio["redis-xadd"]); got != 1.5 {
		t.Errorf("send over redis-xadd = %v, want 1.5", got)
	}
	var out bytes.Buffer
	report(&out, sums, 1, time.Second, 3, 10)
	lines := strings.Split(out.String(), "\n")
	if !strings.HasSuffix(lines[1], "x redis") {
		t.Errorf("header %q has no redis column", lines[1])
	}
	for i, want := range map[int]string{2: "1.00", 3: "0.50", 4: "1.50"} {
		if f := strings.Fields(lines[i]); f[len(f)-1] != want || f[len(f)-2] != "-" {
			t.Errorf("row %q, want x redis %s and x raft -", lines[i], want)
		}
	}
	if !strings.Contains(out.String(), "durable-add  calls/s 200-900, x redis 0.25-0.75") ||
		!strings.Contains(out.String(), "send         calls/s 1200-2000, x redis 1.50-2.00") {
		t.Errorf("ranges:\n%s", out.String())
	}

	// Without redis-xadd, no column for it.
	out.Reset()
	report(&out, summarize(names[1:], [][]result{{res(500), res(2000)}}), 64, time.Second, 1, 10)
	if strings.Contains(out.String(), "redis") {
		t.Errorf("a redis column without redis-xadd:\n%s", out.String())
	}
}

func TestRedisXAddNeedsAServer(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--only", "redis-xadd"}, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "needs --redis") {
		t.Errorf("stderr %q", errOut.String())
	}
}

func TestTLSTwinsAreComparedWithTheirPlaintextTwins(t *testing.T) {
	names := []string{"remote-get", "remote-get-tls", "durable-add", "durable-add-tls"}
	// The machine's load drifts between rounds; TLS costs about 10% of
	// remote-get in every round but the second, where remote-get-tls
	// alone was slowed.
	measured := [][]result{
		{res(1000), res(900), res(100), res(95)},
		{res(500), res(200), res(50), res(50)},
		{res(2000), res(1800), res(200), res(180)},
	}
	sums := summarize(names, measured)
	// remote-get-tls: 0.9, 0.4, 0.9 -> 0.9; durable-add-tls: 0.95, 1, 0.9 -> 0.95.
	if got := median(sums[1].ratio[twinKey]); got != 0.9 {
		t.Errorf("remote-get-tls over remote-get = %v, want 0.9", got)
	}
	if got := median(sums[3].ratio[twinKey]); got != 0.95 {
		t.Errorf("durable-add-tls over durable-add = %v, want 0.95", got)
	}
	if v := sums[0].ratio[twinKey]; len(v) != 0 {
		t.Errorf("remote-get has a twin ratio: %v", v)
	}
	var out bytes.Buffer
	report(&out, sums, 64, time.Second, 3, 10)
	lines := strings.Split(out.String(), "\n")
	if !strings.HasSuffix(lines[1], "x raft    x plain") || !strings.HasPrefix(lines[1], "scenario        ") {
		t.Errorf("header %q: want a plain column, names 15 wide", lines[1])
	}
	for i, want := range map[int]string{2: "-", 3: "0.90", 4: "-", 5: "0.95"} {
		if f := strings.Fields(lines[i]); f[0] != names[i-2] || f[len(f)-1] != want {
			t.Errorf("row %q, want x plain %s", lines[i], want)
		}
		if utf8.RuneCountInString(lines[i]) != utf8.RuneCountInString(lines[1]) { // as a terminal shows them
			t.Errorf("row %q is not as wide as the header", lines[i])
		}
	}
	if !strings.Contains(out.String(), "  remote-get-tls  calls/s 200-1800, x plain 0.40-0.90\n") ||
		!strings.Contains(out.String(), "  remote-get      calls/s 500-2000\n") {
		t.Errorf("ranges:\n%s", out.String())
	}

	// Without twins, no plain column.
	out.Reset()
	report(&out, summarize(names[:1], measured[:1]), 64, time.Second, 1, 10)
	if strings.Contains(out.String(), "plain") {
		t.Errorf("a plain column without twins:\n%s", out.String())
	}
}

func TestOrderRotatesTwinsWithTheirGroups(t *testing.T) {
	names := []string{"grpc-unary", "remote-get", "remote-get-tls", "durable-add", "durable-add-tls"}
	got := order(names, 2)
	want := [][2]int{
		{0, 0}, {0, 1}, {0, 2}, {1, 1}, {1, 2}, {1, 0}, // the readers, rotating
		{0, 3}, {0, 4}, {1, 4}, {1, 3}, // then the writers, rotating
	}
	if !slices.Equal(got, want) {
		t.Errorf("order = %v\nwant    %v", got, want)
	}
}

func TestClusterScenariosPutTwinsSideBySide(t *testing.T) {
	targets := []target{{}, {suffix: tlsSuffix}}
	want := func(name string) bool { return name == "remote-get" || name == "send" }
	var got []string
	for _, sc := range clusterScenarios(context.Background(), targets, want, 1, nil) {
		got = append(got, sc.name)
	}
	if w := []string{"remote-get", "remote-get-tls", "send", "send-tls"}; !slices.Equal(got, w) {
		t.Errorf("scenarios %v, want %v", got, w)
	}
}

func TestTLSAddrsFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-addrs", "127.0.0.1:8520"}, "--tls-addrs needs --ca"},
		{[]string{"--tls-addrs", "127.0.0.1:8520", "--ca", "ca.pem", "--overload"}, "does not apply to --overload"},
		{[]string{"--tls-addrs", "127.0.0.1:8520", "--ca", "ca.pem", "--only", "grpc-unary,send-deliver"}, "none of remote-get, durable-add and send"},
	} {
		var out, errOut bytes.Buffer
		if code := run(c.args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut.String(), c.want)
		}
	}
}

func TestColdCallsAreWritersAndSpread(t *testing.T) {
	names := []string{"cold-get", "remote-get", "cold-add"}
	if got, want := order(names, 1), [][2]int{{0, 1}, {0, 0}, {0, 2}}; !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v: the cold scenarios activate actors, a write", got, want)
	}
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	var picked []string
	for _, sc := range coldScenarios(context.Background(), nil, func(string) bool { return true }, 1, ids) {
		picked = append(picked, sc.name)
	}
	if want := []string{"cold-add", "cold-get"}; !slices.Equal(picked, want) {
		t.Fatalf("scenarios %v, want %v", picked, want)
	}
	// 64 callers' first 2,000 calls: about 128 on each actor, none
	// starved, none hot.
	hits := make(map[int]int)
	for g := range 64 {
		for i := range int64(2000) {
			hits[coldPick(g, i, 1000)]++
		}
	}
	for a := range 1000 {
		if n := hits[a]; n < 70 || n > 200 {
			t.Errorf("actor %d picked %d times of 128,000, want about 128", a, n)
		}
	}
}
