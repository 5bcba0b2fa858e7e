package raftlock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/loom-mesh/loom/internal/kv"
	"github.com/loom-mesh/loom/journal"
	"github.com/loom-mesh/loom/lock"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/raftlock/internal/replica"
)

// wireVersion is the first byte of every batch, forward request and forward
// response (the replica layer's framing, replica.Wire, around raftlock's
// commands and results). A reader refuses any value above it, or below
// minWireVersion (errBadWire), so a newer release's log entries are never
// misread. Version 2 added a command's birth time and retry flag (see
// encodeCommand) and the result code codeUnknown; a version 1 batch, from
// a log written before, holds commands without them, which read as first
// attempts. Version 3 added the message queues: the queue commands
// (opQueue), their result codes, and the queue rules of an append's
// KindMessageAck and KindMessageSend entries. A batch of an earlier
// version is applied as the release that wrote it did: its appends are
// the journal's alone, and an opQueue in it is an unknown op. An earlier
// release refuses version 3, so it never stores an append that a replica
// of this release refused over an ack.
const (
	wireVersion    = 3
	minWireVersion = 1
	// queueWireVersion is the first version whose batches run the queue
	// rules.
	queueWireVersion = 3
)

// wire frames raftlock's commands and results:
//
//	batch (a Raft log entry):  version | stamp (the leader's clock, UnixNano,
//	                           zig-zag varint) | commands
//	forward request:           version | commands (the leader stamps them)
//	forward response:          version | index (uvarint: the Raft index the
//	                           caller must see applied locally) | results
//
// where commands and results are lists: a uvarint count, then each
// (encodeCommand, encodeResult) as a uvarint length and its bytes.
var wire = replica.Wire{Version: wireVersion, MinVersion: minWireVersion, Malformed: errBadWire}

// errBadWire is wrapped by every decoding failure of the wire formats.
var errBadWire = errors.New("raftlock: malformed command encoding")

// op names a command.
type op uint8

const (
	opNoop            op = iota + 1 // no effect; Sync uses it as a read barrier
	opLeaderStart                   // a new leader's first command: extends live sessions
	opReap                          // expires every session whose deadline has passed
	opCreateSession                 // owner, ttl
	opRenew                         // session
	opDestroySession                // session
	opAcquire                       // session, key
	opRelease                       // session, key
	opAppend                        // actor, token, expectedSeq, entry records
	opSaveSnapshot                  // actor, token, seq, snapshot record
	opTruncate                      // actor, token, throughSeq
	opEndOwner                      // owner, session to keep: ends the owner's other sessions
	opQueue                         // qop, its argument record: a write to the message queues (queue.go)
	opCreateSessionAs               // owner, ttl, session: a session with the id another group issued
	opMax                           // one past the last op
)

func (o op) String() string {
	switch o {
	case opNoop:
		return "noop"
	case opLeaderStart:
		return "leader-start"
	case opReap:
		return "reap"
	case opCreateSession:
		return "create-session"
	case opRenew:
		return "renew"
	case opDestroySession:
		return "destroy-session"
	case opAcquire:
		return "acquire"
	case opRelease:
		return "release"
	case opAppend:
		return "append"
	case opSaveSnapshot:
		return "save-snapshot"
	case opTruncate:
		return "truncate"
	case opEndOwner:
		return "end-owner"
	case opQueue:
		return "queue"
	case opCreateSessionAs:
		return "create-session-as"
	default:
		return fmt.Sprintf("op(%d)", uint8(o))
	}
}

// Flags in a command's first byte, above the op (which fits in opMask).
// An entry written before they existed has neither, and reads as a first
// attempt with no birth time.
const (
	opMask = 0x3f
	// flagBorn: the command carries its birth time, after its id (every
	// command with an id does).
	flagBorn = 0x80
	// flagRetry: this copy of the command may not be its first to reach
	// Raft (the committer sends the same command again, with this flag).
	// The state machine refuses a retry it may have forgotten (see
	// applyCommand); a first attempt cannot have been applied before.
	flagRetry = 0x40
)

// cmdOp is the op of an encoded command.
func cmdOp(cmd []byte) op {
	if len(cmd) == 0 {
		return 0
	}
	return op(cmd[0] & opMask)
}

// markRetry flags the encoded command cmd, in place, as a retry (a no-op
// for a command without an id, which carries no birth time).
func markRetry(cmd []byte) {
	if len(cmd) > 0 && cmd[0]&flagBorn != 0 {
		cmd[0] |= flagRetry
	}
}

