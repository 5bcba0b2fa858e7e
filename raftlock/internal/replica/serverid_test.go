package replica

import "testing"

// A data dir keeps the server id it was given with its state; a dir that
// lost its state gets a new one; a dir written before per-dir ids keeps
// the node id.
func TestServerIDFollowsTheDataDir(t *testing.T) {
	dir := t.TempDir()
	id, err := resolveServerID(dir, "n1", false)
	if err != nil || NodeOf(id) != "n1" || id == "n1" {
		t.Fatalf("fresh dir: %q, %v", id, err)
	}
	again, err := resolveServerID(dir, "n1", true)
	if err != nil || again != id {
		t.Fatalf("dir with state: %q, %v; want %q", again, err, id)
	}
	wiped, err := resolveServerID(dir, "n1", false)
	if err != nil || wiped == id || NodeOf(wiped) != "n1" {
		t.Fatalf("dir without state: %q, %v; want a new id for n1", wiped, err)
	}
	if _, err := resolveServerID(dir, "n2", true); err == nil {
		t.Fatal("n2 took n1's data dir")
	}
	legacy := t.TempDir()
	if id, err := resolveServerID(legacy, "n1", true); err != nil || id != "n1" {
		t.Fatalf("dir from before per-dir ids: %q, %v; want n1", id, err)
	}
}
