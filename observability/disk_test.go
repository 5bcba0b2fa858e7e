package observability

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadWriteBytes(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		text string
		want uint64
		ok   bool
	}{
		{"rchar: 6976\nwchar: 0\nread_bytes: 4096\nwrite_bytes: 123456789\ncancelled_write_bytes: 0\n", 123456789, true},
		{"rchar: 6976\n", 0, false},
		{"write_bytes: lots\n", 0, false},
	} {
		p := filepath.Join(dir, "io")
		if err := os.WriteFile(p, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if n, ok := readWriteBytes(p); n != c.want || ok != c.ok {
			t.Errorf("readWriteBytes(%q) = %d, %v; want %d, %v", c.text, n, ok, c.want, c.ok)
		}
	}
	if _, ok := readWriteBytes(filepath.Join(dir, "missing")); ok {
		t.Error("a missing file read")
	}
}