// cmdID identifies a command for deduplication: origin names the Store
// instance that created it (node id and a random per-Open nonce) and seq
// counts its commands. seq 0 means "not deduplicated" (noop, reap and
// leader-start, which are harmless to repeat).
type cmdID struct {
	origin string
	seq    uint64
}

// command is one decoded command. Which fields are set depends on op.
type command struct {
	op op
	id cmdID
	// born is, for a command with an id, the state machine's clock on the
	// node that created it, when it did (UnixNano): no replica can apply
	// the command at an earlier clock (the clock never goes back, and the
	// command's entry comes after every entry that node had applied).
	born    int64
	retry   bool           // flagRetry: this copy may not be the first to reach Raft
	owner   string         // create-session, end-owner
	ttl     time.Duration  // create-session
	session lock.SessionID // renew, destroy-session, acquire, release; end-owner: the one to keep
	key     string         // acquire, release: the lock key; journal ops: the actor
	token   uint64         // journal ops
	seq     uint64         // append: expectedSeq; save-snapshot: the snapshot's Seq; truncate: throughSeq
	records [][]byte       // append: stamped entry records; save-snapshot: one snapshot record; queue: its argument
	qop     qop            // queue: which write
}

// encodeCommand returns the wire form of c:
//
//	1      op, with flagBorn if seq is not 0, and flagRetry
//	n      origin: uvarint length, bytes
//	1-10   seq, uvarint
//	1-10   born, zig-zag varint (if flagBorn)
//	...    op fields, in the order of the command struct: strings as
//	       uvarint length + bytes, integers as uvarint (ttl in nanoseconds),
//	       records as uvarint count, then each as uvarint length + bytes
func encodeCommand(c command) []byte {
	n := 1 + 3*binary.MaxVarintLen64 + len(c.id.origin) + 5*binary.MaxVarintLen64 + len(c.owner) + len(c.session) + len(c.key)
	for _, r := range c.records {
		n += binary.MaxVarintLen64 + len(r)
	}
	b := make([]byte, 0, n)
	head := byte(c.op)
	if c.id.seq != 0 {
		head |= flagBorn
		if c.retry {
			head |= flagRetry
		}
	}
	b = append(b, head)
	b = appendString(b, c.id.origin)
	b = binary.AppendUvarint(b, c.id.seq)
	if head&flagBorn != 0 {
		b = binary.AppendVarint(b, c.born)
	}
	switch c.op {
	case opCreateSession, opCreateSessionAs:
		b = appendString(b, c.owner)
		b = binary.AppendUvarint(b, uint64(c.ttl))
		if c.op == opCreateSessionAs {
			b = appendString(b, string(c.session))
		}
	case opRenew, opDestroySession:
		b = appendString(b, string(c.session))
	case opAcquire, opRelease:
		b = appendString(b, string(c.session))
		b = appendString(b, c.key)
	case opEndOwner:
		b = appendString(b, c.owner)
		b = appendString(b, string(c.session))
	case opAppend:
		b = appendString(b, c.key)
		b = binary.AppendUvarint(b, c.token)
		b = binary.AppendUvarint(b, c.seq)
		b = binary.AppendUvarint(b, uint64(len(c.records)))
		for _, r := range c.records {
			b = appendBytes(b, r)
		}
	case opSaveSnapshot:
		b = appendString(b, c.key)
		b = binary.AppendUvarint(b, c.token)
		b = binary.AppendUvarint(b, c.seq)
		b = appendBytes(b, c.records[0])
	case opTruncate:
		b = appendString(b, c.key)
		b = binary.AppendUvarint(b, c.token)
		b = binary.AppendUvarint(b, c.seq)
	case opQueue:
		b = append(b, byte(c.qop))
		b = appendBytes(b, c.records[0])
	}
	return b
}

