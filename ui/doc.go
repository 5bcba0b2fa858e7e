// Package ui is Loom's dashboard: a web page every node serves at /ui,
// embedded in the binary (go:embed) with no framework, no CDN and no build
// step — plain HTML, CSS and JavaScript in static/.
//
// The page reads the node's JSON APIs and refreshes the visible view
// every 2 s (polling: no connection is held open between refreshes):
//
//   - Cluster: the members with their gossip state, Raft role, term,
//     applied and commit index, and session lease; the placement ring's
//     share per node; active actors per node and type
//     (GET /v1/admin/nodes).
//   - Actors: counts per type and a lookup of one actor by id — its owner
//     (the lock holder), ring placement, activation time, journal length
//     and latest entries with time, method and correlation id
//     (GET /v1/admin/actors/{type}/{id}).
//   - Calls: calls/s, errors and p99 latency per type and method over the
//     last five minutes, in 10 s buckets, as charts and a table
//     (GET /v1/stats/calls).
//   - Traces: search by correlation id or trace id, and the waterfall of
//     one trace across nodes (GET /traces).
//   - Queues: message queues per type, dead letters (the oldest 100),
//     inspect, replay and purge with confirmation (GET /v1/admin/queues,
//     /v1/deadletters and its replay and purge).
//
// Nothing on the page grows with the number of actors: they are counted
// per node and type and looked up one at a time, never listed.
//
// The page itself carries no data, so the node serves it without a
// token; every API it calls keeps its scope. When an API answers 401 the
// page asks for a bearer token, keeps it in sessionStorage (this tab
// only) and sends it as Authorization: Bearer on every request.
//
// This package has only the static files and their handler; the JSON
// endpoints are the node's (package node, dashboard.go).
package ui
