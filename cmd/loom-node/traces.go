package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/loom-mesh/loom/observability"
)

// cmdTraces asks a node for traces (cluster-wide: the node asks its peers)
// and prints them as indented trees: node, span, actor and method,
// duration.
func cmdTraces(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom-node traces", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultAddr(), "HTTP address of any node (default: $LOOM_ADDR, else node 1 of a local cluster)")
	traceID := fs.String("trace", "", "trace id(s), comma-separated")
	actor := fs.String("actor", "", "actor: <type>/<id>, or <type>")
	since := fs.String("since", "", "only traces with spans since then: an RFC 3339 time, or a duration ago (15m)")
	limit := fs.Int("limit", 0, "most traces to show (default 100)")
	asJSON := fs.Bool("json", false, "print the JSON answer instead of trees")
	timeout := fs.Duration("timeout", 15*time.Second, "request timeout")
	// Flags may follow the correlation id.
	var positional []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(positional) > 1 {
		fmt.Fprintln(stderr, "usage: loom-node traces [--addr URL] [--trace ID] [--actor A] [--since T] [--limit N] [--json] [<correlation-id>]")
		return 2
	}
	v := url.Values{}
	if len(positional) == 1 {
		v.Set("correlationId", positional[0])
	}
	for k, val := range map[string]string{"traceId": *traceID, "actor": *actor, "since": *since} {
		if val != "" {
			v.Set(k, val)
		}
	}
	if *limit > 0 {
		v.Set("limit", fmt.Sprint(*limit))
	}
	q, err := observability.ParseQuery(v, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "loom-node traces: %v\n", err)
		return 2
	}
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := observability.FetchTraces(ctx, httpClient(0), base, q, false)
	if err != nil {
		fmt.Fprintf(stderr, "loom-node traces: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
		return 0
	}
	for node, status := range res.Nodes {
		if status != "ok" {
			fmt.Fprintf(stderr, "loom-node traces: node %s: %s\n", node, status)
		}
	}
	if len(res.Traces) == 0 {
		fmt.Fprintln(stderr, "loom-node traces: no matching trace (is tracing.enabled set on the nodes?)")
		return 1
	}
	if err := observability.WriteTree(stdout, res.Traces); err != nil {
		fmt.Fprintf(stderr, "loom-node traces: %v\n", err)
		return 1
	}
	return 0
}
