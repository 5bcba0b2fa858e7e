// Package docs holds no code: its test runs the code blocks of README.md
// and docs/*.md, so the documentation cannot drift from what Loom does.
//
// Every ```sh and ```go block carries a marker on the line before its
// fence, invisible once rendered:
//
//	<!-- doc: sh NAME -->           a check of that name in this package
//	                                runs the block's commands
//	<!-- doc: go PATH -->           the block's lines appear, in order, in
//	                                the Go file PATH, which is compiled
//	                                (and run) by its package's tests
//
// A block without a marker, a marker naming nothing, and a check whose
// block is gone all fail the test.
//
// The shell checks run each command as a reader would, in one bash session
// per block, against real loom-node processes, with only these changes:
// ports 7400-7999 move to a free range (and $LOOM_ADDR names the first),
// paths under /tmp move into the test's own directory, `go` and `make`
// run at the repository's root (make's data directories in the test's
// directory), benchmark durations are cut to a few hundred milliseconds,
// and placeholders such as <pid of its owner> are filled in. A command
// ending in & runs in the background and the next one waits until what
// it started is ready. Output shown after a command must match, with
// ids, timestamps and durations free to differ; an id the block shows
// stands, in later commands, for the one the command printed.
package docs
