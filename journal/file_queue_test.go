package journal_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/queue/queuetest"
)

// TestFileQueueConformance runs queuetest on the bbolt file journal.
func TestFileQueueConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, o queuetest.Options) queuetest.Backend {
		opts := journal.DefaultFileOptions()
		if o.Retention != 0 {
			opts.MessageIDRetention = o.Retention
		}
		f, err := journal.OpenFile(filepath.Join(t.TempDir(), "j.db"), opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	})
}

// TestFileQueueSurvivesReopen: an accepted message is still pending after
// the file is closed and opened again; once acknowledged by an append, it
// is gone and its id still remembered.
func TestFileQueueSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	ctx := context.Background()
	open := func() *journal.FileJournal {
		f, err := journal.OpenFile(path, journal.DefaultFileOptions())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := open()
	if _, err := f.Enqueue(ctx, queue.Message{ID: "m1", Actor: "counter/a", Method: "add", Ordered: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = open()
	due, err := f.Due(ctx, "counter/a", time.Now().Add(time.Minute), 10)
	if err != nil || len(due) != 1 || due[0].ID != "m1" {
		t.Fatalf("after reopen: %+v, %v", due, err)
	}
	if _, err := f.Append(ctx, "counter/a", 1, 0, []journal.Entry{{Kind: journal.KindInvocation}, {Kind: journal.KindMessageAck, IdempotencyKey: "m1"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = open()
	defer f.Close()
	if due, err := f.Due(ctx, "counter/a", time.Now().Add(time.Minute), 10); err != nil || len(due) != 0 {
		t.Fatalf("after the ack and a reopen: %+v, %v", due, err)
	}
	acc, err := f.Enqueue(ctx, queue.Message{ID: "m1", Actor: "counter/a", Method: "add"})
	if err != nil || !acc.Duplicate {
		t.Fatalf("resend of an acknowledged id: %+v, %v", acc, err)
	}
}

// --- crash test of the queues ---

const queueCrashEnv = "LOOM_QUEUE_CRASH_CHILD"

// TestQueueCrashChild is the child half of TestQueueCrashRecovery: it does
// nothing unless the parent sets LOOM_QUEUE_CRASH_CHILD to a file path.
// From several goroutines, one actor each, it enqueues messages and
// acknowledges every other one in an append, until killed, writing "ENQ
// actor id" after each Enqueue returns and "ACK actor id" after each
// acknowledging Append returns.
func TestQueueCrashChild(t *testing.T) {
	path := os.Getenv(queueCrashEnv)
	if path == "" {
		return // only meaningful as a child process
	}
	j, err := journal.OpenFile(path, journal.DefaultFileOptions())
	if err != nil {
		fmt.Printf("ERR open: %v\n", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Printf(format+"\n", args...)
		out.Unlock()
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			actor := fmt.Sprintf("crash/%d", g)
			var tail uint64
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("%s-%d", actor, i)
				if _, err := j.Enqueue(ctx, queue.Message{ID: id, Actor: actor, Method: "m", Payload: []byte(id)}); err != nil {
					if ctx.Err() == nil {
						say("ERR enqueue %s: %v", id, err)
						os.Exit(2)
					}
					return
				}
				say("ENQ %s %s", actor, id)
				if i%2 == 1 {
					continue
				}
				es := []journal.Entry{{Kind: journal.KindInvocation, Payload: []byte(id)}, {Kind: journal.KindMessageAck, IdempotencyKey: id}}
				next, err := j.Append(ctx, actor, 1, tail, es)
				if err != nil {
					if ctx.Err() == nil {
						say("ERR ack %s: %v", id, err)
						os.Exit(2)
					}
					return
				}
				tail = next
				say("ACK %s %s", actor, id)
			}
		})
	}
	wg.Wait()
	_ = j.Close()
}

// TestQueueCrashRecovery kills a process with SIGKILL while it enqueues and
// acknowledges messages, then opens the file: every message whose Enqueue
// returned is there, and each is either pending or acknowledged by an entry
// of its actor's journal, never both; every acknowledgement that returned
// is in the journal, its message gone and its id remembered.
func TestQueueCrashRecovery(t *testing.T) {
	if os.Getenv(queueCrashEnv) != "" {
		return
	}
	path := tempPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestQueueCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), queueCrashEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer watchdog.Stop()

	const wantLines = 400
	enqueued := map[string]string{} // id -> actor
	acked := map[string]string{}
	lines, killed := 0, false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "ENQ":
			enqueued[f[2]] = f[1]
		case len(f) == 3 && f[0] == "ACK":
			acked[f[2]] = f[1]
		default:
			t.Errorf("child: %s", sc.Text())
			continue
		}
		if lines++; lines == wantLines && !killed {
			killed = true
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("child exited after %d lines without being killed", lines)
	}
	t.Logf("killed the child after %d lines: %d enqueues and %d acks reported", lines, len(enqueued), len(acked))

	j := openFile(t, path, journal.DefaultFileOptions())
	if rec := j.Recovered(); len(rec) != 0 {
		t.Fatalf("file did not open cleanly after SIGKILL: %v", rec)
	}
	ctx := t.Context()
	pending := map[string]bool{}
	inJournal := map[string]bool{}
	for g := range 4 {
		actor := fmt.Sprintf("crash/%d", g)
		due, err := j.Due(ctx, actor, time.Now().Add(time.Hour), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range due {
			pending[m.ID] = true
		}
		es, err := j.Read(ctx, actor, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Kind == journal.KindMessageAck {
				inJournal[e.IdempotencyKey] = true
			}
		}
	}
	for id := range pending {
		if inJournal[id] {
			t.Errorf("%s is pending and acknowledged in the journal", id)
		}
	}
	for id := range enqueued {
		if !pending[id] && !inJournal[id] {
			t.Errorf("%s: enqueued, but neither pending nor acknowledged", id)
		}
	}
	for id, actor := range acked {
		if !inJournal[id] || pending[id] {
			t.Errorf("%s: acknowledged, but in the journal %v, pending %v", id, inJournal[id], pending[id])
		}
		acc, err := j.Enqueue(ctx, queue.Message{ID: id, Actor: actor, Method: "m"})
		if err != nil || !acc.Duplicate {
			t.Errorf("resend of acknowledged %s: %+v, %v; want a duplicate", id, acc, err)
		}
	}
}
