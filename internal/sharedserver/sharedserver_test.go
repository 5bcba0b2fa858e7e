package sharedserver

import (
	"errors"
	"testing"
)

// TestStartOnceStopOnce: the server starts on the first Get and only then,
// every Get returns it, and Around stops it once after the tests; a
// server that did not start is not stopped.
func TestStartOnceStopOnce(t *testing.T) {
	starts, stops := 0, 0
	x := New("t", func() (int, error) { starts++; return 42, nil }, func(int) { stops++ })
	code := x.Around(func() int {
		if !x.Running() {
			t.Error("Running is false inside Around")
		}
		for range 3 {
			if got := x.Get(t); got != 42 {
				t.Errorf("Get = %d", got)
			}
		}
		return 7
	})
	if code != 7 || starts != 1 || stops != 1 {
		t.Fatalf("code %d, %d starts, %d stops; want 7, 1, 1", code, starts, stops)
	}
	never := New("t", func() (int, error) { starts++; return 0, errors.New("no") }, func(int) { stops++ })
	never.Around(func() int { return 0 })
	if starts != 1 || stops != 1 {
		t.Fatalf("a server nobody asked for: %d starts, %d stops", starts, stops)
	}
}
