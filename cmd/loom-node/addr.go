package main

import "os"

// envAddr names the node the HTTP commands talk to when --addr is not
// given, as VAULT_ADDR or CONSUL_HTTP_ADDR do for their CLIs.
const envAddr = "LOOM_ADDR"

// defaultAddr is $LOOM_ADDR, else node 1 of a local cluster (and the
// port of `loom-node dev`).
func defaultAddr() string {
	if a := os.Getenv(envAddr); a != "" {
		return a
	}
	return "http://127.0.0.1:7420"
}
