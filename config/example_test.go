package config_test

import (
	"fmt"

	"github.com/loom-mesh/loom/config"
)

func ExampleParse() {
	file := []byte(`
node:
  id: node-2
  httpPort: 0                  # pick a free port
actorPools:
  default:
    idleTimeout: 10m
  types:
    counter:
      maxSize: 1000            # idleTimeout and evictionPolicy inherited
tracing:
  otlpHeaders:
    authorization: Bearer ${LOOM_EXAMPLE_TOKEN:-dev}
`)
	c, err := config.Parse(file, "loom.config.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Node.ID, c.Node.HTTPPort, c.Node.Bind)
	fmt.Printf("%+v\n", c.ActorPools.For("counter"))
	fmt.Printf("%+v\n", c.ActorPools.For("other"))
	fmt.Println(c.JournalPath())
	fmt.Println(c.Redacted().Tracing.OTLPHeaders["authorization"])
	// Output:
	// node-2 0 127.0.0.1
	// {MaxSize:1000 IdleTimeout:10m0s EvictionPolicy:lru IdempotencyKeys:1000 IdempotencyRetention:10m0s MaxQueue:1000 MaxActivating:0 RateLimit:0 RateBurst:0 Reentrant:false}
	// {MaxSize:10000 IdleTimeout:10m0s EvictionPolicy:lru IdempotencyKeys:1000 IdempotencyRetention:10m0s MaxQueue:1000 MaxActivating:0 RateLimit:0 RateBurst:0 Reentrant:false}
	// loom-data/journal.db
	// [redacted]
}

func ExampleParse_problems() {
	file := []byte(`node:
  id: node-2
  httpPort: 70000
actorPools:
  default:
    maxsize: 10
logging:
  level: loud
`)
	_, err := config.Parse(file, "loom.config.yaml")
	fmt.Println(err)
	// Output:
	// loom.config.yaml:3: node.httpPort: must be between 0 and 65535 (got 70000)
	// loom.config.yaml:6: actorPools.default.maxsize: unknown key (did you mean "maxSize"?)
	// loom.config.yaml:8: logging.level: must be one of debug, info, warn, error (got "loud")
}
