package task

// WithRandom replaces the source of jitter, for tests that check the
// schedule.
var WithRandom = withRandom
