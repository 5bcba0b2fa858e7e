package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/loom-mesh/loom/cluster"
	"github.com/loom-mesh/loom/security/auth"
	"github.com/loom-mesh/loom/security/tlsconf"
)

// cmdCluster starts a local cluster of n real loom-node processes, each with
// its own data dir and ports, their logs prefixed with the node id, all
// reading the --config file when one is given. SIGINT
// or SIGTERM stops them all cleanly (each gets SIGTERM and is waited for).
// A node that dies is reported and the others keep running.
func cmdCluster(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loom-node cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 3, "number of nodes")
	base := fs.Int("base-port", 7420, "node i (from 0) uses HTTP base+i, gRPC base+100+i, Raft base+200+i, gossip base+300+i")
	dataDir := fs.String("data-dir", "./loom-cluster", "parent of the nodes' data dirs (node-1, node-2, ...)")
	bind := fs.String("bind", "127.0.0.1", "address every node binds")
	cfgFile := fs.String("config", "", "config file every node reads (for instance one that puts coordination and journals on Redis or PostgreSQL); flags set each node's id, ports and data dir")
	tracing := fs.Bool("tracing", true, "keep traces of calls on every node (tracing.enabled; false to measure without)")
	secure := fs.Bool("secure", false, "make a fresh CA, node and client certificates, a gossip key and an operator token under --data-dir/tls, and turn on mutual TLS everywhere (HTTPS, gRPC, Raft), gossip encryption and bearer tokens")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *n < 1 || *n > 9 {
		fmt.Fprintln(stderr, "loom-node cluster: -n must be between 1 and 9")
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "loom-node cluster: %v\n", err)
		return 1
	}
	seed := fmt.Sprintf("%s:%d", *bind, *base+300)
	var pki *clusterPKI
	if *secure {
		if pki, err = newClusterPKI(filepath.Join(*dataDir, "tls"), *n, *bind); err != nil {
			fmt.Fprintf(stderr, "loom-node cluster: --secure: %v\n", err)
			return 1
		}
	}
	var mu sync.Mutex // serialises the prefixed output lines
	var wg sync.WaitGroup
	procs := make([]*exec.Cmd, 0, *n)
	exited := make(chan int, *n)
	stopAll := func(sig os.Signal) {
		for _, p := range procs {
			_ = p.Process.Signal(sig)
		}
	}
	for i := 0; i < *n; i++ {
		id := fmt.Sprintf("node-%d", i+1)
		nodeArgs := []string{"run",
			"--node-id", id,
			"--data-dir", filepath.Join(*dataDir, id),
			"--bind", *bind,
			"--http-port", strconv.Itoa(*base + i),
			"--grpc-port", strconv.Itoa(*base + 100 + i),
			"--raft-port", strconv.Itoa(*base + 200 + i),
			"--gossip-port", strconv.Itoa(*base + 300 + i),
			"--bootstrap-expect", strconv.Itoa(*n),
			"--gossip", "local",
		}
		if i > 0 {
			nodeArgs = append(nodeArgs, "--join", seed)
		}
		if *cfgFile != "" {
			nodeArgs = append(nodeArgs, "--config", *cfgFile)
		}
		nodeArgs = append(nodeArgs, "--tracing="+strconv.FormatBool(*tracing))
		if pki != nil {
			nodeArgs = append(nodeArgs, pki.nodeArgs(id)...)
		}
		cmd := exec.Command(self, nodeArgs...)
		cmd.Env = append(os.Environ(), "LOOM_CONFIG_PATH=")
		out, _ := cmd.StdoutPipe()
		errOut, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(stderr, "loom-node cluster: starting %s: %v\n", id, err)
			stopAll(syscall.SIGTERM)
			return 1
		}
		procs = append(procs, cmd)
		for _, r := range []io.Reader{out, errOut} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc := bufio.NewScanner(r)
				sc.Buffer(make([]byte, 64*1024), 1024*1024)
				for sc.Scan() {
					mu.Lock()
					fmt.Fprintf(stdout, "%-7s | %s\n", id, sc.Text())
					mu.Unlock()
				}
			}()
		}
		go func() {
			_ = cmd.Wait()
			exited <- cmd.ProcessState.ExitCode()
		}()
	}
	mu.Lock()
	fmt.Fprintf(stdout, "loom-node cluster: %d nodes starting; HTTP on %s:%d..%d; Ctrl-C stops them all\n", *n, *bind, *base, *base+*n-1)
	if pki != nil {
		fmt.Fprintf(stdout, "loom-node cluster: mutual TLS, gossip encryption and bearer tokens on; CA, certificates, gossip key and tokens in %s\n", pki.dir)
		fmt.Fprintf(stdout, "loom-node cluster: try  %s=%s %s=%s %s=%s %s=$(cat %s) %s call --addr https://%s:%d counter/c1 add '{\"delta\":1}'\n",
			envTLSCA, pki.ca, envTLSCert, pki.clientCert, envTLSKey, pki.clientKey, envToken, pki.token, filepath.Base(self), *bind, *base+*n-1)
	} else {
		fmt.Fprintf(stdout, "loom-node cluster: try  %s call --addr http://%s:%d counter/c1 add '{\"delta\":1}'\n", filepath.Base(self), *bind, *base+*n-1)
	}
	mu.Unlock()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// A node that exits (or is killed, to try failover) is reported; the
	// others keep running until Ctrl-C or until none is left.
	code, running := 0, *n
