// Package safebuf is a bytes buffer that goroutines may write to while
// another reads it: the log or output a test collects from a node or a
// process and then searches.
package safebuf

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer whose String may be called at any time, from
// any goroutine. The zero value is empty and ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
