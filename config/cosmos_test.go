package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const testCosmosKey = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DDJzIZxpIgRaBXd1O2uyCMSaf4y+WfvlsVzxhKkxxt/Q6w=="

// TestCosmosExampleSetsEveryCosmosKey: testdata/cosmos.config.yaml, the
// documented Cosmos DB example, sets every key of an account through the
// seed's sections, loads, and never prints the key.
func TestCosmosExampleSetsEveryCosmosKey(t *testing.T) {
	t.Setenv("COSMOS_KEY", testCosmosKey)
	c, err := Load("testdata/cosmos.config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeFor[CosmosConfig]()
	for i := range typ.NumField() {
		key := "journal.cosmos." + yamlName(typ.Field(i))
		if _, ok := c.src.keys[key]; !ok {
			t.Errorf("testdata/cosmos.config.yaml does not set %s (stateAdapter.%s)", key, yamlName(typ.Field(i)))
		}
	}
	if c.Journal.Backend != JournalCosmos || c.Coordination.Backend != CoordinationCosmos {
		t.Fatalf("backends: journal %q, coordination %q", c.Journal.Backend, c.Coordination.Backend)
	}
	want := CosmosConfig{Endpoint: "https://myaccount.documents.azure.com:443/", Key: testCosmosKey, Database: "orders",
		LeaseContainer: "orders-leases", JournalContainer: "orders-journal", CAFile: "/etc/loom/cosmos-ca.pem",
		Consistency: "Strong", ConnectTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second}
	if c.Journal.Cosmos != want || c.CoordinationCosmos() != want {
		t.Fatalf("journal.cosmos = %+v, coordinator's %+v; want %+v", c.Journal.Cosmos, c.CoordinationCosmos(), want)
	}
	if c.Coordination.SessionTTL != 15*time.Second {
		t.Fatalf("sessionTTL = %v", c.Coordination.SessionTTL)
	}
	printed, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(printed), testCosmosKey[:16]) || !strings.Contains(string(printed), "[redacted]") {
		t.Fatalf("config print shows the key or no redaction:\n%s", printed)
	}
}

// TestCosmosValidate: the rules of the cosmos backends, each problem on
// its key, never quoting the account key.
func TestCosmosValidate(t *testing.T) {
	acct := CosmosConfig{Endpoint: "https://a.documents.azure.com:443/", Key: testCosmosKey}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		key  string
		want string
	}{
		{"journal without an account", func(c *Config) { c.Journal.Backend, c.Coordination.Backend = "cosmos", "raft" },
			"journal.backend", "cosmos needs an account"},
		{"journal with a memory coordinator", func(c *Config) { c.Journal.Backend, c.Journal.Cosmos = "cosmos", acct },
			"journal.backend", "cosmos needs coordination.backend cosmos or raft"},
		{"coordinator with a local journal", func(c *Config) { c.Coordination.Backend, c.Journal.Cosmos = "cosmos", acct },
			"coordination.backend", "cosmos needs journal.backend cosmos"},
		{"coordinator with a postgres journal", func(c *Config) {
			c.Coordination.Backend, c.Coordination.Cosmos = "cosmos", acct
			c.Journal.Backend, c.Journal.Postgres = "postgres", PostgresConfig{Host: "db", User: "loom"}
		}, "coordination.backend", "fencing tokens and the journals they fence must be kept in one store"},
		{"postgres coordinator with a cosmos journal", func(c *Config) {
			c.Journal.Backend, c.Journal.Cosmos = "cosmos", acct
			c.Coordination.Backend, c.Coordination.Postgres = "postgres", PostgresConfig{Host: "db", User: "loom"}
		}, "coordination.backend", "postgres needs journal.backend postgres"},
		{"messaging backend cosmos", func(c *Config) {
			c.Journal.Backend, c.Journal.Cosmos, c.Coordination.Backend, c.Messaging.Backend = "cosmos", acct, "cosmos", "cosmos"
		}, "messaging.backend", "cosmos keeps no message queues"},
		{"http endpoint", func(c *Config) { c.Journal.Cosmos = CosmosConfig{Endpoint: "http://a/", Key: testCosmosKey} },
			"journal.cosmos.endpoint", "must be an https:// URL"},
		{"no key", func(c *Config) { c.Journal.Cosmos = CosmosConfig{Endpoint: acct.Endpoint} }, "journal.cosmos.key", "must be set with endpoint"},
		{"key not base64", func(c *Config) { c.Journal.Cosmos = CosmosConfig{Endpoint: acct.Endpoint, Key: "s3cret!"} },
			"journal.cosmos.key", "must be base64"},
		{"same containers", func(c *Config) { c.Journal.Cosmos = acct; c.Journal.Cosmos.LeaseContainer = "journal" },
			"journal.cosmos.journalContainer", "must differ from leaseContainer"},
		{"ca and insecure", func(c *Config) {
			c.Journal.Cosmos = acct
			c.Journal.Cosmos.CAFile, c.Journal.Cosmos.InsecureSkipVerify = "ca.pem", true
		},
			"journal.cosmos.insecureSkipVerify", "must be false when caFile is set"},
		{"weak consistency", func(c *Config) { c.Coordination.Cosmos = acct; c.Coordination.Cosmos.Consistency = "Session" },
			"coordination.cosmos.consistency", "must be one of Strong, BoundedStaleness"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate passed")
			}
			found := false
			for _, p := range err.(*ValidationError).Problems {
				if p.Key == tc.key && strings.Contains(p.Message, tc.want) {
					found = true
				}
				if strings.Contains(p.String(), "s3cret") || strings.Contains(p.String(), testCosmosKey[:16]) {
					t.Errorf("a problem quotes the key: %s", p)
				}
			}
			if !found {
				t.Fatalf("problems = %v; want %s: ...%s...", err, tc.key, tc.want)
			}
		})
	}
	ok := Default()
	ok.Journal.Backend, ok.Journal.Cosmos, ok.Coordination.Backend = "cosmos", acct, "raft"
	if err := ok.Validate(); err != nil {
		t.Fatalf("cosmos journal with raft coordination: %v; want allowed (raft's tokens strictly increase per actor)", err)
	}
	ok.Coordination.Backend = "cosmos"
	if err := ok.Validate(); err != nil {
		t.Fatalf("cosmos journal and coordinator: %v", err)
	}
}

// TestCosmosProblemLine: a problem in a file names its file and line.
func TestCosmosProblemLine(t *testing.T) {
	_, err := Parse([]byte("stateAdapter:\n  type: cosmos\n  endpoint: http://x/\n  key: abc=\ncoordinationAdapter:\n  type: cosmos\n"), "loom.config.yaml")
	if err == nil || !strings.Contains(err.Error(), "loom.config.yaml:3: stateAdapter.endpoint") {
		t.Fatalf("Parse = %v; want a problem at loom.config.yaml:3 naming stateAdapter.endpoint", err)
	}
}
