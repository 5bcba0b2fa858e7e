// Command loom-node runs a Loom node and talks to one.
//
//	loom-node dev [--config FILE] [--data-dir DIR] [--http-port N] [--node-id ID]
//	loom-node run [flags of dev] [--grpc-port N] [--raft-port N] [--gossip-port N] [--join ADDRS] [--bootstrap-expect N]
//	loom-node cluster [-n 3] [--config FILE]
//	loom-node members [--addr URL]
//	loom-node call [--addr URL] [--token T] [--retry D] <type>/<id> <method> ['<json>']
//	loom-node traces [--addr URL] [--trace ID] [--actor A] [--since T] [--json] [<correlation-id>]
//	loom-node tls ca create [--dir DIR]
//	loom-node tls cert create (--node ID | --client NAME) [--dir DIR] [--ip IPS] [--dns NAMES]
//	loom-node token create
//	loom-node config validate [FILE]
//	loom-node config print [--config FILE]
//	loom-node version
//
// dev runs a one-node cluster on embedded defaults (config.Dev): the Raft
// coordinator and replicated journal under --data-dir (default
// ./loom-data) with bootstrapExpect 1, free gRPC, Raft and gossip ports,
// the built-in actor types, and the HTTP gateway on --http-port (default
// 7420; 0 picks a free port). It prints one line with the address it serves. SIGINT or
// SIGTERM stops it cleanly (running turns finish, the journal is flushed,
// exit code 0); a second signal exits at once with code 1.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "dev":
		return cmdDev(args[1:], stdout, stderr)
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "cluster":
		return cmdCluster(args[1:], stdout, stderr)
	case "members":
		return cmdMembers(args[1:], stdout, stderr)
	case "call":
		return cmdCall(args[1:], stdout, stderr)
	case "send":
		return cmdSend(args[1:], stdout, stderr)
	case "dlq":
		return cmdDLQ(args[1:], stdout, stderr)
	case "traces":
		return cmdTraces(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "token":
		return cmdToken(args[1:], stdout, stderr)
	case "keygen":
		return cmdKeygen(args[1:], stdout, stderr)
	case "keyring":
		return cmdKeyring(args[1:], stdout, stderr)
	case "tls":
		return cmdTLS(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "loom-node", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "loom-node: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  loom-node dev [--config FILE] [--data-dir DIR] [--http-port N] [--node-id ID] [--bind IP]
      run a single node on embedded defaults (bbolt journal, built-in actor types)
  loom-node run [dev flags] [--grpc-port N] [--raft-port N] [--gossip-port N]
                [--join HOST:PORT,...] [--bootstrap-expect N] [--advertise IP] [--gossip lan|local]
                [--tls-ca FILE --tls-cert FILE --tls-key FILE [--tls-verify]] [--gossip-key-file FILE]
      run a cluster member (gossip, gRPC; Raft coordinator and journal, or Redis, PostgreSQL or Cosmos DB per --config)`+testUsage+`
  loom-node cluster [-n 3] [--base-port 7420] [--data-dir ./loom-cluster] [--config FILE] [--secure]
      run a local cluster of n loom-node processes; Ctrl-C stops them all
      (--secure: mutual TLS everywhere, gossip encryption and bearer tokens; files in the data dir)
  loom-node members [--addr URL]
      list the cluster's members, Raft roles and the leader, as a node sees them
  loom-node call [--addr URL] [--token T] [--retry D] <type>/<id> <method> ['<json>']
      call an actor through a node's HTTP gateway (default --addr $LOOM_ADDR, else http://127.0.0.1:7420)
  loom-node send [--addr URL] [--token T] [--id ID] [--delay D | --at TIME] <type>/<id> <method> ['<json>']
      send a durable one-way message; answers once it is accepted (durable)
  loom-node dlq list|show|replay|purge [--addr URL] [--type T] [--actor T/ID] [--older-than D] [--all] [ids]
      list, inspect, replay (attempts reset) or purge dead-lettered messages
  loom-node traces [--addr URL] [--trace ID] [--actor A] [--since T] [--limit N] [--json] [<correlation-id>]
      print a call's trace, cluster-wide, as a tree: node, span, actor, method, duration
  loom-node tls ca create [--dir .] [--name NAME] [--days 3650]
      create a cluster CA: loom-ca.pem and loom-ca-key.pem (0600)
  loom-node tls cert create (--node ID | --client NAME) [--dir .] [--ca loom-ca.pem] [--ca-key loom-ca-key.pem]
                            [--ip IP,...] [--dns NAME,...] [--days 365]
      create a node or client certificate signed by the CA (node-ID.pem, client-NAME.pem, keys 0600)
  loom-node config validate [FILE]
      check a config file (default: $LOOM_CONFIG_PATH); lists every problem
  loom-node config print [--config FILE]
      print the effective config, secrets redacted
  loom-node keygen
      print a new gossip encryption key (cluster.gossipKey)
  loom-node token create
      print a new bearer token secret (auth.tokens.<name>.secret)
  loom-node keyring list|install|use|remove [--addr URL] [--key KEY]
      list or change the gossip keyring on every member (rotate: install, use, remove)
  loom-node version
`)
}
