package redisjournal_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/journal"
)

const crashEnv = "LOOM_REDISJOURNAL_CRASH_CHILD"

// crashPayload is what a writer appends as seq of actor, so that every
// stored entry can be checked.
func crashPayload(actor string, seq uint64) []byte {
	return fmt.Appendf(nil, "%s#%d#%s", actor, seq, strings.Repeat("x", 64))
}

// crashEntries are the n entries a writer appends after tail.
func crashEntries(actor string, tail uint64, n int) []journal.Entry {
	es := make([]journal.Entry, n)
	for k := range es {
		es[k] = journal.Entry{Kind: journal.KindInvocation, Payload: crashPayload(actor, tail+uint64(k)+1)}
	}
	return es
}

// checkLog checks that actor's log is 1..tail of crashPayload, without a
// gap, that its tail is the log's end and at least minTail, and returns it.
func checkLog(t *testing.T, j journal.Journal, actor string, minTail uint64) uint64 {
	t.Helper()
	es, err := j.Read(t.Context(), actor, 0)
	if err != nil {
		t.Fatalf("Read(%s): %v", actor, err)
	}
	for i, e := range es {
		if e.Seq != uint64(i+1) || !bytes.Equal(e.Payload, crashPayload(actor, e.Seq)) {
			t.Fatalf("%s: entry %d is seq %d payload %q", actor, i, e.Seq, e.Payload)
		}
	}
	if uint64(len(es)) < minTail {
		t.Fatalf("%s: %d entries stored, but appends up to seq %d were acknowledged", actor, len(es), minTail)
	}
	if tl, err := j.Tail(t.Context(), actor); err != nil || tl.Seq != uint64(len(es)) {
		t.Fatalf("%s: Tail = %+v, %v; want seq %d", actor, tl, err, len(es))
	}
	return uint64(len(es))
}

// TestCrashChild is the child half of TestCrashRecovery: it does nothing
// unless the parent sets LOOM_REDISJOURNAL_CRASH_CHILD to the address of a
// redis-server. It appends from several goroutines until killed, writing
// "ACK actor tail" to stdout after each Append returns.
func TestCrashChild(t *testing.T) {
	addr := os.Getenv(crashEnv)
	if addr == "" {
		return // only meaningful as a child process
	}
	o := redisjournal.DefaultOptions()
	o.Redis = redis.Options{Addr: addr}
	// Safety bound in case the parent never kills us: stop on our own.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	j, err := redisjournal.Open(ctx, o)
	if err != nil {
		fmt.Printf("ERR open: %v\n", err)
		os.Exit(2)
	}
	fmt.Println("READY")
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			actor := fmt.Sprintf("crash-%d", g)
			var tail uint64
			for i := 0; ctx.Err() == nil; i++ {
				next, err := j.Append(ctx, actor, 1, tail, crashEntries(actor, tail, 1+i%3))
				if err != nil {
					if ctx.Err() == nil {
						fmt.Printf("ERR %s: %v\n", actor, err)
						os.Exit(2)
					}
					return
				}
				tail = next
				out.Lock()
				fmt.Printf("ACK %s %d\n", actor, tail)
				out.Unlock()
			}
		})
	}
	wg.Wait()
	_ = j.Close()
}

