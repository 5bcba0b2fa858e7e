package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/azcosmos"

	"github.com/loom-mesh/loom/adapters/cosmos"
)

// cosmosReplace is the cosmos-replace baseline: raw azcosmos replaces of
// a document on a Cosmos DB account (--cosmos), one request per call,
// each caller with a document of its own, each replace conditional
// (If-Match on the etag the previous one returned), as the commit of a
// journal append is; a call answered 412 is an error. It is what one
// conditional write costs on Cosmos DB alone, without Loom; an append of
// Loom's Cosmos journal makes three requests (a read of the head, a
// create of the entry, the head's replace). The record is about 100
// bytes, the size of a journal entry. Its documents live in a database
// of the run's own, loom-bench-<run>, deleted at the end.
type cosmosReplace struct {
	acct    *cosmos.Account
	db      string
	callers int
	value   string
	mu      sync.Mutex
	etags   []azcore.ETag // per caller: the etag of its document
}

// startCosmosReplace opens the account at endpoint and makes a document
// per caller.
func startCosmosReplace(ctx context.Context, endpoint, key string, insecure bool, callers int) (*cosmosReplace, error) {
	db := "loom-bench-" + strings.ToLower(rand.Text()[:12])
	acct, err := cosmos.Open(ctx, cosmos.Options{Endpoint: endpoint, Key: key, Database: db, InsecureSkipVerify: insecure}, nil)
	if err != nil {
		return nil, fmt.Errorf("cosmos %s: %w", endpoint, err)
	}
	x := &cosmosReplace{acct: acct, db: db, callers: callers, value: strings.Repeat("abcdefghij", 10), etags: make([]azcore.ETag, callers)}
	for g := range callers {
		resp, err := acct.Journals.CreateItem(ctx, x.pk(g), x.body(g, 0), nil)
		if err != nil {
			x.close(ctx)
			return nil, fmt.Errorf("cosmos %s: creating the documents: %w", endpoint, err)
		}
		x.etags[g] = resp.ETag
	}
	return x, nil
}

func (x *cosmosReplace) id(g int) string { return fmt.Sprintf("bench-%d", g) }
func (x *cosmosReplace) pk(g int) azcosmos.PartitionKey {
	return azcosmos.NewPartitionKeyString(x.id(g))
}
func (x *cosmosReplace) body(g int, seq int64) []byte {
	b, _ := json.Marshal(map[string]any{"id": x.id(g), "pk": x.id(g), "seq": fmt.Sprint(seq), "rec": x.value})
	return b
}

// replace writes record seq into caller g's document, If-Match on its
// last etag.
func (x *cosmosReplace) replace(ctx context.Context, g int, seq int64) error {
	x.mu.Lock()
	etag := x.etags[g]
	x.mu.Unlock()
	resp, err := x.acct.Journals.ReplaceItem(ctx, x.pk(g), x.id(g), x.body(g, seq), &azcosmos.ItemOptions{IfMatchEtag: &etag})
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.etags[g] = resp.ETag
	x.mu.Unlock()
	return nil
}

// measure runs the baseline for d.
func (x *cosmosReplace) measure(ctx context.Context, d time.Duration) (result, error) {
	return load("cosmos-replace", x.callers, d, func(g int, i int64) error { return x.replace(ctx, g, i+1) }), nil
}

// close deletes the run's database.
func (x *cosmosReplace) close(ctx context.Context) {
	if db, err := x.acct.Client.NewDatabase(x.db); err == nil {
		if _, err := db.Delete(ctx, nil); err != nil {
			fmt.Fprintf(os.Stderr, "loom-bench: closing the cosmos baseline: deleting database %s: %v\n", x.db, err)
		}
	}
	x.acct.Close()
}
