package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/loom-mesh/loom/adapters/redis"
	"github.com/loom-mesh/loom/adapters/redis/redisjournal"
	"github.com/loom-mesh/loom/adapters/redis/redislock"
)

// A Redis scenario (Scenario.Redis) runs the nodes with coordination
// (sessions, locks, fencing tokens), journals and message queues on one
// redis-server: no Raft store, so no Raft fault applies (no leader to kill,
// pause or cut off; no Raft log to slow or fill), and the nemesis faults
// the server instead.

// RedisServer is the redis-server of a Redis scenario: the tests pass an
// internal/redistest.Server (durable: appendonly yes, appendfsync
// always). Kill and Restart are called from the goroutine that runs the
// scenario.
type RedisServer interface {
	// Kill kills the server with SIGKILL and waits for it to exit.
	Kill()
	// Restart starts it again on the same address and data directory,
	// from its append-only file.
	Restart()
}

// Faults of the redis-server.
const (
	// RedisKill kills -9 the redis-server and restarts it (on its
	// append-only file, fsynced on every write) after KillDown. Nothing
	// can be served meanwhile: the downtime is the fault's designed
	// outage.
	RedisKill FaultKind = "redis-kill"
	// RedisSlow makes the redis-server slow to write for Hold: it pauses
	// every client's writes (CLIENT PAUSE WRITE, which holds scripts too:
	// appends, renewals, lock grants) for 200 ms to a third of the session
	// TTL at a time, with 50-300 ms between pauses, while reads go on.
	RedisSlow FaultKind = "redis-slow"
)

// RedisFaults are the faults a Redis scenario may draw: the faults of the
// nodes' processes, the partitions that need no Raft leader (gossip and
// gRPC are cut; the nodes keep reaching Redis), and the server's own.
var RedisFaults = []FaultKind{KillRandom, KillOwner, PauseOwner,
	PartitionMinority, PartitionSplit, PartitionOneWay, PartitionBridge, RedisKill, RedisSlow}

func init() {
	hookFaults[RedisKill] = (*Nemesis).redisKill
	hookFaults[RedisSlow] = (*Nemesis).redisSlow
}

func (n *Nemesis) redisKill(ctx context.Context) FaultEvent {
	if n.redis == nil {
		return n.failed(fmt.Errorf("no redis-server to kill (not a Redis scenario)"))
	}
	down := n.between(n.opts.KillDown).Round(time.Millisecond)
	ev := FaultEvent{Kind: RedisKill, Node: "redis-server", Hold: down.String(),
		Detail: "kill -9 of redis-server (appendfsync always), restarted on its append-only file"}
	n.logf("chaos: +%6.2fs %s for %v", n.rec.Since().Seconds(), ev.Detail, down)
	ev.Start = n.rec.Now()
	n.redis.Kill()
	// Down for the schedule's time even if ctx ended: the cluster must be
	// whole again.
	sleep(ctx, down)
	n.redis.Restart()
	ev.Heal = n.rec.Now()
	// No node can renew, lock or append while the server is down.
	ev.Outage = Dur(ev.Heal - ev.Start)
	return n.waitNodes(ctx, ev)
}

