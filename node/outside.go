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
//
// and GET /v1/admin/journal/{type}/{id} answers, for an actor of such a
// group, what its group's leader answers.

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
	mux.HandleFunc("GET /v1/admin/groups/{g}/deadletters", n.serveGroupDead)
}

func (n *Node) serveGroupDead(w http.ResponseWriter, r *http.Request) {
	g, err := strconv.Atoi(r.PathValue("g"))
	if err != nil {
		gateway.WriteError(w, fmt.Errorf("%w: Raft group %q is not a number", queue.ErrInvalid, r.PathValue("g")))
		return
	}
	var f queue.Filter
	if s := r.URL.Query().Get("filter"); s != "" {
		if err := json.Unmarshal([]byte(s), &f); err != nil {
			gateway.WriteError(w, fmt.Errorf("%w: filter: %v", queue.ErrInvalid, err))
			return
		}
	}
	if n.mesh == nil || n.mesh.groups == nil {
		gateway.WriteError(w, fmt.Errorf("%w: this node has no Raft groups", queue.ErrInvalid))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	dead, err := n.mesh.groups.Queues().ListDeadIn(ctx, g, f)
	if err != nil {
		gateway.WriteError(w, err)
		return
	}
	if dead == nil {
		dead = []queue.DeadLetter{}
	}
	writeJSON(w, dead)
}

// remoteDead lists the dead letters f selects in group g, which this node
// is outside of, on the group's leader (raftlock.GroupQueues'
// SetRemoteDead).
func (n *Node) remoteDead(ctx context.Context, g int, f queue.Filter) ([]queue.DeadLetter, error) {
	fb, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	body, err := n.askGroupLeader(ctx, g, "/v1/admin/groups/"+strconv.Itoa(g)+"/deadletters", url.Values{"filter": {string(fb)}})
	if err != nil {
		return nil, fmt.Errorf("listing the dead letters of Raft group %d: %w", g, err)
	}
	var dead []queue.DeadLetter
	if err := json.Unmarshal(body, &dead); err != nil {
		return nil, fmt.Errorf("listing the dead letters of Raft group %d: the leader's answer: %w", g, err)
	}
	return dead, nil
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
	if !errors.Is(err, raftlock.ErrNotReplica) || r.URL.Query().Get("scope") == "local" || n.mesh == nil || n.mesh.groups == nil {
		return false
	}
	body, aerr := n.askGroupLeader(r.Context(), placement.GroupOf(key, n.mesh.groups.Len()), r.URL.Path, r.URL.Query())
	if aerr != nil {
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	return true
}
