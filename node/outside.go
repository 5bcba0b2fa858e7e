package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/loom-mesh/loom/gateway"
	"github.com/loom-mesh/loom/placement"
	"github.com/loom-mesh/loom/queue"
	"github.com/loom-mesh/loom/raftlock"
)

// Reads of Raft groups this node is outside of (cluster.groupMembers:
// voters). The node's replica of such a group is idle and refuses reads
// (raftlock.ErrNotReplica), so the operator's reads that need one are
// asked of the group's leader over HTTP, on behalf of the request that
// needs them and with its credentials:
//
//	GET /v1/admin/groups/{g}/deadletters?filter=<queue.Filter as JSON>
//	    the dead letters of group g on this node's replica (admin)
//	GET /v1/admin/groups/{g}/reminders?actor=<type/id>
//	    an actor's reminders on this node's replica of group g (admin)
//	GET /v1/admin/groups/{g}/queues
//	    the queues' figures of group g on this node's replica (admin)
//
// answered as JSON of []queue.DeadLetter, []queue.Reminder and
// []queue.Stats, each read only from a replica of the group (never asked
// on), so that a stale gossip of leaders cannot send a request round.
// GET /v1/admin/journal/{type}/{id} answers, for an actor of such a
// group, what its group's leader answers, and GET /v1/cluster shows such
// a group's servers as its leader has them.

// peerAuthKey keys the Authorization header of the HTTP request a
// context belongs to (withPeerAuth).
type peerAuthKey struct{}

// withPeerAuth keeps each request's Authorization header in its context,
// for the requests to peers made on its behalf.
func withPeerAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			r = r.WithContext(context.WithValue(r.Context(), peerAuthKey{}, a))
		}
		next.ServeHTTP(w, r)
	})
}

// peerAuth is the Authorization header withPeerAuth kept in ctx: "" if
// none.
func peerAuth(ctx context.Context) string {
	a, _ := ctx.Value(peerAuthKey{}).(string)
	return a
}

func (n *Node) groupRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/admin/groups/{g}/{what}", n.serveGroup)
}

