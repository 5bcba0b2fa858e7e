package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loom-mesh/loom/builtin"
	"github.com/loom-mesh/loom/client"
)

// Durable messaging. The send scenario measures accepted messages: a
// counter.add sent as a durable message through the cluster client, which
// answers once the message is committed (a Raft quorum), not applied. It
// runs in the rotation beside durable-add, whose rate it is compared with.
//
// send-deliver (--deliver-duration, after the rotation) measures the whole
// path: the same sends for the duration, while each node's /metrics is
// sampled every second; it reports the accepted and applied rates, the
// backlog (messages waiting, summed over the types) as it went, how long
// the backlog took to drain once the sends stopped, and p50/p99 of the
// time from acceptance to application, from the nodes'
// loom_message_delivery_seconds histograms (interpolated within a
// bucket).

// send is the send scenario's call.
func sendOne(ctx context.Context, cl *client.Client, id string) error {
	_, err := builtin.CounterAdd.Send(ctx, cl, id, builtin.CounterDelta{Delta: 1})
	return err
}

// sample is one scrape of every node.
type sample struct {
	at        time.Duration // since the start
	backlog   float64       // loom_message_queue_depth summed over types (one node's view: the store is shared)
	delivered float64       // loom_messages_delivered_total{outcome="ok"}, summed over nodes
	buckets   map[float64]float64
	count     float64
}

// scrapeMessages reads the messaging figures from every node.
func scrapeMessages(nh *nodeHTTP, httpAddrs []string, at time.Duration) (sample, error) {
	s := sample{at: at, buckets: map[float64]float64{}}
	for i, a := range httpAddrs {
		m, err := nh.metrics(a, 5*time.Second)
		if err != nil {
			return s, err
		}
		for k, v := range m {
			switch {
			case strings.HasPrefix(k, "loom_message_queue_depth{") && i == 0:
				s.backlog += v
			case strings.HasPrefix(k, "loom_messages_delivered_total{") && strings.Contains(k, `outcome="ok"`):
				s.delivered += v
			case strings.HasPrefix(k, "loom_message_delivery_seconds_bucket{"):
				if le, ok := label(k, "le"); ok {
					b, err := strconv.ParseFloat(le, 64)
					if le == "+Inf" {
						b, err = math.Inf(1), nil
					}
					if err == nil {
						s.buckets[b] += v
					}
				}
			case strings.HasPrefix(k, "loom_message_delivery_seconds_count{"):
				s.count += v
			}
		}
	}
	return s, nil
}

// label returns a label's value from a series name.
func label(series, name string) (string, bool) {
	i := strings.Index(series, name+`="`)
	if i < 0 {
		return "", false
	}
	rest := series[i+len(name)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return rest[:j], true
}

// quantile interpolates the q-quantile of the observations between two
// cumulative histograms (end minus start).
func quantile(start, end sample, q float64) time.Duration {
	bounds := make([]float64, 0, len(end.buckets))
	for b := range end.buckets {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	total := end.count - start.count
	if total <= 0 {
		return 0
	}
	rank := q * total
	prevBound, prevCum := 0.0, 0.0
	for _, b := range bounds {
		cum := end.buckets[b] - start.buckets[b]
		if cum >= rank {
			if math.IsInf(b, 1) {
				return time.Duration(prevBound * float64(time.Second))
			}
			frac := 0.0
			if cum > prevCum {
				frac = (rank - prevCum) / (cum - prevCum)
			}
			return time.Duration((prevBound + frac*(b-prevBound)) * float64(time.Second))
		}
		prevBound, prevCum = b, cum
	}
	return time.Duration(prevBound * float64(time.Second))
}

// sendDeliver runs the send-deliver measurement and prints it.
func sendDeliver(ctx context.Context, w io.Writer, cl *client.Client, nh *nodeHTTP, httpAddrs []string, callers int, id func(g int, i int64) string, d time.Duration) error {
	start := time.Now()
	first, err := scrapeMessages(nh, httpAddrs, 0)
	if err != nil {
		return fmt.Errorf("reading /metrics (--http-addrs): %w", err)
	}
	var samples []sample
	var mu sync.Mutex
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if s, err := scrapeMessages(nh, httpAddrs, time.Since(start)); err == nil {
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
			}
		}
	})
	var sent atomic.Int64
	res := load("send-deliver", callers, d, func(g int, i int64) error {
		err := sendOne(ctx, cl, id(g, i))
		if err == nil {
			sent.Add(1)
		}
		return err
	})
	sendEnd, err := scrapeMessages(nh, httpAddrs, time.Since(start))
	if err != nil {
		close(stop)
		sampler.Wait()
		return err
	}
	// Drain: until the backlog is empty (bounded).
	drainStart := time.Now()
	last := sendEnd
	for last.backlog > 0 && time.Since(drainStart) < 5*time.Minute {
		time.Sleep(250 * time.Millisecond)
		if s, err := scrapeMessages(nh, httpAddrs, time.Since(start)); err == nil {
			last = s
		}
	}
	drained := time.Since(drainStart)
	close(stop)
	sampler.Wait()

	fmt.Fprintf(w, "\nsend-deliver: %d callers sending counter.add messages for %v, then draining\n", callers, d)
	fmt.Fprintf(w, "  accepted  %8.0f msgs/s   accept p50 %v  p99 %v  (errors %d)\n", res.rate(), pct(res.lat, 0.5), pct(res.lat, 0.99), res.errors)
	fmt.Fprintf(w, "  applied   %8.0f msgs/s   while sending (delivered ok, all nodes)\n", (sendEnd.delivered-first.delivered)/res.elapsed.Seconds())
	fmt.Fprintf(w, "  end to end (accepted -> applied): p50 %v  p99 %v\n", quantile(first, last, 0.5).Round(time.Millisecond), quantile(first, last, 0.99).Round(time.Millisecond))
	fmt.Fprintf(w, "  backlog (messages waiting):")
	for _, s := range samples {
		if s.at <= res.elapsed+time.Second && int(s.at.Seconds())%10 == 0 {
			fmt.Fprintf(w, " %ds:%.0f", int(s.at.Seconds()), s.backlog)
		}
	}
	fmt.Fprintf(w, "  at the end of the sends: %.0f; drained %.0f in %v\n", sendEnd.backlog, sendEnd.backlog-last.backlog, drained.Round(100*time.Millisecond))
	if res.firstErr != nil {
		fmt.Fprintf(w, "  first error: %v\n", res.firstErr)
	}
	return nil
}

// pct is the p-quantile of unsorted latencies.
func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return percentile(s, p).Round(time.Microsecond)
}
