package chaos

import (
	"strings"
	"testing"
)

// TestMessageChecker shows the messaging check passing a correct end state
// and catching each way a broken one differs.
func TestMessageChecker(t *testing.T) {
	sent := []SentMessage{
		{ID: "m1", Actor: "counter/msg-0", Delta: 2, Accepted: true, Sends: 1},
		{ID: "m2", Actor: "counter/msg-0", Delta: 3, Accepted: true, Sends: 2},
		{ID: "m3", Actor: "counter/msg-1", Delta: 1, Accepted: true, Sends: 1},
		{ID: "f1", Actor: "counter/msg-1", Delta: 5, Fail: true, Accepted: true, Sends: 1},
	}
	dump := func(node string, ids ...string) journalDump {
		d := journalDump{Node: node}
		for i, id := range ids {
			d.Entries = append(d.Entries, dumpEntry{Seq: uint64(i + 1), Kind: "invocation"}, dumpEntry{Seq: uint64(i + 1), Kind: "ack", IdempotencyKey: id})
		}
		return d
	}
	good := func() MessageState {
		return MessageState{
			Values:   map[string]int64{"counter/msg-0": 5, "counter/msg-1": 1},
			Journals: map[string][]journalDump{"counter/msg-0": {dump("n1", "m1", "m2"), dump("n2", "m1", "m2")}, "counter/msg-1": {dump("n1", "m3")}},
			Dead:     map[string][]string{"counter/msg-1": {"f1"}},
			Drained:  true,
		}
	}
	rep, vs := CheckMessages(sent, good())
	if len(vs) != 0 {
		t.Fatalf("a correct end state: %v", vs)
	}
	if rep.Accepted != 4 || rep.Resent != 1 || rep.FailOnPurpose != 1 || rep.DeadLetters != 1 {
		t.Fatalf("report %+v", rep)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*MessageState, []SentMessage) []SentMessage
		want   string
	}{
		{"lost effect", func(st *MessageState, s []SentMessage) []SentMessage { st.Values["counter/msg-0"] = 2; return s }, "counter is 2, the accepted increments sum to 5"},
		{"applied twice", func(st *MessageState, s []SentMessage) []SentMessage {
			st.Journals["counter/msg-0"][1] = dump("n2", "m1", "m2", "m2")
			return s
		}, "m2 acknowledged 2 times"},
		{"ack missing", func(st *MessageState, s []SentMessage) []SentMessage {
			st.Journals["counter/msg-1"][0] = dump("n1")
			return s
		}, "accepted message m3 is not acknowledged"},
		{"failing applied", func(st *MessageState, s []SentMessage) []SentMessage {
			st.Journals["counter/msg-1"][0] = dump("n1", "m3", "f1")
			return s
		}, "f1, whose handler always fails"},
		{"dead letter missing", func(st *MessageState, s []SentMessage) []SentMessage { delete(st.Dead, "counter/msg-1"); return s }, "not in the dead-letter queue"},
		{"extra dead letter", func(st *MessageState, s []SentMessage) []SentMessage {
			st.Dead["counter/msg-1"] = []string{"f1", "m3"}
			return s
		}, "want exactly the failing messages"},
		{"not drained", func(st *MessageState, s []SentMessage) []SentMessage {
			st.Drained, st.Figures = false, "n1: 3 pending"
			return s
		}, "did not drain: n1: 3 pending"},
		{"never accepted", func(st *MessageState, s []SentMessage) []SentMessage {
			s = append([]SentMessage(nil), s...)
			s[2].Accepted, s[2].LastErr = false, "503"
			return s
		}, "m3 was never accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := good()
			s := tc.mutate(&st, sent)
			_, vs := CheckMessages(s, st)
			var all []string
			for _, v := range vs {
				all = append(all, v.String())
			}
			if !strings.Contains(strings.Join(all, "\n"), tc.want) {
				t.Fatalf("violations %q, want one saying %q", all, tc.want)
			}
		})
	}
}
