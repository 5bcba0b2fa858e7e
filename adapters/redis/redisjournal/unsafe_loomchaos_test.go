//go:build loomchaos

package redisjournal_test

import (
	"errors"
	"testing"

	"github.com/loom-mesh/loom/internal/redistest"
	"github.com/loom-mesh/loom/journal"
)

// TestUnsafeSkipFence: a stale owner's append (old token, the seq it had
// replayed) is refused by the default append, as a conflict (the
// expected-seq check alone stops it) and, stamped at the log's end, as
// fenced; with SetUnsafeSkipFence it lands after the new owner's entry,
// under the old token.
func TestUnsafeSkipFence(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	ctx := t.Context()
	e := func(m string) []journal.Entry { return []journal.Entry{{Kind: journal.KindInvocation, Method: m}} }
	safe := open(t, s.Addr)
	for _, a := range []string{"safe", "unsafe"} {
		if _, err := safe.Append(ctx, a, 5, 0, e("old owner")); err != nil {
			t.Fatal(err)
		}
		if _, err := safe.Append(ctx, a, 6, 1, e("new owner")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := safe.Append(ctx, "safe", 5, 1, e("zombie")); !errors.Is(err, journal.ErrConflict) && !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("stale append at its own seq: %v, want a refusal", err)
	}
	if _, err := safe.Append(ctx, "safe", 5, 2, e("zombie")); !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("stale append at the log's end: %v, want ErrFenced", err)
	}

	unsafe := open(t, s.Addr)
	unsafe.SetUnsafeSkipFence()
	tail, err := unsafe.Append(ctx, "unsafe", 5, 1, e("zombie"))
	if err != nil || tail != 3 {
		t.Fatalf("unsafe stale append: tail %d, %v; want 3, nil", tail, err)
	}
	got, err := unsafe.Read(ctx, "unsafe", 1)
	if err != nil {
		t.Fatal(err)
	}
	var tokens []uint64
	for _, x := range got {
		tokens = append(tokens, x.Token)
	}
	if len(got) != 3 || got[2].Method != "zombie" || tokens[1] != 6 || tokens[2] != 5 {
		t.Fatalf("log %+v (tokens %v), want the zombie's entry third under token 5", got, tokens)
	}
	// The default journal of the same server still fences.
	if _, err := safe.Append(ctx, "unsafe", 4, 3, e("older")); !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("default append under token 4 after 5: %v, want ErrFenced", err)
	}
}
