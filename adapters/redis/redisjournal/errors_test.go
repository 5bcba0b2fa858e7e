package redisjournal_test

import (
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/journal"
)

// TestUnreachable: a server that cannot be reached is reported as such,
// naming it, both by Open and by an operation of an open journal whose
// server has gone away; the operation had no effect.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	o := redisjournal.DefaultOptions()
	o.Redis = redis.Options{Addr: addr}
	j, err := redisjournal.Open(t.Context(), o)
	if err == nil {
		j.Close()
		t.Fatal("Open of an address where nothing listens succeeded")
	}
	if !errors.Is(err, redisjournal.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Open: %v; want ErrUnavailable naming %s", err, addr)
	}

	s := redistest.Start(t, redistest.Options{})
	j = open(t, s.Addr)
	mustAppendAt(t, j, "a", 0)
	s.Kill()
	_, err = j.Append(t.Context(), "a", 1, 1, crashEntries("a", 1, 1))
	if !errors.Is(err, redisjournal.ErrUnavailable) || !errors.Is(err, journal.ErrUnavailable) || !strings.Contains(err.Error(), s.Addr) {
		t.Fatalf("Append with the server killed: %v; want ErrUnavailable (the adapter's and the contract's) naming %s", err, s.Addr)
	}
	if _, err := j.Tail(t.Context(), "a"); !errors.Is(err, redisjournal.ErrUnavailable) {
		t.Fatalf("Tail with the server killed: %v; want ErrUnavailable", err)
	}
	s.Restart()
	checkLog(t, j, "a", 1)
	if tl, _ := j.Tail(t.Context(), "a"); tl.Seq != 1 {
		t.Fatalf("the append that failed as unavailable took effect: tail %d", tl.Seq)
	}
	mustAppendAt(t, j, "a", 1)
}

// TestUnknownOutcome: an append that reached Redis and whose answer was
// lost is reported as ErrUnknownOutcome, never as a refusal, whether it
// was applied (the answer was lost on the way back) or not (the request
// was lost on the way there).
func TestUnknownOutcome(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	for _, c := range []struct {
		name    string
		mode    int32
		applied bool
	}{
		{"answer lost", dropAnswers, true},
		{"request lost", dropRequests, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := startProxy(t, s.Addr)
			j := open(t, p.addr)
			actor := "unknown-" + c.name
			mustAppendAt(t, j, actor, 0)
			p.mode.Store(c.mode)
			_, err := j.Append(t.Context(), actor, 1, 1, crashEntries(actor, 1, 2))
			if !errors.Is(err, redisjournal.ErrUnknownOutcome) || !errors.Is(err, journal.ErrUnknownOutcome) {
				t.Fatalf("Append whose answer was lost: %v; want ErrUnknownOutcome (the adapter's and the contract's)", err)
			}
			for _, ref := range []error{journal.ErrConflict, journal.ErrFenced, journal.ErrInvalid, redisjournal.ErrUnavailable, journal.ErrUnavailable} {
				if errors.Is(err, ref) {
					t.Fatalf("an unknown outcome reported as %v: %v", ref, err)
				}
			}
			direct := open(t, s.Addr)
			want := uint64(1)
			if c.applied {
				want = 3
			}
			if got := checkLog(t, direct, actor, 1); got != want {
				t.Fatalf("tail %d after the lost append, want %d", got, want)
			}
			t.Logf("%v", err)
		})
	}
}

// Proxy modes.
const (
	passThrough  = iota
	dropAnswers  // forward requests; swallow the answer, then cut the connection
	dropRequests // swallow requests, then cut the connection
)

// proxy forwards TCP connections to a Redis server and, once its mode says
// so, loses what crosses it.
type proxy struct {
	addr string
	mode atomic.Int32
}

func startProxy(t *testing.T, upstream string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			track(down)
			track(up)
			cut := func() { down.Close(); up.Close() }
			wg.Go(func() { p.pipe(down, up, dropRequests, cut) })
			wg.Go(func() { p.pipe(up, down, dropAnswers, cut) })
		}
	})
	return p
}

// pipe copies from src to dst until either fails; bytes read while the
// mode is drop are thrown away and the connection is cut.
func (p *proxy) pipe(src, dst net.Conn, drop int32, cut func()) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.mode.Load() == drop {
				cut()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				cut()
				return
			}
		}
		if err != nil {
			cut()
			return
		}
	}
}
