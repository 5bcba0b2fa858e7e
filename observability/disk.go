package observability

import (
	"bufio"
	"bytes"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// diskCollector exports the bytes this process caused to be written to
// storage: write_bytes of /proc/self/io, which counts what reached the
// block layer (a page written twice before it was flushed counts once;
// fsyncs of nothing new count nothing). Only on systems that have the
// file (Linux); registered nowhere else.
type diskCollector struct{ desc *prometheus.Desc }

const procIO = "/proc/self/io"

func newDiskCollector() (prometheus.Collector, bool) {
	if _, ok := readWriteBytes(procIO); !ok {
		return nil, false
	}
	return diskCollector{prometheus.NewDesc("loom_disk_written_bytes_total",
		"Bytes this process has caused to be written to storage (write_bytes of /proc/self/io): the Raft log, the state machine, journals, snapshots.",
		nil, nil)}, true
}

func (c diskCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c diskCollector) Collect(ch chan<- prometheus.Metric) {
	if n, ok := readWriteBytes(procIO); ok {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n))
	}
}

// readWriteBytes reads the write_bytes line of a /proc/<pid>/io file.
func readWriteBytes(path string) (uint64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("write_bytes:")); ok {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
