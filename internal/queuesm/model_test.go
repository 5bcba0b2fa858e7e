package queuesm_test

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loom-mesh/loom/queue"
)

// model is the Store contract written the plain way: a map of messages
// and a map of reminders, scanned on every question.
type model struct {
	retention int64
	seq       uint64
	msgs      map[string]*mmsg
	rems      map[string]map[string]queue.Reminder // actor -> name -> reminder
}

type mmsg struct {
	queue.Message
	firstSeq       uint64
	state          int // 1 pending, 2 scheduled, 3 dead, 4 gone
	deadAt, goneAt int64
}

func newModel(retention int64) *model {
	return &model{retention: retention, msgs: map[string]*mmsg{}, rems: map[string]map[string]queue.Reminder{}}
}

func (md *model) known(id string, now int64) *mmsg {
	m := md.msgs[id]
	if m == nil || m.state == 4 && now-m.goneAt >= md.retention {
		return nil
	}
	return m
}

func (md *model) enqueue(now int64, msg queue.Message) (queue.Accepted, error) {
	if err := queue.CheckMessage(msg); err != nil {
		return queue.Accepted{}, err
	}
	if m := md.known(msg.ID, now); m != nil {
		return queue.Accepted{ID: msg.ID, Seq: m.firstSeq, AcceptedAt: m.AcceptedAt, Duplicate: true}, nil
	}
	md.seq++
	msg.Seq, msg.AcceptedAt, msg.Attempts, msg.LastError = md.seq, ns(now), 0, ""
	msg.NextAt = ns(now)
	state := 1
	if !msg.DeliverAt.IsZero() && msg.DeliverAt.UnixNano() > now {
		msg.NextAt, state = msg.DeliverAt, 2
	}
	md.msgs[msg.ID] = &mmsg{Message: msg, firstSeq: md.seq, state: state}
	return queue.Accepted{ID: msg.ID, Seq: msg.Seq, AcceptedAt: msg.AcceptedAt}, nil
}

