package auth_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/loom-mesh/loom/security/auth"
)

const (
	appSecret = "app-secret-0123456789"
	opsSecret = "ops-secret-0123456789"
	objSecret = "obj-secret-0123456789"
)

func table(t *testing.T) *auth.Tokens {
	t.Helper()
	tk, err := auth.New([]auth.Token{
		{Name: "app", Secret: appSecret, Scopes: []auth.Scope{auth.ActorsCall, auth.TasksRun}},
		{Name: "ops", Secret: opsSecret, Scopes: []auth.Scope{auth.Admin, auth.Metrics}},
		{Name: "orders", Secret: objSecret, Scopes: []auth.Scope{auth.CallScope("order")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestCheck(t *testing.T) {
	tk := table(t)
	for _, c := range []struct {
		secret string
		need   auth.Scope
		name   string
		want   error
	}{
		{appSecret, auth.CallScope("counter"), "app", nil},
		{appSecret, auth.TasksRun, "app", nil},
		{appSecret, auth.Authenticated, "app", nil},
		{appSecret, auth.Admin, "app", auth.ErrPermissionDenied},
		{appSecret, auth.Metrics, "app", auth.ErrPermissionDenied},
		{opsSecret, auth.Admin, "ops", nil},
		{opsSecret, auth.Metrics, "ops", nil},
		{opsSecret, auth.CallScope("counter"), "ops", auth.ErrPermissionDenied},
		{objSecret, auth.CallScope("order"), "orders", nil},
		{objSecret, auth.CallScope("orders"), "orders", auth.ErrPermissionDenied},
		{objSecret, auth.CallScope("counter"), "orders", auth.ErrPermissionDenied},
		{objSecret, auth.TasksRun, "orders", auth.ErrPermissionDenied},
		{"", auth.Authenticated, "", auth.ErrUnauthenticated},
		{"app-secret-012345678", auth.Authenticated, "", auth.ErrUnauthenticated}, // a prefix
		{appSecret + "0", auth.Authenticated, "", auth.ErrUnauthenticated},
		{strings.ToUpper(appSecret), auth.Authenticated, "", auth.ErrUnauthenticated},
	} {
		name, err := tk.Check(c.secret, c.need)
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("Check(%q, %q) = %v, want %v", c.secret, c.need, err, c.want)
		}
		if name != c.name {
			t.Errorf("Check(%q, %q) named %q, want %q", c.secret, c.need, name, c.name)
		}
		if err != nil {
			for _, s := range []string{appSecret, opsSecret, objSecret} {
				if strings.Contains(err.Error(), s) || (c.secret != "" && strings.Contains(err.Error(), c.secret)) {
					t.Errorf("error %q repeats a secret", err)
				}
			}
		}
	}
	_, err := tk.Check(appSecret, auth.Admin)
	if !strings.Contains(err.Error(), `token "app" lacks the scope admin (it has actors:call, tasks:run)`) {
		t.Errorf("a denial does not say what is missing: %v", err)
	}
}

func TestZeroValueRefusesEverything(t *testing.T) {
	var tk auth.Tokens
	if _, err := tk.Check(appSecret, auth.Authenticated); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("empty table: %v", err)
	}
}

func TestSetRefusesBadTablesWhole(t *testing.T) {
	tk := table(t)
	for _, c := range []struct {
		tokens []auth.Token
		want   string
	}{
		{[]auth.Token{{Name: "", Secret: appSecret, Scopes: []auth.Scope{auth.Admin}}}, "has no name"},
		{[]auth.Token{{Name: "a", Secret: "short", Scopes: []auth.Scope{auth.Admin}}}, `token "a": the secret must be at least 16 bytes (got 5`},
		{[]auth.Token{{Name: "a", Secret: appSecret}}, `token "a" has no scope`},
		{[]auth.Token{{Name: "a", Secret: appSecret, Scopes: []auth.Scope{"actors:cal"}}}, `unknown scope "actors:cal"`},
		{[]auth.Token{{Name: "a", Secret: appSecret, Scopes: []auth.Scope{"actors:call:"}}}, `unknown scope "actors:call:"`},
		{[]auth.Token{{Name: "a", Secret: appSecret, Scopes: []auth.Scope{auth.Admin}}, {Name: "a", Secret: opsSecret, Scopes: []auth.Scope{auth.Admin}}}, `two tokens are named "a"`},
		{[]auth.Token{{Name: "a", Secret: appSecret, Scopes: []auth.Scope{auth.Admin}}, {Name: "b", Secret: appSecret, Scopes: []auth.Scope{auth.Admin}}}, `tokens "a" and "b" have the same secret`},
	} {
		err := tk.Set(c.tokens)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Set(%v) = %v, want %q", c.tokens[0].Name, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), appSecret) || strings.Contains(err.Error(), opsSecret)) {
			t.Errorf("error %q repeats a secret", err)
		}
		// The old table stands.
		if name, err := tk.Check(appSecret, auth.ActorsCall); err != nil || name != "app" || tk.Len() != 3 {
			t.Fatalf("after a refused Set: %q %v (len %d)", name, err, tk.Len())
		}
	}
}

// TestSetIsAtomic: checks running beside Set see the old table or the
// new, never neither.
func TestSetIsAtomic(t *testing.T) {
	tk := table(t)
	a := []auth.Token{{Name: "x", Secret: appSecret, Scopes: []auth.Scope{auth.ActorsCall}}}
	b := []auth.Token{{Name: "y", Secret: appSecret, Scopes: []auth.Scope{auth.ActorsCall}}}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := tk.Set(map[bool][]auth.Token{true: a, false: b}[i%2 == 0]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 20000 {
		if name, err := tk.Check(appSecret, auth.CallScope("t")); err != nil || (name != "x" && name != "y" && name != "app") {
			t.Fatalf("mid-swap check: %q %v", name, err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestBearer(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc":      "abc",
		"bearer abc":      "abc",
		"BEARER  abc ":    "abc",
		"Basic dXNlcjpw":  "",
		"abc":             "",
		"":                "",
		"Bearer":          "",
		"Token abc":       "",
		" Bearer abc def": "abc def",
	} {
		if got := auth.Bearer(in); got != want {
			t.Errorf("Bearer(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewSecret(t *testing.T) {
	a, b := auth.NewSecret(), auth.NewSecret()
	if len(a) != 43 || a == b || strings.ContainsAny(a, "+/=") {
		t.Fatalf("NewSecret: %q, %q", a, b)
	}
	if _, err := auth.New([]auth.Token{{Name: "n", Secret: a, Scopes: []auth.Scope{auth.Admin}}}); err != nil {
		t.Fatal(err)
	}
}
