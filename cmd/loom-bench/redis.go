package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// redisXAdd is the redis-xadd baseline: raw go-redis XADDs to a Redis
// server (--redis), one command per call and no pipelining, each caller
// appending to its own stream with a connection of its own from the pool.
// It is what a durable write costs on Redis alone, without Loom: with the
// server's appendonly yes and appendfsync always, the durability Loom's
// Redis adapters rely on, Redis answers once the write is in its
// append-only file, fsynced with whatever other writes arrived meanwhile.
// The record, one field of about 100 bytes, is the size of a journal
// entry. The streams, under a prefix of their own for each run
// (loom-bench:xadd:<run>:<caller>), are deleted after every measurement,
// so that the server's memory does not grow round after round.
type redisXAdd struct {
	c      *goredis.Client
	keys   []string // one stream per caller
	values []any    // the record: field "e", a 100-byte value
}

// redisPasswordEnv is read for the server's password when
// --redis-password is not given.
const redisPasswordEnv = "REDIS_PASSWORD"

// startRedisXAdd connects to addr (host:port) with a pool of a connection
// per caller and checks that the server answers.
func startRedisXAdd(ctx context.Context, addr, password string, callers int) (*redisXAdd, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, Password: password, PoolSize: callers})
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	prefix := "loom-bench:xadd:" + rand.Text() + ":"
	x := &redisXAdd{c: c, keys: make([]string, callers)}
	for g := range x.keys {
		x.keys[g] = prefix + strconv.Itoa(g)
	}
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	x.values = []any{"e", value}
	return x, nil
}

// add appends one record to caller g's stream.
func (x *redisXAdd) add(ctx context.Context, g int) error {
	return x.c.XAdd(ctx, &goredis.XAddArgs{Stream: x.keys[g], ID: "*", Values: x.values}).Err()
}

// measure runs the baseline for d and then deletes the streams.
func (x *redisXAdd) measure(ctx context.Context, d time.Duration) (result, error) {
	r := load("redis-xadd", len(x.keys), d, func(g int, _ int64) error { return x.add(ctx, g) })
	return r, x.clean(ctx)
}

// clean deletes the callers' streams.
func (x *redisXAdd) clean(ctx context.Context) error {
	if err := x.c.Del(ctx, x.keys...).Err(); err != nil {
		return fmt.Errorf("deleting the streams: %w", err)
	}
	return nil
}

// close deletes the streams (whatever a measurement left) and closes the
// client.
func (x *redisXAdd) close(ctx context.Context) {
	if err := errors.Join(x.clean(ctx), x.c.Close()); err != nil {
		fmt.Fprintf(os.Stderr, "loom-bench: closing the redis baseline: %v\n", err)
	}
}