func (n *Nemesis) redisSlow(ctx context.Context) FaultEvent {
	if n.redisAddr == "" {
		return n.failed(fmt.Errorf("no redis-server to slow down (not a Redis scenario)"))
	}
	hold := n.between(n.opts.Hold).Round(time.Millisecond)
	longest := max(n.opts.SessionTTL/3, 300*time.Millisecond)
	ev := FaultEvent{Kind: RedisSlow, Node: "redis-server", Hold: hold.String(),
		Detail: fmt.Sprintf("redis-server slow: writes paused (CLIENT PAUSE WRITE) 200ms-%v at a time, 50-300ms apart", longest)}
	n.logf("chaos: +%6.2fs %s for %v", n.rec.Since().Seconds(), ev.Detail, hold)
	c := goredis.NewClient(&goredis.Options{Addr: n.redisAddr, MaxRetries: -1})
	defer c.Close()
	ev.Start = n.rec.Now()
	end := time.Now().Add(hold)
	var pauses int
	var paused time.Duration
	for time.Now().Before(end) && ctx.Err() == nil {
		p := n.between([2]time.Duration{200 * time.Millisecond, longest}).Round(time.Millisecond)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.Do(pctx, "CLIENT", "PAUSE", p.Milliseconds(), "WRITE").Err()
		cancel()
		if err != nil {
			ev.Err = "CLIENT PAUSE: " + err.Error()
			break
		}
		pauses++
		paused += p
		sleep(ctx, p+n.between([2]time.Duration{50 * time.Millisecond, 300 * time.Millisecond}))
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	if err := c.Do(uctx, "CLIENT", "UNPAUSE").Err(); err != nil && ev.Err == "" {
		ev.Err = "CLIENT UNPAUSE: " + err.Error()
	}
	cancel()
	ev.Heal = n.rec.Now()
	ev.Notes = append(ev.Notes, fmt.Sprintf("%d pauses, %v of writes paused in all", pauses, paused))
	return n.waitNodes(ctx, ev)
}

// waitNodes waits for every node's health, then for the cluster's
// convergence (converged stamps Ready).
func (n *Nemesis) waitNodes(ctx context.Context, ev FaultEvent) FaultEvent {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.opts.ReadyTimeout)
	for _, x := range n.cluster.Nodes {
		if err := x.WaitHealthy(rctx, n.hc); err != nil && ev.Err == "" {
			ev.Err = err.Error()
		}
	}
	cancel()
	return n.converged(ctx, ev)
}

// redisDumpNode is the Node of a dump read straight from the redis-server.
const redisDumpNode = "redis-server"

// DumpRedis reads every actor's journal (tail, snapshot position, entries)
// and lock straight from the redis-server at addr under prefix, with
// redisjournal and redislock as the nodes use them, but in the test's
// process: the journal audit's own reading of what the store holds, beside
// what each node's admin API says it holds.
func DumpRedis(ctx context.Context, addr, prefix string, actors []Actor) (map[string]journalDump, error) {
	ro := redis.Options{Addr: addr, KeyPrefix: prefix}
	jo := redisjournal.DefaultOptions()
	jo.Redis, jo.Pipelines = ro, 1
	j, err := redisjournal.Open(ctx, jo)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	co, err := redislock.New(redislock.Options{Redis: ro})
	if err != nil {
		return nil, err
	}
	defer co.Close()
	out := map[string]journalDump{}
	var errs []string
	for _, a := range actors {
		key := a.Key()
		d := journalDump{Node: redisDumpNode, Actor: key}
		err := func() error {
			tail, err := j.Tail(ctx, key)
			if err != nil {
				return err
			}
			d.Tail.Seq, d.Tail.Token = tail.Seq, tail.Token
			from := uint64(1)
			snap, ok, err := j.LoadSnapshot(ctx, key)
			if err != nil {
				return err
			}
			if ok {
				d.Snapshot = &struct {
					Seq   uint64 `json:"seq"`
					Token uint64 `json:"token"`
				}{snap.Seq, snap.Token}
				from = snap.Seq + 1
			}
			entries, err := j.Read(ctx, key, from)
			if err != nil {
				return err
			}
			for _, e := range entries {
				d.Entries = append(d.Entries, dumpEntry{Seq: e.Seq, Kind: e.Kind.String(), Method: e.Method, Token: e.Token,
					CorrelationID: e.CorrelationID, IdempotencyKey: e.IdempotencyKey})
			}
			info, held, err := co.Holder(ctx, key)
			if err != nil {
				return err
			}
			if held {
				d.Lock = &dumpLock{Session: string(info.Session), Owner: info.Owner, Token: info.Token}
			}
			return nil
		}()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		out[key] = d
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("reading %d journals from redis-server at %s failed, first: %s", len(errs), addr, strings.Join(errs[:1], ""))
	}
	return out, nil
}
