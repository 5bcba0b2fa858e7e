package placement_test

import (
	"fmt"

	"github.com/loom-mesh/loom/placement"
)

func ExampleTable() {
	tab, err := placement.NewTable(placement.DefaultConfig())
	if err != nil {
		panic(err)
	}
	// On every membership event, hand the table the alive node ids.
	tab.Update([]string{"node-b", "node-a", "node-c"})

	owner, ok := tab.Locate("counter/c1")
	fmt.Println(ok, owner != "", tab.Version(), tab.Ring().Members())
	// Output: true true 1 [node-a node-b node-c]
}
