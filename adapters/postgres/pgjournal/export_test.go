package pgjournal

// Queued is the number of requests waiting for a committer.
func (j *Journal) Queued() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.queue)
}

// DropConnections closes the pool's idle connections, so that the next
// operation dials.
func (j *Journal) DropConnections() { j.pool.Reset() }
