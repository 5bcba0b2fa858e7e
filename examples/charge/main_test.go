package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loom-mesh/loom/task"
)

func TestCharge(t *testing.T) {
	ctx := context.Background()
	res := Charge.Run(ctx, Order{ID: "o-1", Amount: 42})
	// res.Success, res.Value, res.Err, res.Duration, res.Attempts, res.Start, res.FailedStep
	if !res.Success || res.Value != (Receipt{Order: "o-1", Charged: 42}) || res.Err != nil || res.Attempts != 1 {
		t.Fatalf("charging o-1: %+v", res)
	}
	if res.Start.IsZero() || res.Duration <= 0 || res.FailedStep != "" {
		t.Fatalf("charging o-1: start %v, duration %v, failed step %q", res.Start, res.Duration, res.FailedStep)
	}

	// A busy payment service is tried again, after the backoff.
	payments.busy.Store(2)
	res = Charge.Run(ctx, Order{ID: "o-2", Amount: 5})
	if !res.Success || res.Value.Charged != 5 || res.Attempts != 3 || res.Duration < 300*time.Millisecond*8/10 {
		t.Fatalf("charging o-2 with the service busy twice: %+v", res)
	}

	// Nothing to charge is never retried.
	res = Charge.Run(ctx, Order{ID: "o-3"})
	if res.Success || res.Err == nil || res.Err.Error() != "nothing to charge" || !task.IsPermanent(res.Err) || res.Attempts != 1 {
		t.Fatalf("charging o-3, with nothing to charge: %+v", res)
	}
}

// The program serves the task over HTTP, answering what
// docs/programming.md shows, until it gets SIGINT.
func TestProgram(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "charge")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/loom-mesh/loom/examples/charge").CombinedOutput(); err != nil {
		t.Fatalf("building the program: %v\n%s", err, out)
	}
	conf := filepath.Join(dir, "loom.config.yaml")
	yaml := "node:\n  httpPort: 0\n  dataDir: " + strconv.Quote(filepath.Join(dir, "data")) + "\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "LOOM_CONFIG_PATH="+conf)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The node logs its HTTP address once it serves.
	var logs bytes.Buffer
	lines := bufio.NewScanner(stderr)
	started := regexp.MustCompile(`msg="node started" .*http=(\S+)`)
	addr := ""
	for addr == "" && lines.Scan() {
		logs.Write(append(lines.Bytes(), '\n'))
		if m := started.FindSubmatch(lines.Bytes()); m != nil {
			addr = string(m[1])
		}
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(&logs, stderr)
	}()
	if addr == "" {
		<-drained
		_ = cmd.Wait()
		t.Fatalf("the program did not start:\n%s", logs.Bytes())
	}

	post := func(query, body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post("http://"+addr+"/v1/tasks/charge"+query, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("POST %s %s: %v", query, body, err)
		}
		return resp.StatusCode, out
	}
	code, out := post("", `{"ID":"o-1","Amount":42}`)
	if v, _ := out["value"].(map[string]any); code != http.StatusOK || out["success"] != true || v["Order"] != "o-1" || v["Charged"] != 42.0 || out["attempts"] != 1.0 {
		t.Errorf("charging o-1: %d %v", code, out)
	}
	code, out = post("", `{"ID":"o-2"}`)
	if e, _ := out["error"].(map[string]any); code != http.StatusUnprocessableEntity || out["success"] != false || e["code"] != "failed" || e["message"] != "nothing to charge" || out["attempts"] != 1.0 {
		t.Errorf("charging o-2, with nothing to charge: %d %v", code, out)
	}
	code, out = post("?async=true", `{"ID":"o-3","Amount":1}`)
	if code != http.StatusAccepted || out["accepted"] != true || out["task"] != "charge" || out["correlationId"] == "" {
		t.Errorf("starting o-3: %d %v", code, out)
	}
	code, out = post("", `{"ID":1}`)
	e, _ := out["error"].(map[string]any)
	if msg, _ := e["message"].(string); code != http.StatusBadRequest || e["code"] != "bad_payload" || !strings.Contains(msg, "input is not valid JSON for main.Order") {
		t.Errorf("charging a malformed order: %d %v", code, out)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-drained
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the program, interrupted: %v\n%s", err, logs.Bytes())
	}
	if !strings.Contains(logs.String(), `msg="node stopped"`) {
		t.Fatalf("the program did not shut its node down:\n%s", logs.Bytes())
	}
}
