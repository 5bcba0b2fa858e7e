// Package wakes carries queue wake-up hints between the journals of
// different nodes on one shared server (Redis publish/subscribe,
// PostgreSQL NOTIFY/LISTEN): an Outbox batches this node's wakes into
// payloads no larger than a limit and hands them to the backend's send
// function on one goroutine; Decode reads another node's payload and
// drops the node's own.
//
// What it guarantees: nothing beyond best effort. A wake is a hint: it is
// dropped when the outbox's buffer is full or a send fails, and the
// dispatcher's periodic scan finds the work anyway. Add never blocks.
package wakes
