package raftlock

import (
	"context"
	"time"

	"github.com/loom-mesh/loom/raftlock/internal/replica"
)

// The Store's side of the replicated command layer (internal/replica):
// what the layer needs to know of raftlock's commands and results (codec),
// the ids and birth times that make commands exactly-once (exec), and the
// lock-specific duties of a leader (the leader-start command on taking
// office, the reaper while it leads).

// codec is what the replica layer knows of raftlock's commands and
// results (replica.Codec).
type codec struct{}

var _ replica.Codec[result] = codec{}

func (codec) Name(cmd []byte) string                { return cmdOp(cmd).String() }
func (codec) MarkRetry(cmd []byte)                  { markRetry(cmd) }
func (codec) EncodeResult(r result) []byte          { return encodeResult(r) }
func (codec) DecodeResult(b []byte) (result, error) { return decodeResult(b) }
func (codec) Retry(text string) result              { return result{code: codeRetry, text: text} }
func (codec) IsRetry(r result) bool                 { return r.code == codeRetry }

// exec runs one command through the committer and waits until this node's
// replica has applied it, so that a read after exec returns sees it.
// Commands other than noop and reap get a fresh id, and are born at this
// replica's clock (see command.born).
func (s *Store) exec(ctx context.Context, c command) (result, error) {
	if c.op != opNoop && c.op != opReap {
		c.id = cmdID{origin: s.origin, seq: s.seq.Add(1)}
		_, c.born, _ = s.fsm.Progress()
	}
	return s.execEncoded(ctx, c.op, encodeCommand(c))
}

// journalWrite reports whether o is a journal write (see execEncoded).
func journalWrite(o op) bool {
	return o == opAppend || o == opSaveSnapshot || o == opTruncate || o == opQueue
}

// execEncoded is exec for a command already encoded (with its id). A
// journal write is durable once committed, and nothing reads its result
// from this replica right away: it does not wait for this node to learn of
// the commit (on a follower that can take up to a CommitTimeout). Reads on
// this node wait for it instead (see enterRead), so this node still reads
// its own writes.
func (s *Store) execEncoded(ctx context.Context, o op, cmd []byte) (result, error) {
	return s.rep.Exec(ctx, cmd, !journalWrite(o))
}

// HandleForward applies a forward request from a follower's committer (the
// bytes its Forwarder sent) as the leader, and returns the encoded answer
// for the Forwarder to carry back. A request with no commands is a nudge:
// the leader appends a Barrier entry, so that followers learn the latest
// commit index at once. The commands join this node's queue and
// share its next Raft entries. It fails with ErrNotLeader (no effect) if
// this node is not the leader or has not yet taken office; a command that
// the node could not commit because it lost leadership meanwhile is
// answered "retry" inside the response. If ctx ends first the error wraps
// ctx.Err() and the outcome is unknown (the follower retries; commands are
// deduplicated).
func (s *Store) HandleForward(ctx context.Context, batch []byte) ([]byte, error) {
	return s.rep.HandleForward(ctx, batch)
}

// takeOffice is a new leader's first command, once every entry of earlier
// terms is applied here (replica.Config.TakeOffice): leader-start, which
// expires the sessions that had lapsed by the previous leader's last stamp
// and extends every other one to at least a full TTL from this leader's
// clock. Only then does the node commit commands or accept forwarded ones.
func takeOffice(_ context.Context, commit func(cmds ...[]byte) ([]result, error)) error {
	_, err := commit(encodeCommand(command{op: opLeaderStart}))
	return err
}

// reap runs while this node leads (replica.Config.WhileLeading): every
// ReapInterval, if its replica has sessions past their deadline by the
// leader's clock, it commits a reap command.
func (s *Store) reap(ctx context.Context, rep *replica.Group[result]) {
	t := time.NewTicker(s.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lapsed, err := s.fsm.hasLapsed(rep.Stamp().UnixNano())
		if err != nil || !lapsed {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*s.cfg.ReapInterval)
		if _, err := rep.Exec(rctx, encodeCommand(command{op: opReap}), true); err != nil && ctx.Err() == nil {
			rep.Logger().Warn("raftlock: reap failed", "err", err)
		}
		cancel()
	}
}
