package replica

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"
)

// serverIDFile holds, in Config.Dir, the Raft server id made for the
// data dir when Config.PerDirServerID is set.
const serverIDFile = "server-id"

// incarnationSep separates a node's name from the suffix that makes a
// per-data-dir server id: node + "@" + 16 hex digits.
const incarnationSep = "@"

const incarnationHex = 16

// NodeOf is the node a Raft server id belongs to: the id without the
// per-data-dir suffix Config.PerDirServerID adds, or the id itself when it
// has none (a server id made by an earlier release, or a test's).
func NodeOf(id raft.ServerID) string {
	s := string(id)
	i := strings.LastIndex(s, incarnationSep)
	if i < 0 || len(s)-i-1 != incarnationHex {
		return s
	}
	if _, err := hex.DecodeString(s[i+1:]); err != nil {
		return s
	}
	return s[:i]
}

// newServerID makes a fresh server id for node: one no data dir has had
// before, so that a server that lost its state never speaks under the id
// of the one that had it.
func newServerID(node raft.ServerID) raft.ServerID {
	var b [incarnationHex / 2]byte
	_, _ = rand.Read(b[:])
	return raft.ServerID(string(node) + incarnationSep + hex.EncodeToString(b[:]))
}

// resolveServerID returns the server id of the data dir whose Raft files
// are in dir. A dir without Raft state gets a fresh id (any id file it
// holds belonged to a server that never voted nor stored an entry, or to
// state that was wiped around it); a dir with state keeps the id in its
// file, or, written by a release before per-dir ids, node itself. The id
// is on disk (fsynced, and renamed into place) before Raft starts with it.
// Errors have no prefix: Open adds the Group's name.
func resolveServerID(dir string, node raft.ServerID, hasState bool) (raft.ServerID, error) {
	path := filepath.Join(dir, serverIDFile)
	if hasState {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			id := raft.ServerID(strings.TrimSpace(string(b)))
			if NodeOf(id) != string(node) {
				return "", fmt.Errorf("data dir %s belongs to node %q (server id %q), not to %q", dir, NodeOf(id), id, node)
			}
			return id, nil
		case errors.Is(err, fs.ErrNotExist):
			return node, writeFileSync(path, []byte(string(node)+"\n"))
		default:
			return "", fmt.Errorf("read %s: %w", path, err)
		}
	}
	id := newServerID(node)
	return id, writeFileSync(path, []byte(string(id)+"\n"))
}

// writeFileSync writes path atomically: a temporary file, fsynced, renamed
// over path, and the directory fsynced.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}
