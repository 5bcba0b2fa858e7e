package wakes

import (
	"crypto/rand"
	"encoding/json"
	"sync"
	"time"
)

// Buffer is how many wakes wait for the sender before more are dropped.
const Buffer = 4096

// Item is one wake: an actor has something to deliver or release at At.
type Item struct {
	Actor string `json:"a"`
	At    int64  `json:"t"` // Unix ns
}

// note is one payload: the sending outbox's id and its wakes.
type note struct {
	Origin string `json:"o"`
	Wakes  []Item `json:"w"`
}

// itemSize is a bound on an item's encoded size beyond its actor key.
const itemSize = 40

// Outbox batches wakes for a send function. Add and Close are safe for
// concurrent use.
type Outbox struct {
	id      string
	max     int
	send    func(payload []byte)
	pending chan Item
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// NewOutbox starts an outbox whose payloads stay under maxPayload bytes
// (an item too large for one alone is dropped) and are handed to send,
// one at a time, on the outbox's goroutine.
func NewOutbox(maxPayload int, send func(payload []byte)) *Outbox {
	o := &Outbox{
		id:      rand.Text(),
		max:     maxPayload,
		send:    send,
		pending: make(chan Item, Buffer),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go o.loop()
	return o
}

// ID names the outbox in its payloads; Decode with it skips them.
func (o *Outbox) ID() string { return o.id }

// Add queues a wake; it is dropped if the buffer is full.
func (o *Outbox) Add(actor string, at time.Time) {
	select {
	case o.pending <- Item{actor, at.UnixNano()}:
	default:
	}
}

// Close stops the outbox, dropping what was not sent, and waits for its
// goroutine.
func (o *Outbox) Close() {
	o.once.Do(func() { close(o.stop) })
	<-o.done
}

// loop sends what is queued, everything waiting in as few payloads as the
// limit allows.
func (o *Outbox) loop() {
	defer close(o.done)
	for {
		var batch []Item
		select {
		case <-o.stop:
			return
		case it := <-o.pending:
			batch = append(batch, it)
		}
	drain:
		for len(batch) < Buffer {
			select {
			case it := <-o.pending:
				batch = append(batch, it)
			default:
				break drain
			}
		}
		for len(batch) > 0 {
			n, size := 0, len(o.id)+32
			for n < len(batch) && size+len(batch[n].Actor)+itemSize <= o.max {
				size += len(batch[n].Actor) + itemSize
				n++
			}
			if n == 0 {
				batch = batch[1:] // alone over the limit: the scan finds it
				continue
			}
			if b, err := json.Marshal(note{Origin: o.id, Wakes: batch[:n]}); err == nil {
				o.send(b)
			}
			batch = batch[n:]
		}
	}
}

// Decode returns the wakes of payload, or nil if it does not decode or
// was sent by the outbox named self.
func Decode(payload []byte, self string) []Item {
	var n note
	if json.Unmarshal(payload, &n) != nil || n.Origin == self {
		return nil
	}
	return n.Wakes
}