// decodeCommand parses the wire form of a command. Strings and records
// alias b.
func decodeCommand(b []byte) (command, error) {
	d := kv.Decoder{B: b, Wraps: errBadWire}
	var c command
	head := d.Byte()
	c.op = op(head & opMask)
	c.id.origin = d.String()
	c.id.seq = d.Uvarint()
	switch {
	case head&flagBorn != 0 && c.id.seq == 0:
		d.Fail("a birth time without an id")
	case head&flagBorn != 0:
		c.born = d.Varint()
		c.retry = head&flagRetry != 0
	case head&flagRetry != 0:
		d.Fail("a retry without a birth time")
	}
	switch c.op {
	case opNoop, opLeaderStart, opReap:
	case opCreateSession, opCreateSessionAs:
		c.owner = d.String()
		ttl := d.Uvarint()
		if ttl > math.MaxInt64 {
			d.Fail("ttl overflows")
		}
		c.ttl = time.Duration(ttl)
		if c.op == opCreateSessionAs {
			c.session = lock.SessionID(d.String())
		}
	case opRenew, opDestroySession:
		c.session = lock.SessionID(d.String())
	case opAcquire, opRelease:
		c.session = lock.SessionID(d.String())
		c.key = d.String()
	case opEndOwner:
		c.owner = d.String()
		c.session = lock.SessionID(d.String())
	case opAppend:
		c.key = d.String()
		c.token = d.Uvarint()
		c.seq = d.Uvarint()
		n := d.Uvarint()
		if n > uint64(len(d.B)) { // every record takes at least one byte
			d.Fail("record count exceeds the data")
			break
		}
		c.records = make([][]byte, n)
		for i := range c.records {
			c.records[i] = d.Bytes()
		}
	case opSaveSnapshot:
		c.key = d.String()
		c.token = d.Uvarint()
		c.seq = d.Uvarint()
		c.records = [][]byte{d.Bytes()}
	case opTruncate:
		c.key = d.String()
		c.token = d.Uvarint()
		c.seq = d.Uvarint()
	case opQueue:
		c.qop = qop(d.Byte())
		c.records = [][]byte{d.Bytes()}
	default:
		d.Fail(fmt.Sprintf("unknown op %d", uint8(c.op)))
	}
	if err := d.Finish(); err != nil {
		return command{}, err
	}
	return c, nil
}

// resultCode says how a command ended.
type resultCode uint8

const (
	codeOK            resultCode = iota // value: tail (append) or token (acquire); text: session id (create)
	codeFenced                          // journal.ErrFenced; text: the message
	codeConflict                        // journal.ErrConflict
	codeInvalid                         // journal.ErrInvalid; value: a queue code if a queue rule refused the append (an outbox entry)
	codeHeld                            // lock.ErrHeld: text is the key, owner the holder, value its token
	codeExpired                         // lock.ErrSessionExpired
	codeNotHeld                         // lock.ErrNotHeld
	codeLockInvalid                     // lock.ErrInvalid
	codeBadCommand                      // the command could not be decoded
	codeRetry                           // not applied: the receiver is not the leader (forwarding only)
	codeUnknown                         // ErrUnknownOutcome: a retry the state machine may have forgotten; not applied now
	codeAck                             // journal.ErrAck: an append acknowledges a message that is not pending; value: the queue's code
	codeQueueInvalid                    // queue.ErrInvalid
	codeQueueNotFound                   // queue.ErrNotFound
	codeQueueStale                      // queue.ErrStale
	codeQueueNotHead                    // queue.ErrNotHead (only as the value of codeAck)
	codeQueueKnownID                    // queue.ErrKnownID (only as the value of codeAck)
	codeMax
)

// result is the outcome of one command, as the FSM computed it (and as the
// dedup table remembers it). A journal rule that the queue rules decided
// (codeAck, codeInvalid of an append's outbox entry) carries in value the
// code of the queue sentinel its error also wraps (codeQueueNotFound,
// codeQueueNotHead, codeQueueKnownID, codeQueueInvalid), so that the caller's error matches
// both, as the other backends' errors do.
type result struct {
	code  resultCode
	value uint64
	text  string
	owner string
}

// encodeResult returns the wire form of r:
//
//	1      code
//	1-10   value, uvarint
//	n      text: uvarint length, bytes
//	n      owner: uvarint length, bytes
func encodeResult(r result) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(r.text)+len(r.owner))
	b = append(b, byte(r.code))
	b = binary.AppendUvarint(b, r.value)
	b = appendString(b, r.text)
	return appendString(b, r.owner)
}

func decodeResult(b []byte) (result, error) {
	d := kv.Decoder{B: b, Wraps: errBadWire}
	r := result{code: resultCode(d.Byte()), value: d.Uvarint(), text: d.String(), owner: d.String()}
	if d.Err == nil && r.code >= codeMax {
		d.Fail(fmt.Sprintf("unknown result code %d", r.code))
	}
	return r, d.Finish()
}

