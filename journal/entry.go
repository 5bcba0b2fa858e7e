package journal

import "time"

// Kind says what an entry records.
type Kind uint8

const (
	// KindInvocation records one committed actor turn: Method is the method
	// name, Payload the encoded state operations of the turn (see the
	// runtime package's state encoding).
	KindInvocation Kind = 1
	// KindStateOp records state operations made outside a method turn
	// (for instance by an activation hook). Payload as for KindInvocation.
	KindStateOp Kind = 2
	// KindSnapshotMarker notes that a snapshot was taken at Seq-1.
	KindSnapshotMarker Kind = 3
	// KindMessageAck records the acknowledgement of a durable message; the
	// IdempotencyKey is the message id. In a journal that is also a
	// queue.Store, the append succeeds only if the message is pending (see
	// ErrAck) and takes it out of its queue.
	KindMessageAck Kind = 4
	// KindMessageSend records a message the turn sent (an outbox):
	// IdempotencyKey is the message id, Payload the message encoded by
	// queue.MarshalMessage. In a journal that is also a queue.Store, the
	// message is enqueued in the same atomic step as the append.
	KindMessageSend Kind = 5
	// KindMessageDirect records a turn that applied a message to this
	// actor accepted by the append that carries it, without passing
	// through its queue: Method and Payload as for KindInvocation (the
	// turn's changes, empty when it changed nothing), IdempotencyKey the
	// message id (never a call's key). One such entry per append. In a
	// journal that is also a queue.Store, the append succeeds only if the
	// store does not know the id (else ErrAck wrapping queue.ErrKnownID)
	// and no ordered message of the actor is pending (else ErrAck
	// wrapping queue.ErrNotHead); the id is then remembered as an
	// acknowledged message's, so a resend is a duplicate.
	KindMessageDirect Kind = 6
)

// Message reports whether k is one of the message kinds (KindMessageAck,
// KindMessageSend, KindMessageDirect), whose entries the queues of a
// journal that is also a queue.Store check and apply with the append.
func (k Kind) Message() bool {
	return k == KindMessageAck || k == KindMessageSend || k == KindMessageDirect
}

func (k Kind) String() string {
	switch k {
	case KindInvocation:
		return "invocation"
	case KindStateOp:
		return "stateop"
	case KindSnapshotMarker:
		return "snapshot"
	case KindMessageAck:
		return "ack"
	case KindMessageSend:
		return "send"
	case KindMessageDirect:
		return "direct"
	default:
		return "unknown"
	}
}

// Entry is one record of an actor's log.
type Entry struct {
	Seq            uint64    // assigned by the journal on Append
	Kind           Kind      // what the entry records
	Actor          string    // actor key, stamped by the journal
	Method         string    // method name for invocations
	Payload        []byte    // kind-specific body
	Time           time.Time // when the turn committed (UTC, nanoseconds)
	CorrelationID  string    // correlation id of the call that produced it
	TraceID        string    // W3C trace id (hex) of that call, if any
	Token          uint64    // fencing token it was written under, stamped by the journal
	IdempotencyKey string    // caller-supplied key, for deduplication
}
