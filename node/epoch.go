package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loom-mesh/loom/lock"
)

// nextEpoch raises the epoch counter stored in dir and returns the new
// value. The write is fsynced (file and directory) before it returns, so an
// epoch is never handed out twice even across a crash.
func nextEpoch(dir string) (uint64, error) {
	path := filepath.Join(dir, "coordinator.epoch")
	var epoch uint64
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		epoch, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("node: %s is corrupt: %w", path, err)
		}
	case os.IsNotExist(err):
	default:
		return 0, fmt.Errorf("node: reading %s: %w", path, err)
	}
	epoch++
	if epoch >= 1<<32 {
		return 0, fmt.Errorf("node: %s: epoch counter exhausted", path)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, fmt.Errorf("node: writing epoch: %w", err)
	}
	if _, err := f.WriteString(strconv.FormatUint(epoch, 10) + "\n"); err != nil {
		f.Close()
		return 0, fmt.Errorf("node: writing epoch: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, fmt.Errorf("node: writing epoch: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("node: writing epoch: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("node: writing epoch: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return epoch, nil
}

// epochCoordinator places an epoch in the high 32 bits of the tokens of an
// in-memory coordinator, so tokens granted after a restart exceed every
// token granted before it.
type epochCoordinator struct {
	lock.Coordinator
	base uint64
}

func (c epochCoordinator) Acquire(ctx context.Context, s lock.SessionID, key string) (uint64, error) {
	tok, err := c.Coordinator.Acquire(ctx, s, key)
	if err != nil {
		return 0, c.shift(err)
	}
	if tok >= 1<<32 {
		return 0, fmt.Errorf("node: token space of epoch %d exhausted; restart the node", c.base>>32)
	}
	return c.base | tok, nil
}

func (c epochCoordinator) Holder(ctx context.Context, key string) (lock.LockInfo, bool, error) {
	info, ok, err := c.Coordinator.Holder(ctx, key)
	if ok {
		info.Token |= c.base
	}
	return info, ok, err
}

func (c epochCoordinator) shift(err error) error {
	if he, ok := err.(*lock.HeldError); ok {
		cp := *he
		cp.Token |= c.base
		return &cp
	}
	return err
}
