package postgres

import (
	"testing"

	"github.com/loom-mesh/loom/internal/pgtest"
)

// TestMigrateUpgrades: a schema an older Loom made (each version in
// turn) is brought to SchemaVersion, keeping what it holds.
func TestMigrateUpgrades(t *testing.T) {
	s := pgtest.Shared(t)
	db := s.CreateDatabase(t)
	ctx := t.Context()
	p, err := NewPool(Options{Host: s.Host, Port: s.Port, User: s.User, Database: db}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	admin := s.Conn(t, db)
	for v := 1; v < SchemaVersion; v++ {
		schema := "up" + string(rune('0'+v))
		if from, err := migrateTo(ctx, p, schema, v); err != nil || from != 0 {
			t.Fatalf("to version %d: from %d, %v", v, from, err)
		}
		if _, err := admin.Exec(ctx, Expand("INSERT INTO {s}.journal_heads (actor, tail, token) VALUES ('a', 1, 7)", schema)); err != nil {
			t.Fatal(err)
		}
		if from, err := Migrate(ctx, p, schema); err != nil || from != v {
			t.Fatalf("Migrate of a version %d schema: from %d, %v", v, from, err)
		}
		var version, token int
		if err := admin.QueryRow(ctx, Expand("SELECT max(version), (SELECT token FROM {s}.journal_heads WHERE actor = 'a') FROM {s}.schema_version", schema)).Scan(&version, &token); err != nil || version != SchemaVersion || token != 7 {
			t.Fatalf("after the upgrade from %d: version %d, token %d, %v", v, version, token, err)
		}
	}
}
