package placement

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("placement: invalid config")

// Config is the shape of the ring. Every node of a cluster must use the same
// Config, or they will disagree about placement.
type Config struct {
	// PartitionCount is the number of partitions keys are hashed into;
	// partitions, not keys, are assigned to members. More partitions give a
	// finer, more even split and cost one string pointer each. It must be
	// well above the number of members (a ring with more members than
	// partitions leaves some members idle, see NewRing), and changing it
	// moves nearly every key. Default 271: a prime (so the modulo spreads
	// the hash well), the library's default, ample for clusters of tens of
	// nodes.
	PartitionCount int

	// ReplicationFactor is how many virtual nodes each member gets on the
	// hash circle. More virtual nodes smooth the split before the load
	// bound is applied, at the cost of a longer build (members x factor
	// hashes and a sort). At least 2. Default 20, the library's default.
	ReplicationFactor int

	// Load is the bounded-load factor: no member owns more than
	// ceil(floor(PartitionCount/members) * Load) partitions; a partition
	// whose first choice is full goes to the next member clockwise. 1.25
	// (the default, from "Consistent Hashing with Bounded Loads") caps any
	// member at 25% above the average while moving few extra keys when
	// membership changes. At least 1.
	Load float64
}

// DefaultConfig returns the configuration every Loom node uses unless told
// otherwise: 271 partitions, 20 virtual nodes per member, load bound 1.25.
func DefaultConfig() Config {
	return Config{
		PartitionCount:    271,
		ReplicationFactor: 20,
		Load:              1.25,
	}
}

// maxPartitions bounds PartitionCount so a typo cannot allocate gigabytes.
const maxPartitions = 1 << 20

// Validate reports every problem with c, each wrapped with ErrInvalidConfig,
// joined with errors.Join. It never changes c.
func (c Config) Validate() error {
	var errs []error
	if c.PartitionCount < 1 || c.PartitionCount > maxPartitions {
		errs = append(errs, fmt.Errorf("%w: PartitionCount is %d, want 1..%d", ErrInvalidConfig, c.PartitionCount, maxPartitions))
	}
	if c.ReplicationFactor < 2 {
		errs = append(errs, fmt.Errorf("%w: ReplicationFactor is %d, want at least 2", ErrInvalidConfig, c.ReplicationFactor))
	}
	if math.IsNaN(c.Load) || math.IsInf(c.Load, 0) || c.Load < 1 {
		errs = append(errs, fmt.Errorf("%w: Load is %v, want a finite number >= 1", ErrInvalidConfig, c.Load))
	}
	return errors.Join(errs...)
}