// pending returns actor's pending messages by Seq.
func (md *model) pending(actor string) []*mmsg {
	var out []*mmsg
	for _, m := range md.msgs {
		if m.state == 1 && m.Actor == actor {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *mmsg) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// candidates are the messages of actor that Due returns once their NextAt
// passes: the unordered ones and the ordered head, by (NextAt, Seq).
func (md *model) candidates(actor string) []*mmsg {
	var out []*mmsg
	head := false
	for _, m := range md.pending(actor) {
		if !m.Ordered || !head {
			out = append(out, m)
		}
		head = head || m.Ordered
	}
	slices.SortFunc(out, func(a, b *mmsg) int {
		return cmp.Or(a.NextAt.Compare(b.NextAt), cmp.Compare(a.Seq, b.Seq))
	})
	return out
}

func (md *model) due(actor string, now int64) string {
	var ids []string
	for _, m := range md.candidates(actor) {
		if m.NextAt.UnixNano() <= now {
			ids = append(ids, m.ID)
		}
	}
	return strings.Join(ids, " ")
}

func (md *model) wake(actor string) (int64, bool) {
	at, ok := int64(0), false
	see := func(t int64) {
		if !ok || t < at {
			at, ok = t, true
		}
	}
	if c := md.candidates(actor); len(c) > 0 {
		see(c[0].NextAt.UnixNano())
	}
	for _, m := range md.msgs {
		if m.state == 2 && m.Actor == actor {
			see(m.DeliverAt.UnixNano())
		}
	}
	for _, r := range md.rems[actor] {
		see(r.DueAt.UnixNano())
	}
	return at, ok
}

func (md *model) ack(now int64, actor string, ids []string) error {
	done := map[string]bool{}
	for _, id := range ids {
		m := md.msgs[id]
		if m == nil || m.state != 1 || m.Actor != actor || done[id] {
			return queue.ErrNotFound
		}
		if m.Ordered {
			for _, p := range md.pending(actor) {
				if p.Ordered && p.Seq < m.Seq && !done[p.ID] {
					return queue.ErrNotHead
				}
			}
		}
		done[id] = true
	}
	for _, id := range ids {
		md.msgs[id].state, md.msgs[id].goneAt = 4, now
	}
	return nil
}

func (md *model) fail(dead bool, now int64, f queue.Failure) error {
	m := md.msgs[f.ID]
	if m == nil || m.state != 1 || m.Actor != f.Actor {
		return queue.ErrNotFound
	}
	if m.Attempts != f.Attempts {
		return queue.ErrStale
	}
	m.Attempts++
	m.LastError = f.Reason
	if dead {
		m.state, m.deadAt = 3, f.At.UnixNano()
	} else {
		m.NextAt = f.RetryAt
	}
	return nil
}

func (md *model) release(now int64, actor string) int {
	var sched []*mmsg
	for _, m := range md.msgs {
		if m.state == 2 && m.Actor == actor && m.DeliverAt.UnixNano() <= now {
			sched = append(sched, m)
		}
	}
	slices.SortFunc(sched, func(a, b *mmsg) int {
		return cmp.Or(a.DeliverAt.Compare(b.DeliverAt), cmp.Compare(a.Seq, b.Seq))
	})
	for _, m := range sched {
		md.seq++
		m.Seq, m.state = md.seq, 1
	}
	n := len(sched)
	var rems []queue.Reminder
	for _, r := range md.rems[actor] {
		if r.DueAt.UnixNano() <= now {
			rems = append(rems, r)
		}
	}
	slices.SortFunc(rems, func(a, b queue.Reminder) int { return cmp.Or(a.DueAt.Compare(b.DueAt), cmp.Compare(a.Name, b.Name)) })
	for _, r := range rems {
		due := r.DueAt.UnixNano()
		acc, _ := md.enqueue(now, queue.Message{ID: queue.ReminderID(actor, r.Name, due), Actor: actor, Method: r.Method, Payload: r.Payload, Ordered: r.Ordered})
		if !acc.Duplicate {
			n++
		}
		if r.Period == 0 {
			delete(md.rems[actor], r.Name)
			continue
		}
		for due <= now {
			due += int64(r.Period)
		}
		r.DueAt = ns(due)
		md.rems[actor][r.Name] = r
	}
	return n
}

func (md *model) dead(f queue.Filter) []*mmsg {
	var out []*mmsg
	for _, m := range md.msgs {
		if m.state != 3 || f.Actor != "" && m.Actor != f.Actor || f.Type != "" && !strings.HasPrefix(m.Actor, f.Type+"/") ||
			!f.Before.IsZero() && m.deadAt >= f.Before.UnixNano() || len(f.IDs) > 0 && !slices.Contains(f.IDs, m.ID) {
			continue
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *mmsg) int { return cmp.Or(cmp.Compare(a.deadAt, b.deadAt), cmp.Compare(a.Seq, b.Seq)) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

func (md *model) stats() []queue.Stats {
	byType := map[string]*queue.Stats{}
	get := func(actor string) *queue.Stats {
		typ, _, _ := strings.Cut(actor, "/")
		if byType[typ] == nil {
			byType[typ] = &queue.Stats{Type: typ}
		}
		return byType[typ]
	}
	for _, m := range md.msgs {
		switch m.state {
		case 1:
			s := get(m.Actor)
			s.Pending++
			if s.Oldest.IsZero() || m.AcceptedAt.Before(s.Oldest) {
				s.Oldest = m.AcceptedAt
			}
		case 2:
			get(m.Actor).Scheduled++
		case 3:
			get(m.Actor).Dead++
		}
	}
	for actor, rs := range md.rems {
		if len(rs) > 0 {
			get(actor).Reminders += len(rs)
		}
	}
	var out []queue.Stats
	for _, s := range byType {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b queue.Stats) int { return cmp.Compare(a.Type, b.Type) })
	return out
}

// sentinel is the queue sentinel err wraps, for comparing outcomes.
func sentinel(err error) error {
	for _, s := range []error{queue.ErrInvalid, queue.ErrNotFound, queue.ErrStale, queue.ErrNotHead} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// TestModel runs a few thousand random commands on the machine and on the
// model, and compares every outcome and, after each command, what the
// reads return. The seed is logged: set it in seed to replay a failure.
func TestModel(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	const retention = 200
	w := newWorld(t, retention)
	md := newModel(retention)
	actors := []string{"a/1", "a/10", "a/1\x00", "b/1", "b"}
	var ids []string
	for i := range 40 {
		ids = append(ids, fmt.Sprint("m", i))
	}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	now := int64(1000)
	for step := range 3000 {
		now += int64(rng.IntN(12))
		actor := pick(actors)
		var op string
		var got, want error
		switch r := rng.IntN(100); {
		case r < 30:
			m := msg(pick(ids), actor, rng.IntN(2) == 0)
			if rng.IntN(4) == 0 {
				m.DeliverAt = ns(now + int64(rng.IntN(60)) - 10)
			}
			op = fmt.Sprintf("enqueue %s to %q ordered %v at %v", m.ID, actor, m.Ordered, m.DeliverAt)
			acc, rule := w.enqueue(now, m)
			wacc, _ := md.enqueue(now, m)
			if acc != wacc {
				t.Fatalf("step %d (%s): accepted %+v, model %+v", step, op, acc, wacc)
			}
			got = rule
		case r < 50:
			var batch []string
			for range 1 + rng.IntN(2) {
				if c := md.candidates(actor); len(c) > 0 && rng.IntN(4) > 0 {
					batch = append(batch, c[rng.IntN(len(c))].ID)
				} else {
					batch = append(batch, pick(ids))
				}
			}
			op = fmt.Sprintf("ack %v of %q", batch, actor)
			got, want = w.ack(now, actor, batch...), md.ack(now, actor, batch)
		case r < 65:
			dead := rng.IntN(3) == 0
			id := pick(ids)
			if c := md.candidates(actor); len(c) > 0 && rng.IntN(4) > 0 {
				id = c[rng.IntN(len(c))].ID
			}
			var attempts uint32
			if m := md.msgs[id]; m != nil {
				attempts = m.Attempts
			}
			if rng.IntN(8) == 0 {
				attempts++
			}
			f := queue.Failure{Actor: actor, ID: id, Attempts: attempts, Reason: fmt.Sprint("r", step), At: ns(now), RetryAt: ns(now + int64(rng.IntN(50)))}
			op = fmt.Sprintf("fail %+v dead %v", f, dead)
			got, want = w.failure(dead, now, f), md.fail(dead, now, f)
		case r < 80:
			op = fmt.Sprintf("release %q", actor)
			if n, mn := w.release(now, actor), md.release(now, actor); n != mn {
				t.Fatalf("step %d (%s): released %d, model %d", step, op, n, mn)
			}
		case r < 86:
			name := fmt.Sprint("r", rng.IntN(3))
			rem := queue.Reminder{Actor: actor, Name: name, Method: "Tick", Ordered: rng.IntN(2) == 0,
				DueAt: ns(now + int64(rng.IntN(40)) - 10), Period: time.Duration(rng.IntN(3) * 7)}
			op = fmt.Sprintf("set reminder %+v", rem)
			rule, err := w.m.SetReminder(now, rem)
			if err != nil {
				t.Fatal(err)
			}
			got = rule
			if md.rems[actor] == nil {
				md.rems[actor] = map[string]queue.Reminder{}
			}
			rem.DueAt = rem.DueAt.UTC()
			md.rems[actor][name] = rem
		case r < 90:
			name := fmt.Sprint("r", rng.IntN(3))
			op = fmt.Sprintf("delete reminder %s of %q", name, actor)
			rule, err := w.m.DeleteReminder(now, actor, name)
			if err != nil {
				t.Fatal(err)
			}
			got = rule
			if _, ok := md.rems[actor][name]; ok {
				delete(md.rems[actor], name)
			} else {
				want = queue.ErrNotFound
			}
		default:
			f := queue.Filter{Limit: rng.IntN(3)}
			switch rng.IntN(4) {
			case 0:
				f.Actor = actor
			case 1:
				f.Type = "a"
			case 2:
				f.IDs = []string{pick(ids), pick(ids)}
			}
			if rng.IntN(3) == 0 {
				f.Before = ns(now - int64(rng.IntN(100)))
			}
			purge := rng.IntN(2) == 0
			op = fmt.Sprintf("replay/purge %v %+v", purge, f)
			sel := md.dead(f)
			var n int
			var rule, err error
			if purge {
				n, rule, err = w.m.Purge(now, f)
				for _, m := range sel {
					m.state, m.goneAt = 4, now
				}
			} else {
				n, rule, err = w.m.Replay(now, f)
				for _, m := range sel {
					md.seq++
					m.Seq, m.state, m.Attempts, m.NextAt, m.LastError = md.seq, 1, 0, ns(now), ""
				}
			}
			if err != nil || rule != nil || n != len(sel) {
				t.Fatalf("step %d (%s): %d, %v, %v; model %d", step, op, n, rule, err, len(sel))
			}
		}
		if sentinel(got) != sentinel(want) {
			t.Fatalf("step %d (%s): rule %v, model %v", step, op, got, want)
		}
		md.compare(t, w, step, op, now, actors)
	}
}

// compare checks every read of the machine against the model.
func (md *model) compare(t *testing.T, w *world, step int, op string, now int64, actors []string) {
	t.Helper()
	var ready []string
	type rd struct {
		actor string
		at    int64
	}
	var rds []rd
	for _, a := range actors {
		for _, at := range []int64{now, now + 30} {
			if got, want := w.due(a, at), md.due(a, at); got != want {
				t.Fatalf("step %d (%s): Due(%q, %d) = %q, model %q", step, op, a, at, got, want)
			}
		}
		if at, ok := md.wake(a); ok {
			rds = append(rds, rd{a, at})
		}
		rs, err := w.m.Reminders(a)
		if err != nil || len(rs) != len(md.rems[a]) {
			t.Fatalf("step %d (%s): Reminders(%q) = %v, %v; model %v", step, op, a, rs, err, md.rems[a])
		}
		for _, r := range rs {
			if mr := md.rems[a][r.Name]; mr.DueAt != r.DueAt || mr.Period != r.Period {
				t.Fatalf("step %d (%s): reminder %+v, model %+v", step, op, r, mr)
			}
		}
	}
	slices.SortFunc(rds, func(a, b rd) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.actor, b.actor)) })
	for _, r := range rds {
		ready = append(ready, fmt.Sprintf("%s@%d", r.actor, r.at))
	}
	if got, want := w.ready(1<<62), strings.Join(ready, " "); got != want {
		t.Fatalf("step %d (%s): Ready = %q, model %q", step, op, got, want)
	}
	st, err := w.m.Stats()
	if want := md.stats(); err != nil || !slices.Equal(st, want) {
		t.Fatalf("step %d (%s): Stats = %+v, %v\nmodel %+v", step, op, st, err, want)
	}
	ds, err := w.m.ListDead(queue.Filter{})
	want := md.dead(queue.Filter{})
	if err != nil || len(ds) != len(want) {
		t.Fatalf("step %d (%s): %d dead letters, %v; model %d", step, op, len(ds), err, len(want))
	}
	for i, d := range ds {
		if m := want[i]; d.ID != m.ID || d.Seq != m.Seq || d.Attempts != m.Attempts || d.DeadAt != ns(m.deadAt) || d.LastError != m.LastError {
			t.Fatalf("step %d (%s): dead letter %+v, model %+v", step, op, d, m)
		}
	}
}