// TestCrashRecovery kills a writer process with SIGKILL in the middle of
// concurrent appends, then checks, from a new journal, that every append
// the child reported acknowledged is stored, with the right payloads and
// no gap, and that the logs can be continued.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		return
	}
	s := redistest.Start(t, redistest.Options{})
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+s.Addr)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Bound the whole test: kill the child if it stops making progress.
	watchdog := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer watchdog.Stop()

	const wantAcks = 2000
	acked := map[string]uint64{}
	acks, killed := 0, false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "ACK "):
			f := strings.Fields(line)
			if len(f) != 3 {
				t.Fatalf("bad line from child: %q", line)
			}
			seq, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				t.Fatalf("bad line from child: %q", line)
			}
			acked[f[1]] = max(acked[f[1]], seq)
			if acks++; acks == wantAcks && !killed {
				killed = true
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
			}
		case strings.HasPrefix(line, "ERR "):
			t.Errorf("child: %s", line)
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("child exited after %d acks without being killed", acks)
	}
	t.Logf("killed the child after %d acks (%d more arrived before the pipe closed)", wantAcks, acks-wantAcks)

	j := open(t, s.Addr)
	unacked := 0
	for actor, maxAck := range acked {
		tail := checkLog(t, j, actor, maxAck)
		unacked += int(tail - maxAck) // applied, the child killed before it printed
		mustAppendAt(t, j, actor, tail)
	}
	t.Logf("%d entries were stored but not acknowledged", unacked)
}

func mustAppendAt(t *testing.T, j journal.Journal, actor string, tail uint64) {
	t.Helper()
	if got, err := j.Append(t.Context(), actor, 1, tail, crashEntries(actor, tail, 1)); err != nil || got != tail+1 {
		t.Fatalf("Append(%s, expected %d) = %d, %v; want %d", actor, tail, got, err, tail+1)
	}
}

// TestRedisKilled kills redis-server with SIGKILL while writers append,
// then restarts it on the same append-only file (appendfsync always):
// every acknowledged append is there; each failed append failed with
// ErrUnavailable (and then had no effect) or ErrUnknownOutcome (and then
// either did or did not), never with a refusal; and the same journal goes
// on appending once the server is back, though the restarted server has
// forgotten the scripts (NOSCRIPT).
func TestRedisKilled(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	j := open(t, s.Addr)
	const writers, killAfter = 16, 1500

	type outcome struct {
		tail    uint64 // acknowledged
		n       int    // entries of the failed append
		err     error  // how the first failed append failed
		unknown bool
	}
	outcomes := make([]outcome, writers)
	var acks atomic.Int64
	enough := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			actor := fmt.Sprintf("w%d", w)
			o := &outcomes[w]
			for i := 0; ; i++ {
				n := 1 + i%3
				next, err := j.Append(t.Context(), actor, 1, o.tail, crashEntries(actor, o.tail, n))
				if err != nil {
					o.n, o.err = n, err
					return
				}
				o.tail = next
				if acks.Add(1) == killAfter {
					once.Do(func() { close(enough) })
				}
			}
		})
	}
	<-enough
	s.Kill()
	wg.Wait() // every writer has failed: the server is gone

	s.Restart()
	kinds := map[string]int{}
	for w, o := range outcomes {
		actor := fmt.Sprintf("w%d", w)
		switch {
		case errors.Is(o.err, redisjournal.ErrUnknownOutcome):
			kinds["unknown outcome"]++
			got := checkLog(t, j, actor, o.tail)
			if got != o.tail && got != o.tail+uint64(o.n) {
				t.Fatalf("%s: tail %d after an append of %d entries at %d with an unknown outcome", actor, got, o.n, o.tail)
			}
			o.tail = got
		case errors.Is(o.err, redisjournal.ErrUnavailable):
			kinds["unavailable"]++
			if got := checkLog(t, j, actor, o.tail); got != o.tail {
				t.Fatalf("%s: append at %d failed with %v, yet the tail is %d", actor, o.tail, o.err, got)
			}
		default:
			t.Fatalf("%s: append at %d failed with %v, want ErrUnavailable or ErrUnknownOutcome", actor, o.tail, o.err)
		}
		for _, ref := range []error{journal.ErrConflict, journal.ErrFenced, journal.ErrInvalid} {
			if errors.Is(o.err, ref) {
				t.Fatalf("%s: a failure of redis reported as a refusal: %v", actor, o.err)
			}
		}
		mustAppendAt(t, j, actor, o.tail)
	}
	t.Logf("killed redis after %d acknowledged appends; writers stopped with %v; first error: %v", acks.Load(), kinds, outcomes[0].err)
}
