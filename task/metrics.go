package task

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DurationBuckets are the upper bounds, in seconds, of the run duration
// histogram: from 50 µs (a task that computes) to 60 s (one that waits on
// retries).
var DurationBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// bucketNanos is DurationBuckets in nanoseconds, for Observe.
var bucketNanos = func() []int64 {
	out := make([]int64, len(DurationBuckets))
	for i, b := range DurationBuckets {
		out[i] = int64(b * float64(time.Second))
	}
	return out
}()

// stats are one task's counters, updated by every Run of it with a few
// atomic adds (no lock), read by a Collector.
type stats struct {
	runs, failures, retries atomic.Uint64
	sumNanos                atomic.Uint64
	buckets                 []atomic.Uint64 // per bucket (not cumulative); the last one is +Inf
}

func newStats() *stats {
	return &stats{buckets: make([]atomic.Uint64, len(bucketNanos)+1)}
}

func (s *stats) observe(d time.Duration, failed bool, attempts int) {
	s.runs.Add(1)
	if failed {
		s.failures.Add(1)
	}
	if attempts > 1 {
		s.retries.Add(uint64(attempts - 1))
	}
	ns := int64(d)
	if ns < 0 {
		ns = 0
	}
	s.sumNanos.Add(uint64(ns))
	i := sort.Search(len(bucketNanos), func(i int) bool { return bucketNanos[i] >= ns })
	s.buckets[i].Add(1)
}

// statsNode is what a Collector walks: a task's own stats and those of the
// steps it is composed of.
type statsNode interface {
	Name() string
	taskStats() *stats
	steps() []statsNode
}

// Metric names, all labeled by task name.
const (
	metricRuns     = "loom_task_runs_total"
	metricFailures = "loom_task_failures_total"
	metricRetries  = "loom_task_retries_total"
	metricDuration = "loom_task_duration_seconds"
)

var (
	descRuns     = prometheus.NewDesc(metricRuns, "Task runs finished, by task name.", []string{"task"}, nil)
	descFailures = prometheus.NewDesc(metricFailures, "Task runs that failed (after their retries), by task name.", []string{"task"}, nil)
	descRetries  = prometheus.NewDesc(metricRetries, "Attempts beyond the first, by task name.", []string{"task"}, nil)
	descDuration = prometheus.NewDesc(metricDuration, "Duration of task runs, retries and backoff included, by task name.", []string{"task"}, nil)
)

// Collector is a prometheus.Collector over some tasks and the steps they
// are composed of: runs, failures, retries and a duration histogram per
// task name. Registering it sets no global; build one with NewCollector
// or take a Registry's.
//
// A task's counters live with the task (a *Task value), so they count
// every run of it in the process, from anywhere. Tasks that share a name
// are summed under it.
type Collector struct {
	roots func() []statsNode
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector collects the given tasks (and their steps).
func NewCollector(tasks ...Definition) *Collector {
	roots := make([]statsNode, len(tasks))
	for i, t := range tasks {
		roots[i] = t
	}
	return &Collector{roots: func() []statsNode { return roots }}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRuns
	ch <- descFailures
	ch <- descRetries
	ch <- descDuration
}

// merged is the sum of the stats of the tasks sharing a name.
type merged struct {
	runs, failures, retries, sumNanos uint64
	buckets                           []uint64
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	byName := map[string]*merged{}
	seen := map[*stats]bool{}
	var visit func(n statsNode)
	visit = func(n statsNode) {
		s := n.taskStats()
		if seen[s] {
			return
		}
		seen[s] = true
		m := byName[n.Name()]
		if m == nil {
			m = &merged{buckets: make([]uint64, len(s.buckets))}
			byName[n.Name()] = m
		}
		m.runs += s.runs.Load()
		m.failures += s.failures.Load()
		m.retries += s.retries.Load()
		m.sumNanos += s.sumNanos.Load()
		for i := range s.buckets {
			m.buckets[i] += s.buckets[i].Load()
		}
		for _, st := range n.steps() {
			visit(st)
		}
	}
	for _, r := range c.roots() {
		visit(r)
	}
	for name, m := range byName {
		ch <- prometheus.MustNewConstMetric(descRuns, prometheus.CounterValue, float64(m.runs), name)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(m.failures), name)
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(m.retries), name)
		cum := map[float64]uint64{}
		var total uint64
		for i, b := range DurationBuckets {
			total += m.buckets[i]
			cum[b] = total
		}
		total += m.buckets[len(DurationBuckets)]
		ch <- prometheus.MustNewConstHistogram(descDuration, total, float64(m.sumNanos)/1e9, cum, name)
	}
}