wait:
	for running > 0 {
		select {
		case <-sigs:
			break wait
		case c := <-exited:
			running--
			if c != 0 {
				code = 1
			}
			fmt.Fprintf(stderr, "loom-node cluster: a node exited (code %d); %d still running\n", c, running)
		}
	}
	stopAll(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	for running > 0 {
		select {
		case c := <-exited:
			running--
			if c != 0 {
				code = 1
			}
		case <-sigs:
			stopAll(syscall.SIGKILL)
		case <-ctx.Done():
			stopAll(syscall.SIGKILL)
		}
	}
	wg.Wait()
	return code
}

// clusterPKI is the CA and certificates `loom-node cluster --secure`
// makes: a fresh CA, a node certificate per node and one client
// certificate ("cli") for the commands and loom-bench.
type clusterPKI struct {
	dir, ca, caKey        string
	clientCert, clientKey string
	gossipKey             string               // the file of the gossip encryption key
	tokens, token         string               // the nodes' tokens file; the operator token's secret
	nodes                 map[string][2]string // id → cert, key
}

func newClusterPKI(dir string, n int, bind string) (*clusterPKI, error) {
	if err := os.RemoveAll(dir); err != nil { // fresh every run
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caPaths, err := createCA(dir, "Loom local cluster CA", 0)
	if err != nil {
		return nil, err
	}
	p := &clusterPKI{dir: dir, ca: caPaths[0], caKey: caPaths[1], nodes: map[string][2]string{}}
	var ips []net.IP
	if ip := net.ParseIP(bind); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		ips = append(ips, ip)
	}
	for i := range n {
		id := fmt.Sprintf("node-%d", i+1)
		paths, err := createCert(p.ca, p.caKey, dir, tlsconf.CertRequest{Role: tlsconf.RoleNode, Name: id, IPs: ips})
		if err != nil {
			return nil, err
		}
		p.nodes[id] = paths
	}
	paths, err := createCert(p.ca, p.caKey, dir, tlsconf.CertRequest{Role: tlsconf.RoleClient, Name: "cli"})
	if err != nil {
		return nil, err
	}
	p.clientCert, p.clientKey = paths[0], paths[1]
	p.gossipKey = filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(p.gossipKey, []byte(cluster.EncodeKey(cluster.NewKey())+"\n"), 0o600); err != nil {
		return nil, err
	}
	// One token that may do everything, for trying the cluster out; a
	// real deployment gives each caller a token of its own, with the
	// scopes it needs.
	secret := auth.NewSecret()
	p.tokens, p.token = filepath.Join(dir, "tokens.yaml"), filepath.Join(dir, "token")
	yaml := fmt.Sprintf("tokens:\n  operator:\n    secret: %s\n    scopes: [%s, %s, %s, %s]\n", secret, auth.ActorsCall, auth.TasksRun, auth.Admin, auth.Metrics)
	if err := os.WriteFile(p.tokens, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.token, []byte(secret+"\n"), 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

// nodeArgs are node id's TLS flags.
func (p *clusterPKI) nodeArgs(id string) []string {
	c := p.nodes[id]
	return []string{"--tls-ca", p.ca, "--tls-cert", c[0], "--tls-key", c[1], "--tls-verify", "--gossip-key-file", p.gossipKey, "--tokens-file", p.tokens}
}
