package bench

import (
	"fmt"
	"testing"
)

// BenchmarkCluster is issue 17's: one, two and three Heed nodes on one
// PostgreSQL database, the same load (ReusedConn's shape) spread over
// them: the clients take turns over the nodes' submission listeners and
// every node delivers what it claims to the one sink. The nodes run in
// this process (each with its own state, listeners and data directory),
// so the process CPU per message is the whole cluster's; the PostgreSQL
// figures are the server's. The machine has 2 cores: more nodes are not
// faster here; what the figures show is the cost per message on each
// side as nodes are added.
func BenchmarkCluster(b *testing.B) {
	for n := 1; n <= 3; n++ {
		sc := scenario{name: fmt.Sprintf("Nodes%d", n), base: "ReusedConn", postgres: true, nodes: n,
			messages: 6000, domainConcurrency: benchDomainConcurrency}
		b.Run(sc.name, func(b *testing.B) { runEndToEnd(b, sc) })
	}
}
