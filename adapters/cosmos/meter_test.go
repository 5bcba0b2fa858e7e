package cosmos_test

import (
	"os"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/loom-mesh/loom/adapters/cosmos"
	"github.com/loom-mesh/loom/internal/cosmostest"
)

func TestMain(m *testing.M) { os.Exit(cosmostest.Main(m)) }

// TestOpenAndMeter: Open creates the database and containers (twice is
// fine), and the Meter counts requests by operation, with their charge
// and the expected refusals apart from errors.
func TestOpenAndMeter(t *testing.T) {
	s := cosmostest.Shared(t)
	o := cosmos.Options{Endpoint: s.Endpoint, Key: s.Key, Database: cosmostest.Database(t), InsecureSkipVerify: true}
	m := new(cosmos.Meter)
	a, err := cosmos.Open(t.Context(), o, m)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	again, err := cosmos.Open(t.Context(), o, nil)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	again.Close()
	ctx := t.Context()
	pk := azcosmos.NewPartitionKeyString("p")
	if _, err := a.Journals.CreateItem(ctx, pk, []byte(`{"id":"x","pk":"p"}`), nil); err != nil {
		t.Fatal(err)
	}
	_, err = a.Journals.CreateItem(ctx, pk, []byte(`{"id":"x","pk":"p"}`), nil)
	if cosmos.Status(err) != cosmos.StatusConflict || !cosmos.NotApplied(err) {
		t.Fatalf("second create: %v; want a 409, not applied", err)
	}
	if _, err := a.Journals.ReadItem(ctx, pk, "missing", nil); cosmos.Status(err) != cosmos.StatusNotFound {
		t.Fatalf("read of a missing document: %v; want 404", err)
	}
	if _, err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	st := m.Snapshot()
	byOp := map[string]cosmos.OpStats{}
	for _, op := range st.Ops {
		byOp[op.Op] = op
	}
	if byOp[cosmos.OpCreate].RoundTrips != 2 || byOp[cosmos.OpRead].RoundTrips != 1 {
		t.Fatalf("ops = %+v; want 2 creates and 1 read", st.Ops)
	}
	if st.Conflicts != 1 || st.NotFound != 1 || st.Errors() != 0 {
		t.Fatalf("conflicts %d, not found %d, errors %d; want 1, 1, 0", st.Conflicts, st.NotFound, st.Errors())
	}
	if st.RequestCharge <= 0 || st.Answered != st.RoundTrips || st.P50 <= 0 {
		t.Fatalf("stats = %+v; want charges and latencies", st)
	}
}

// TestNotAppliedUnreachable: a refused connection is not applied.
func TestNotAppliedUnreachable(t *testing.T) {
	o := cosmos.Options{Endpoint: "https://127.0.0.1:1/", Key: cosmostest.Key, InsecureSkipVerify: true}
	_, err := cosmos.Open(t.Context(), o, nil)
	if err == nil || !cosmos.NotApplied(err) {
		t.Fatalf("Open of a closed port: %v; want an error NotApplied reports", err)
	}
}
