//go:build loomchaos

package redisjournal

import (
	"context"
	"errors"

	"github.com/loom-mesh/loom/journal"
)

// The unsafe variant of the append, for the chaos suite's proof that its
// checkers catch a journal that does not fence (test/chaos,
// TestChaosCheckersBite, loom-node --debug-unsafe redis-skip-fence). It is
// compiled only with -tags loomchaos; the default build has neither the
// script nor the setter, and its append script is appendScript, untouched.

// appendNoFenceScript is appendScript without the fencing check: an
// append under a token lower than the highest the actor has seen is
// accepted (and lowers the head's token). The expected-seq check stays.
var appendNoFenceScript = newScript(scriptPrelude + `
if ARGV[2] ~= tail then
  return {'no', tail, token, snapseq}
end
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[2], ARGV[i], 'e', ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'tail', ARGV[3], 'token', ARGV[1])
return {'ok', tail, token, snapseq}
`)

func init() { scripts = append(scripts, appendNoFenceScript) }

// unsafeRebases bounds how often one unsafe append is moved to the log's
// new end.
const unsafeRebases = 8

// SetUnsafeSkipFence makes j's appends (those without queue entries)
// unfenced. DEBUG ONLY: it breaks the journal's contract on purpose. Call
// it before j is used.
//
// Each append runs appendNoFenceScript; one refused because the log moved
// past its expected seq is stamped again at the log's end and sent again
// (up to unsafeRebases times), under the same token. Without that the
// missing fence could never show: a stale owner's expected seq is behind
// every entry the new owner wrote (the runtime appends at the seq it has
// replayed, and refuses at activation a tail written under a higher
// token), so its append is refused as a conflict before its token matters.
// An append that is retried at the log's end is what the fencing check is
// for: with it, such an append under an old token is refused (ErrFenced);
// without it, it lands after the new owner's entries under the old token.
func (j *Journal) SetUnsafeSkipFence() { j.unsafeAppend = j.appendSkipFence }

func (j *Journal) appendSkipFence(ctx context.Context, actor string, token, expectedSeq uint64, entries []journal.Entry) (uint64, error) {
	for attempt := 0; ; attempt++ {
		tail, err := j.appendWith(ctx, appendNoFenceScript, actor, token, expectedSeq, entries)
		if attempt == unsafeRebases || !errors.Is(err, journal.ErrConflict) && !errors.Is(err, journal.ErrFenced) {
			return tail, err
		}
		t, terr := j.Tail(ctx, actor)
		if terr != nil || t.Seq == expectedSeq {
			return tail, err
		}
		expectedSeq = t.Seq
	}
}
