package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
	"github.com/loom-mesh/loom/runtime"
)

// The overload scenario (--overload): can one hot actor, called far
// beyond what it can serve, hurt the others? Two phases of --duration each,
// with the same --callers calling counter.get on (at most 1,000 of)
// --actors other actors:
//
//	baseline  only those callers
//	busy      the same, while --busy-callers goroutines call counter.add
//	          on one actor ("hot") in a loop: the hot actor at its capacity
//	flood     the same with --hot-callers goroutines on the hot actor, far
//	          past its mailbox bound (maxQueue), each waiting --hot-pause
//	          after an overloaded answer (429 / ErrOverloaded)
//
// For each phase it prints the other actors' calls/s, p50 and p99, what the
// hot actor answered (ok, overloaded, other errors), and, sampled every
// 250 ms from each node's /metrics (--http-addrs), the largest counter
// mailbox depth (loom_mailbox_depth) and each node's resident memory at
// the start and end of the phase and at its peak, and its CPU use (cores).
// The bound works when
// flood looks like busy: the callers beyond the queue cost the others
// nothing but their refusals.
type overloadFlags struct {
	httpAddrs   string
	hotCallers  int
	busyCallers int
	hotPause    time.Duration
}

func overload(ctx context.Context, w io.Writer, cl *client.Client, nh *nodeHTTP, of overloadFlags, callers, actors int, d time.Duration) error {
	ids := make([]string, actors)
	for a := range ids {
		ids[a] = "o" + strconv.Itoa(a)
	}
	if err := warmUp(64, actors, func(a int) error {
		_, err := builtin.CounterAdd.Call(ctx, cl, ids[a], builtin.CounterDelta{Delta: 1})
		return err
	}); err != nil {
		return fmt.Errorf("activating the actors: %w", err)
	}
	if _, err := builtin.CounterAdd.Call(ctx, cl, "hot", builtin.CounterDelta{Delta: 1}); err != nil {
		return fmt.Errorf("activating the hot actor: %w", err)
	}
	cold := func() result {
		return load("others", callers, d, func(g int, i int64) error {
			_, err := builtin.CounterGet.Call(ctx, cl, ids[(int64(g)*7919+i)%int64(actors)])
			return err
		})
	}
	base := cold()

	nodes := strings.Split(of.httpAddrs, ",")
	busy := hotPhase(ctx, cl, of.busyCallers, of.hotPause, nh, nodes, cold)
	flood := hotPhase(ctx, cl, of.hotCallers, of.hotPause, nh, nodes, cold)

	fmt.Fprintf(w, "loom-bench overload: %d callers on %d other actors; counter/hot called by %d (busy) then %d (flood) callers, each pausing %v after a 429; %v per phase\n",
		callers, actors, of.busyCallers, of.hotCallers, of.hotPause, d)
	fmt.Fprintf(w, "%-10s %14s %10s %10s %8s %12s %14s %10s %s\n", "phase", "others calls/s", "p50", "p99", "errors", "hot ok/s", "hot 429/s", "hot errs", "per node: max mailbox, memory start→end (max), CPU")
	for _, p := range []struct {
		name string
		r    result
		hot  *hotResult
	}{{"baseline", base, nil}, {"busy", busy.others, &busy}, {"flood", flood.others, &flood}} {
		slices.Sort(p.r.lat)
		fmt.Fprintf(w, "%-10s %14.0f %10v %10v %8d", p.name, p.r.rate(),
			percentile(p.r.lat, 0.50).Round(time.Microsecond), percentile(p.r.lat, 0.99).Round(time.Microsecond), p.r.errors)
		if p.hot == nil {
			fmt.Fprintln(w)
			continue
		}
		h := p.hot
		fmt.Fprintf(w, " %12.0f %14.0f %10d ", float64(h.ok)/d.Seconds(), float64(h.overloaded)/d.Seconds(), h.errs)
		var parts []string
		for _, s := range h.nodes {
			parts = append(parts, fmt.Sprintf("%s: %.0f, %.0f→%.0f MiB (%.0f), %.2f cores", s.addr, s.maxDepth, s.rssFirst/(1<<20), s.rssLast/(1<<20), s.rssMax/(1<<20), s.cpu()))
		}
		fmt.Fprintln(w, strings.Join(parts, "; "))
		if h.firstErr != nil {
			fmt.Fprintf(w, "  first hot error: %v\n", h.firstErr)
		}
	}
	return nil
}

// hotResult is one phase with callers on the hot actor.
type hotResult struct {
	others         result
	ok, overloaded int64
	errs           int64
	firstErr       error
	nodes          []nodeSample
}

// hotPhase runs measure (the other actors' load) while n goroutines call
// counter.add on "hot", and samples the nodes meanwhile.
func hotPhase(ctx context.Context, cl *client.Client, n int, pause time.Duration, nh *nodeHTTP, nodes []string, measure func() result) hotResult {
	var hotOK, hotOver, hotErr atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := builtin.CounterAdd.Call(cctx, cl, "hot", builtin.CounterDelta{Delta: 1})
				cancel()
				switch {
				case err == nil:
					hotOK.Add(1)
				case errors.Is(err, runtime.ErrOverloaded):
					hotOver.Add(1)
					time.Sleep(pause) // a caller told to back off
				default:
					hotErr.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	samples := make(chan []nodeSample, 1)
	go func() { samples <- sampleNodes(nh, nodes, stop) }()
	others := measure()
	close(stop)
	wg.Wait()
	h := hotResult{others: others, ok: hotOK.Load(), overloaded: hotOver.Load(), errs: hotErr.Load(), nodes: <-samples}
	h.firstErr, _ = firstErr.Load().(error)
	return h
}

// percentile of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p)]
}

// nodeSample is what sampleNodes saw of one node.
type nodeSample struct {
	addr                              string
	maxDepth                          float64
	rssFirst, rssLast, rssMax, points float64
	cpuFirst, cpuLast                 float64 // process_cpu_seconds_total
	tFirst, tLast                     time.Time
}

// cpu is the node's CPU use between the first and last samples, in cores.
func (s nodeSample) cpu() float64 {
	if d := s.tLast.Sub(s.tFirst).Seconds(); d > 0 {
		return (s.cpuLast - s.cpuFirst) / d
	}
	return 0
}

// sampleNodes reads each node's /metrics every 250 ms until stop.
func sampleNodes(nh *nodeHTTP, addrs []string, stop <-chan struct{}) []nodeSample {
	out := make([]nodeSample, len(addrs))
	for i, a := range addrs {
		out[i].addr = a
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		for i, a := range addrs {
			m, err := nh.metrics(a, 2*time.Second)
			if err != nil {
				continue
			}
			s := &out[i]
			s.maxDepth = max(s.maxDepth, m[`loom_mailbox_depth{type="counter"}`])
			rss, cpu, now := m["process_resident_memory_bytes"], m["process_cpu_seconds_total"], time.Now()
			if s.points == 0 {
				s.rssFirst, s.cpuFirst, s.tFirst = rss, cpu, now
			}
			s.rssLast, s.rssMax = rss, max(s.rssMax, rss)
			s.cpuLast, s.tLast = cpu, now
			s.points++
		}
		select {
		case <-stop:
			return out
		case <-t.C:
		}
	}
}