// serveGroup answers the reads of a group's replica above.
func (n *Node) serveGroup(w http.ResponseWriter, r *http.Request) {
	g, err := strconv.Atoi(r.PathValue("g"))
	if err != nil {
		gateway.WriteError(w, fmt.Errorf("%w: Raft group %q is not a number", queue.ErrInvalid, r.PathValue("g")))
		return
	}
	if n.mesh == nil || n.mesh.groups == nil {
		gateway.WriteError(w, fmt.Errorf("%w: this node has no Raft groups", queue.ErrInvalid))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	gq := n.mesh.groups.Queues()
	var v any
	switch what := r.PathValue("what"); what {
	case "deadletters":
		var f queue.Filter
		if s := r.URL.Query().Get("filter"); s != "" {
			if err := json.Unmarshal([]byte(s), &f); err != nil {
				gateway.WriteError(w, fmt.Errorf("%w: filter: %v", queue.ErrInvalid, err))
				return
			}
		}
		dead, derr := gq.ListDeadIn(ctx, g, f)
		v, err = nonNil(dead), derr
	case "reminders":
		actor := r.URL.Query().Get("actor")
		if actor == "" || placement.GroupOf(actor, n.mesh.groups.Len()) != g {
			gateway.WriteError(w, fmt.Errorf("%w: actor %q is not in Raft group %d", queue.ErrInvalid, actor, g))
			return
		}
		rs, rerr := n.mesh.groups.Group(g).Queues().Reminders(ctx, actor)
		v, err = nonNil(rs), rerr
	case "queues":
		stats, serr := gq.StatsIn(ctx, g)
		v, err = nonNil(stats), serr
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		gateway.WriteError(w, err)
		return
	}
	writeJSON(w, v)
}

// nonNil is s, or an empty slice for nil (a JSON [] rather than null).
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// remoteDead lists the dead letters f selects in group g, which this node
// is outside of, on the group's leader (raftlock.GroupQueues'
// SetRemoteDead).
func (n *Node) remoteDead(ctx context.Context, g int, f queue.Filter) ([]queue.DeadLetter, error) {
	fb, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return askGroup[[]queue.DeadLetter](ctx, n, g, "deadletters", url.Values{"filter": {string(fb)}}, "listing the dead letters")
}

// askGroup GETs /v1/admin/groups/{g}/{what} from the leader of group g,
// which this node is outside of, and decodes its answer; doing says what
// for the error.
func askGroup[T any](ctx context.Context, n *Node, g int, what string, query url.Values, doing string) (T, error) {
	var v T
	body, err := n.askGroupLeader(ctx, g, "/v1/admin/groups/"+strconv.Itoa(g)+"/"+what, query)
	if err != nil {
		return v, fmt.Errorf("%s of Raft group %d: %w", doing, g, err)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("%s of Raft group %d: the leader's answer: %w", doing, g, err)
	}
	return v, nil
}

// outsideGroupOf is the Raft group of actor when this node is outside of
// it (err, its own attempt to read it, is raftlock.ErrNotReplica): ok is
// false when that is not the case.
func (n *Node) outsideGroupOf(actor string, err error) (int, bool) {
	if !errors.Is(err, raftlock.ErrNotReplica) || n.mesh == nil || n.mesh.groups == nil {
		return 0, false
	}
	return placement.GroupOf(actor, n.mesh.groups.Len()), true
}

// clusterQueues are the queues' figures of every group: this node's
// replicas', and the leaders' of the groups it is outside of.
func (n *Node) clusterQueues(ctx context.Context) ([]queue.Stats, error) {
	gq := n.mesh.groups.Queues()
	var lists [][]queue.Stats
	for g := range n.mesh.groups.Len() {
		stats, err := gq.StatsIn(ctx, g)
		if errors.Is(err, raftlock.ErrNotReplica) {
			stats, err = askGroup[[]queue.Stats](ctx, n, g, "queues", nil, "reading the queues' figures")
		}
		if err != nil {
			return nil, err
		}
		lists = append(lists, stats)
	}
	return queue.MergeStats(lists...), nil
}

// askGroupLeader GETs path?query from the leader of Raft group g, with the
// credentials of the request ctx belongs to. It fails, wrapping
// raftlock.ErrNotReplica, when no other node is known to lead g or the
// leader does not answer.
func (n *Node) askGroupLeader(ctx context.Context, g int, path string, query url.Values) ([]byte, error) {
	leader := n.mesh.groupLeader(g)
	if leader == "" || leader == n.cfg.Node.ID {
		return nil, fmt.Errorf("%w: no other node is known to lead Raft group %d", raftlock.ErrNotReplica, g)
	}
	a, ok := n.askPeers(ctx, peerAuth(ctx), path, query, leader)[leader]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %s, the leader of Raft group %d, is not an alive member", raftlock.ErrNotReplica, leader, g)
	case a.err != nil:
		return nil, fmt.Errorf("%w: asking %s, the leader of Raft group %d: %v", raftlock.ErrNotReplica, leader, g, a.err)
	}
	return a.body, nil
}

// forwardJournalDump answers GET /v1/admin/journal/{type}/{id} for an
// actor whose Raft group this node is outside of (err, its own attempt,
// is raftlock.ErrNotReplica) with the group leader's answer; false if it
// does not apply, and the caller answers err.
func (n *Node) forwardJournalDump(w http.ResponseWriter, r *http.Request, key string, err error) bool {
	g, ok := n.outsideGroupOf(key, err)
	if !ok || r.URL.Query().Get("scope") == "local" {
		return false
	}
	body, aerr := n.askGroupLeader(r.Context(), g, r.URL.Path, r.URL.Query())
	if aerr != nil {
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	return true
}