// err turns a result into the error the caller sees: nil for codeOK, else
// an error that wraps the matching sentinel and reads as the FSM's message.
func (r result) err() error {
	switch r.code {
	case codeOK:
		return nil
	case codeHeld:
		return &lock.HeldError{Key: r.text, Holder: r.owner, Token: r.value}
	case codeFenced:
		return &ruleError{sentinel: journal.ErrFenced, msg: r.text}
	case codeConflict:
		return &ruleError{sentinel: journal.ErrConflict, msg: r.text}
	case codeInvalid:
		return &ruleError{sentinel: journal.ErrInvalid, also: queueSentinel(r.value), msg: r.text}
	case codeExpired:
		return &ruleError{sentinel: lock.ErrSessionExpired, msg: r.text}
	case codeNotHeld:
		return &ruleError{sentinel: lock.ErrNotHeld, msg: r.text}
	case codeLockInvalid:
		return &ruleError{sentinel: lock.ErrInvalid, msg: r.text}
	case codeBadCommand:
		return &ruleError{sentinel: errBadWire, msg: r.text}
	case codeUnknown:
		return &ruleError{sentinel: ErrUnknownOutcome, msg: r.text}
	case codeAck:
		return &ruleError{sentinel: journal.ErrAck, also: queueSentinel(r.value), msg: r.text}
	case codeQueueInvalid, codeQueueNotFound, codeQueueStale, codeQueueNotHead:
		return &ruleError{sentinel: queueSentinel(uint64(r.code)), msg: r.text}
	default:
		return &ruleError{sentinel: ErrNotLeader, msg: r.text}
	}
}

// queueSentinel is the queue package's sentinel of a result code, nil for
// a code that is not a queue's.
func queueSentinel(code uint64) error {
	switch resultCode(code) {
	case codeQueueInvalid:
		return queue.ErrInvalid
	case codeQueueNotFound:
		return queue.ErrNotFound
	case codeQueueStale:
		return queue.ErrStale
	case codeQueueNotHead:
		return queue.ErrNotHead
	case codeQueueKnownID:
		return queue.ErrKnownID
	}
	return nil
}

// queueCode is the result code of the queue sentinel err wraps, 0 if none.
func queueCode(err error) uint64 {
	for _, c := range [...]resultCode{codeQueueNotHead, codeQueueKnownID, codeQueueNotFound, codeQueueStale, codeQueueInvalid} {
		if errors.Is(err, queueSentinel(uint64(c))) {
			return uint64(c)
		}
	}
	return 0
}

// resultOf builds the result for a rule violation err found by the FSM.
func resultOf(err error) result {
	var held *lock.HeldError
	switch {
	case errors.As(err, &held):
		return result{code: codeHeld, value: held.Token, text: held.Key, owner: held.Holder}
	case errors.Is(err, journal.ErrAck): // before the queue's sentinels, which it wraps
		return result{code: codeAck, value: queueCode(err), text: err.Error()}
	case errors.Is(err, journal.ErrFenced):
		return result{code: codeFenced, text: err.Error()}
	case errors.Is(err, journal.ErrConflict):
		return result{code: codeConflict, text: err.Error()}
	case errors.Is(err, journal.ErrInvalid): // also before the queue's
		return result{code: codeInvalid, value: queueCode(err), text: err.Error()}
	case errors.Is(err, lock.ErrSessionExpired):
		return result{code: codeExpired, text: err.Error()}
	case errors.Is(err, lock.ErrNotHeld):
		return result{code: codeNotHeld, text: err.Error()}
	case errors.Is(err, lock.ErrInvalid):
		return result{code: codeLockInvalid, text: err.Error()}
	case queueCode(err) != 0:
		return result{code: resultCode(queueCode(err)), text: err.Error()}
	default:
		return result{code: codeBadCommand, text: err.Error()}
	}
}

// ruleError is a rule violation reported by the state machine: its text is
// the FSM's message, and it wraps the sentinel of its kind, and also the
// queue sentinel of a journal rule the queue rules decided.
type ruleError struct {
	sentinel error
	also     error // nil, or a queue sentinel
	msg      string
}

func (e *ruleError) Error() string {
	if e.msg == "" {
		return e.sentinel.Error()
	}
	return e.msg
}

func (e *ruleError) Unwrap() []error {
	if e.also == nil {
		return []error{e.sentinel}
	}
	return []error{e.sentinel, e.also}
}

// --- encoding helpers ---

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
