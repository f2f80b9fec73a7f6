package server

import (
	"os"
	"runtime"
)

// Procs is the number of Ps (GOMAXPROCS) `heed serve` runs with, and a
// note saying why.
//
// Heed's work is of two kinds on the same Ps: latency-bound SMTP sessions
// and group commits (each message waits for a few network round trips and
// an fsync), and CPU-bound delivery (RSA signing is about 1 ms a copy).
// With one P per core, a session goroutine woken by the network waits in
// the run queue behind every runnable signer, and the 250 it owes comes
// later; with its clients waiting on those 250s, the whole relay slows
// down while a core idles in fsync (docs/benchmarks.md measures it: about
// 25% more signed mail per second with two Ps per core). So when nothing
// else decided, Heed runs two Ps per core and lets the kernel's scheduler,
// which favours threads that just woke, interleave the two kinds.
//
// It leaves GOMAXPROCS alone when the operator set the GOMAXPROCS
// environment variable, or when the runtime already picked fewer Ps than
// the machine has cores: that is a container CPU limit, and running more
// threads than the quota allows would get the process throttled.
func Procs() (int, string) {
	current := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" {
		return current, "set by the GOMAXPROCS environment variable"
	}
	if current < runtime.NumCPU() {
		return current, "the container's CPU limit"
	}
	return 2 * runtime.NumCPU(), "two per core: sessions and fsyncs interleave with signing"
}
