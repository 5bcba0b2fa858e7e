package docs_test

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loom-mesh/loom/internal/ports"
)

// step is one command of a block and the output the block shows for it.
type step struct {
	Cmd  string
	Want []string
}

// steps splits a block into commands. In a transcript (lines starting
// with "$ "), the lines after a command are its output; otherwise every
// line that is not a comment is a command. A trailing \ continues a line.
func steps(text string) []step {
	lines := strings.Split(text, "\n")
	transcript := false
	for _, l := range lines {
		if strings.HasPrefix(l, "$ ") {
			transcript = true
		}
	}
	var out []step
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if transcript {
			if !strings.HasPrefix(l, "$ ") {
				if len(out) > 0 {
					out[len(out)-1].Want = append(out[len(out)-1].Want, l)
				}
				continue
			}
			l = strings.TrimPrefix(l, "$ ")
		} else if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		for strings.HasSuffix(strings.TrimSpace(stripComment(l)), `\`) && i+1 < len(lines) {
			l = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(stripComment(l)), `\`)) + " " + strings.TrimSpace(lines[i+1])
			i++
		}
		out = append(out, step{Cmd: strings.TrimSpace(stripComment(l))})
	}
	for i := range out {
		for len(out[i].Want) > 0 && strings.TrimSpace(out[i].Want[len(out[i].Want)-1]) == "" {
			out[i].Want = out[i].Want[:len(out[i].Want)-1]
		}
	}
	return out
}

// unquoted returns the byte offsets of the characters of l outside
// single and double quotes.
func unquoted(l string) []int {
	var at []int
	var quote rune
	for i, r := range l {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		default:
			at = append(at, i)
		}
	}
	return at
}

// stripComment cuts a shell comment: a # after a blank, outside quotes.
func stripComment(l string) string {
	for _, i := range unquoted(l) {
		if l[i] == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t') {
			return strings.TrimRight(l[:i], " \t")
		}
	}
	return l
}

// splitLast splits "a; b" at its last top-level "; " (outside quotes).
func splitLast(cmd string) (before, last string) {
	cut := -1
	for _, i := range unquoted(cmd) {
		if strings.HasPrefix(cmd[i:], "; ") {
			cut = i
		}
	}
	if cut < 0 {
		return "", cmd
	}
	return strings.TrimSpace(cmd[:cut]), strings.TrimSpace(cmd[cut+1:])
}

// rewrite changes a command (and the output shown for it) before it runs.
type rewrite struct {
	re  *regexp.Regexp
	old string                // a literal, if re is nil
	fn  func([]string) string // the replacement, given re's submatches (or the literal)
}

// mask lets a part of the output shown differ from what the command prints.
type mask struct {
	re      *regexp.Regexp // matched in the output shown
	pattern string         // what the actual output may hold there
}

// session is one bash process running one block's commands, in a
// directory of its own, against ports of its own.
type session struct {
	t        *testing.T
	repo     string
	dir      string
	base     int // 7420 in the block is base here
	rewrites []rewrite
	masks    []mask
	short    bool // cut benchmark durations
	joinWant bool // the shown output wraps one line over several
	env      []string
	ready    []func() error  // how to await the next background command, if not from its text
	until    map[string]bool // commands run again until their output matches (an event to await)

	sh      *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
	bg      []bgJob
	closing sync.Once
}

type bgJob struct {
	pid int
	log string
	cmd string
}

var buildOnce sync.Once
var buildErr error

// newSession starts bash, with bin/ of the repository on $PATH (built by
// `make build`, as the README's commands expect).
func newSession(t *testing.T) *session {
	t.Helper()
	repo := repoRoot(t)
	buildOnce.Do(func() {
		cmd := exec.Command("make", "build")
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("make build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(repo, "bin"), filepath.Join(dir, "bin")); err != nil { // bin/loom-node works here
		t.Fatal(err)
	}
	s := &session{t: t, repo: repo, dir: dir, base: freeBase(t)}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOOM_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	s.env = append(env,
		"PATH="+filepath.Join(repo, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"LOOM_ADDR="+fmt.Sprintf("http://127.0.0.1:%d", s.base))
	t.Cleanup(s.close)
	return s
}

// freeBase picks a base port whose HTTP, gRPC, Raft and gossip ranges
// (base+i, +100, +200, +300, i < 5) are free.
func freeBase(t *testing.T) int {
	t.Helper()
	for range 50 {
		var b [2]byte
		_, _ = rand.Read(b[:])
		base := 20000 + int(b[0])<<5 + int(b[1])%32 // 20000..28191
		free := true
		for off := 0; off < 400 && free; off += 100 {
			for i := range 5 {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+off+i))
				if err != nil {
					free = false
					break
				}
				l.Close()
			}
		}
		if free {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// freePort is a port free now, for a server the block starts, below the
// ephemeral range so that no other test's outbound connection takes it
// before the server binds.
func freePort(t *testing.T) int {
	p, err := ports.FreeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// replace changes the literal old in commands and shown output.
func (s *session) replace(old string, fn func() string) {
	s.rewrites = append(s.rewrites, rewrite{old: old, fn: func([]string) string { return fn() }})
}

// replaceRE changes what re matches; fn gets its submatches.
func (s *session) replaceRE(re string, fn func(m []string) string) {
	s.rewrites = append(s.rewrites, rewrite{re: regexp.MustCompile(re), fn: fn})
}

// let makes the output shown free to differ where re matches it: the
// actual output may hold pattern there.
func (s *session) let(re, pattern string) {
	s.masks = append(s.masks, mask{regexp.MustCompile(re), pattern})
}

var (
	portRE     = regexp.MustCompile(`\b7[4-9]\d\d\b`)
	tmpRE      = regexp.MustCompile(`(^|[\s=:])/tmp/`)
	goRE       = regexp.MustCompile(`(^|&& |; )go `)
	makeRE     = regexp.MustCompile(`(^|&& |; )make (\w+)`)
	benchtime  = regexp.MustCompile(`-benchtime \S+`)
	countRE    = regexp.MustCompile(`-count \d+`)
	roundsRE   = regexp.MustCompile(`--rounds \d+`)
	durationRE = regexp.MustCompile(`--(deliver-)?duration \S+`)
	coldRE     = regexp.MustCompile(`--cold-actors \d+`)
)

// defaults are the commands' default ports, named when a command leaves
// them out.
var defaults = []struct{ cmd, flag, value string }{
	{"loom-node cluster", "--base-port", "7420"},
	{"loom-node run", "--http-port", "7420"},
	{"loom-node run", "--grpc-port", "7421"},
	{"loom-node run", "--raft-port", "7422"},
	{"loom-node run", "--gossip-port", "7946"},
	{"./cmd/loom-bench", "--addrs", "127.0.0.1:7520,127.0.0.1:7521,127.0.0.1:7522"},
	{"./cmd/loom-bench", "--http-addrs", "127.0.0.1:7420,127.0.0.1:7421,127.0.0.1:7422"},
}

// apply rewrites a command or the output shown for it: first the
// changes every block gets, then the block's own (placeholders, ids).
func (s *session) apply(text string, command bool) string {
	if command { // ports left to their defaults are named, so that they move too
		for _, d := range defaults {
			if strings.Contains(text, d.cmd) && !strings.Contains(text, d.flag+" ") {
				text = strings.Replace(text, d.cmd, d.cmd+" "+d.flag+" "+d.value, 1)
			}
		}
	}
	text = portRE.ReplaceAllStringFunc(text, func(p string) string {
		n, _ := strconv.Atoi(p)
		return strconv.Itoa(n - 7420 + s.base)
	})
	if command {
		text = tmpRE.ReplaceAllString(text, "${1}"+s.dir+"/tmp/")
		text = goRE.ReplaceAllString(text, "${1}go -C "+s.repo+" ")
		text = makeRE.ReplaceAllString(text, fmt.Sprintf("${1}make -C %s ${2} PORT=%d DATA=%s/loom-data CLUSTER_DATA=%s/loom-cluster",
			s.repo, s.base, s.dir, s.dir))
	}
	if command && s.short {
		for _, flag := range []string{"--duration", "--deliver-duration"} { // their defaults are long too
			if strings.Contains(text, "./cmd/loom-bench") && !strings.Contains(text, flag+" ") {
				text = strings.Replace(text, "./cmd/loom-bench", "./cmd/loom-bench "+flag+" 10s", 1)
			}
		}
		text = benchtime.ReplaceAllString(text, "-benchtime 1x")
		text = countRE.ReplaceAllString(text, "-count 1")
		text = roundsRE.ReplaceAllString(text, "--rounds 1")
		if strings.Contains(text, "./cmd/loom-bench") {
			// Each cold actor is written once before the rounds (the
			// flag is harmless to the runs without cold scenarios).
			if coldRE.MatchString(text) {
				text = coldRE.ReplaceAllString(text, "--cold-actors 2000")
			} else {
				text = strings.Replace(text, "./cmd/loom-bench", "./cmd/loom-bench --cold-actors 2000", 1)
			}
		}
		text = durationRE.ReplaceAllStringFunc(text, func(m string) string {
			if strings.HasPrefix(m, "--deliver") {
				return "--deliver-duration 3s"
			}
			return "--duration 300ms"
		})
	}
	for _, r := range s.rewrites {
		if r.re == nil {
			if strings.Contains(text, r.old) {
				text = strings.ReplaceAll(text, r.old, r.fn([]string{r.old}))
			}
			continue
		}
		text = r.re.ReplaceAllStringFunc(text, func(m string) string { return r.fn(r.re.FindStringSubmatch(m)) })
	}
	return text
}

func (s *session) start() {
	if s.sh != nil {
		return
	}
	s.sh = exec.Command("bash", "--noprofile", "--norc")
	s.sh.Dir = s.dir
	s.sh.Env = s.env
	s.sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		s.t.Fatal(err)
	}
	s.sh.Stdout, s.sh.Stderr = w, w
	if s.in, err = s.sh.StdinPipe(); err != nil {
		s.t.Fatal(err)
	}
	if err := s.sh.Start(); err != nil {
		s.t.Fatal(err)
	}
	w.Close()
	s.out = bufio.NewReader(r)
}

// exec runs one line in the session's bash and returns what it printed
// (stdout and stderr) and its exit status.
func (s *session) exec(line string, timeout time.Duration) (string, int) {
	s.start()
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	end := "<<<end " + hex.EncodeToString(nonce[:]) + ">>>"
	if _, err := fmt.Fprintf(s.in, "{ %s\n} </dev/null 2>&1; printf '\\n%s %%d\\n' $?\n", line, end); err != nil {
		s.t.Fatalf("writing to bash: %v", err)
	}
	type result struct {
		out  string
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var b strings.Builder
		for {
			l, err := s.out.ReadString('\n')
			if err != nil {
				done <- result{b.String(), -1, err}
				return
			}
			if rest, ok := strings.CutPrefix(l, end+" "); ok {
				code, _ := strconv.Atoi(strings.TrimSpace(rest))
				done <- result{strings.TrimSuffix(b.String(), "\n"), code, nil}
				return
			}
			b.WriteString(l)
		}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			s.t.Fatalf("bash ended running %q: %v\n%s", line, r.err, r.out)
		}
		return r.out, r.code
	case <-time.After(timeout):
		s.close()
		s.t.Fatalf("%q did not end within %v", line, timeout)
		return "", -1
	}
}

// run runs a block: each command in turn, in the background where it ends
// in &, its output checked against what the block shows.
func (s *session) run(b block) {
	s.t.Helper()
	for _, st := range steps(b.Text) {
		s.step(st)
	}
}

func (s *session) step(st step) string {
	s.t.Helper()
	cmd := s.apply(st.Cmd, true)
	if bg, ok := strings.CutSuffix(cmd, "&"); ok && !strings.HasSuffix(cmd, "&&") {
		before, last := splitLast(strings.TrimSpace(bg))
		if before != "" {
			s.foreground(st.Cmd, before, nil)
		}
		s.background(last)
		return ""
	}
	return s.foreground(st.Cmd, cmd, st.Want)
}

func (s *session) foreground(shown, cmd string, want []string) string {
	s.t.Helper()
	s.t.Logf("$ %s", cmd)
	for i := range want {
		want[i] = s.apply(want[i], false)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, code := s.exec(cmd, 5*time.Minute)
		if code != 0 {
			s.t.Fatalf("%q exited %d:\n%s", shown, code, out)
		}
		if len(want) == 0 {
			return out
		}
		binds, err := s.match(want, out)
		if err != nil && s.until[shown] && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond) // the command is the only way to look
			continue
		}
		if err != nil {
			s.t.Fatalf("%q printed\n%s\nbut the block shows\n%s\n(%v)", shown, out, strings.Join(want, "\n"), err)
		}
		for shownID, got := range binds {
			s.replace(shownID, func() string { return got })
		}
		return out
	}
}

// background starts cmd with its output in a log file, then waits until
// what it starts is ready.
func (s *session) background(cmd string) {
	s.t.Helper()
	log := filepath.Join(s.dir, fmt.Sprintf("bg-%d.log", len(s.bg)+1))
	s.t.Logf("$ %s &", cmd)
	out, code := s.exec(fmt.Sprintf("( %s ) >%s 2>&1 &\necho $!", cmd, log), time.Minute)
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if code != 0 || err != nil {
		s.t.Fatalf("starting %q: %s", cmd, out)
	}
	job := bgJob{pid: pid, log: log, cmd: cmd}
	s.bg = append(s.bg, job)
	var ready []func() error
	if s.ready != nil {
		ready, s.ready = s.ready, nil
	} else {
		ready = s.readiness(cmd)
	}
	if len(ready) == 0 {
		s.t.Fatalf("the test does not know when %q is ready: give it one with session.await", cmd)
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, f := range ready {
		for {
			err := f()
			if err == nil {
				break
			}
			if syscall.Kill(pid, 0) != nil {
				s.t.Fatalf("%q ended before it was ready (%v):\n%s", cmd, err, tail(log))
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("%q not ready after 90 s: %v\n%s", cmd, err, tail(log))
			}
			time.Sleep(100 * time.Millisecond) // polling a port: there is no event to wait on
		}
	}
}

// eventually makes the block's command cmd run again, for up to a
// minute, until its output matches what the block shows: it shows the
// outcome of something that takes a while.
func (s *session) eventually(cmd string) {
	if s.until == nil {
		s.until = map[string]bool{}
	}
	s.until[cmd] = true
}

// await sets how to tell that the next background command is ready.
func (s *session) await(fs ...func() error) { s.ready = fs }

var (
	nRE        = regexp.MustCompile(`\s-n (\d+)`)
	basePortRE = regexp.MustCompile(`--base-port (\d+)|PORT=(\d+)`)
	httpPortRE = regexp.MustCompile(`--http-port (\d+)`)
	redisRE    = regexp.MustCompile(`redis-server .*--port (\d+)`)
)

// readiness tells from a command when what it started is ready: the
// nodes of a cluster, a node or a Redis server answering.
func (s *session) readiness(cmd string) []func() error {
	secure := strings.Contains(cmd, "--secure")
	switch {
	case redisRE.MatchString(cmd):
		port, _ := strconv.Atoi(redisRE.FindStringSubmatch(cmd)[1])
		return []func() error{dialable(port)}
	case strings.Contains(cmd, " cluster"):
		n, base := 3, s.base
		if m := nRE.FindStringSubmatch(cmd); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		if m := basePortRE.FindStringSubmatch(cmd); m != nil {
			base, _ = strconv.Atoi(m[1] + m[2])
		}
		var fs []func() error
		for i := range n {
			fs = append(fs, nodeReady(base+i, secure))
		}
		if !secure { // and the first node sees them all (its admin routes need a token when secure)
			fs = append(fs, membersAlive(base, n))
		}
		return fs
	case strings.Contains(cmd, " run") || strings.Contains(cmd, " dev"):
		port := s.base
		if m := httpPortRE.FindStringSubmatch(cmd); m != nil {
			port, _ = strconv.Atoi(m[1])
		} else if m := basePortRE.FindStringSubmatch(cmd); m != nil {
			port, _ = strconv.Atoi(m[1] + m[2])
		}
		return []func() error{nodeReady(port, secure)}
	}
	return nil
}

func dialable(port int) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
}

// probe reads a node's readiness; the probe trusts any certificate: it
// only waits for the node on loopback, the commands check TLS themselves.
var probe = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
}}

func nodeReady(port int, secure bool) func() error {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	return func() error {
		resp, err := probe.Get(fmt.Sprintf("%s://127.0.0.1:%d/health/ready", scheme, port))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/health/ready: %s", resp.Status)
		}
		return nil
	}
}

// membersAlive is whether the node at port sees n members alive.
func membersAlive(port, n int) func() error {
	return func() error {
		resp, err := probe.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/cluster", port))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var v struct{ Members []struct{ State string } }
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			return err
		}
		alive := 0
		for _, m := range v.Members {
			if m.State == "alive" {
				alive++
			}
		}
		if alive != n {
			return fmt.Errorf("%d of %d members alive", alive, n)
		}
		return nil
	}
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// close stops bash and everything the block started: SIGTERM to the
// process group, then SIGKILL, then any process still naming the
// session's directory.
func (s *session) close() {
	s.closing.Do(func() {
		if s.t.Failed() {
			for _, j := range s.bg {
				s.t.Logf("%s (pid %d) printed:\n%s", j.cmd, j.pid, tail(j.log))
			}
		}
		if s.sh == nil {
			return
		}
		pgid := s.sh.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		s.in.Close()
		exited := make(chan struct{})
		go func() { _ = s.sh.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		killNaming(s.dir)
	})
}

// killNaming kills every process whose command line holds dir.
func killNaming(dir string) {
	for _, pid := range naming(dir) {
		if pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// pidOf is the pid of the process whose command line holds every part.
func pidOf(t *testing.T, parts ...string) int {
	t.Helper()
	found := naming(parts...)
	if len(found) != 1 {
		t.Fatalf("processes naming %q: %v, want one", parts, found)
	}
	return found[0]
}

// naming lists the processes whose command lines (arguments joined by
// spaces) hold every part.
func naming(parts ...string) []int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []int
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		line := strings.ReplaceAll(string(data), "\x00", " ")
		all := true
		for _, part := range parts {
			all = all && strings.Contains(line, part)
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); all && err == nil {
			found = append(found, pid)
		}
	}
	return found
}

var (
	hexRE      = regexp.MustCompile(`\b[0-9a-f]{16,}\b`)
	timeRE     = regexp.MustCompile(`\b\d{4}-\d\d-\d\dT[0-9:.]+Z\b`)
	decimalRE  = regexp.MustCompile(`\b\d+\.\d+\b`)
	ellipsisRE = regexp.MustCompile(`…`)
)

// match checks out against the output a block shows. Spaces are
// collapsed; ids (16 or more hex digits), timestamps, decimals and "…"
// match any; the session's masks apply. It returns each id shown and
// the one printed in its place.
func (s *session) match(want []string, out string) (map[string]string, error) {
	norm := func(lines []string, sep string) string {
		for i := range lines {
			lines[i] = squash(lines[i])
		}
		return strings.Join(lines, sep)
	}
	sep := "\n"
	if s.joinWant {
		sep = ""
	}
	w := norm(append([]string(nil), want...), sep)
	got := norm(strings.Split(strings.TrimSpace(out), "\n"), "\n")
	if s.joinWant {
		got = strings.ReplaceAll(got, "\n", "")
	}
	type special struct {
		re      *regexp.Regexp
		pattern string
		bind    bool
	}
	specials := []special{{ellipsisRE, `.*?`, false}, {timeRE, `\S+`, false}, {hexRE, `([0-9a-f]{16,})`, true}, {decimalRE, `[0-9.]+`, false}}
	for _, m := range s.masks {
		specials = append([]special{{m.re, m.pattern, false}}, specials...)
	}
	var pat strings.Builder
	var ids []string
	for rest := w; rest != ""; {
		first, at := -1, []int(nil)
		for i, sp := range specials {
			if loc := sp.re.FindStringIndex(rest); loc != nil && (at == nil || loc[0] < at[0]) {
				first, at = i, loc
			}
		}
		if at == nil {
			pat.WriteString(regexp.QuoteMeta(rest))
			break
		}
		pat.WriteString(regexp.QuoteMeta(rest[:at[0]]))
		pat.WriteString(specials[first].pattern)
		if specials[first].bind {
			ids = append(ids, rest[at[0]:at[1]])
		}
		rest = rest[at[1]:]
	}
	re, err := regexp.Compile(`(?s)^` + pat.String() + `$`)
	if err != nil {
		return nil, err
	}
	m := re.FindStringSubmatch(got)
	if m == nil {
		return nil, fmt.Errorf("no match for %s", re)
	}
	binds := map[string]string{}
	for i, id := range ids {
		if id != m[i+1] {
			binds[id] = m[i+1]
		}
	}
	return binds, nil
}
