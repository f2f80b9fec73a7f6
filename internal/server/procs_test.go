package server

import (
	"runtime"
	"testing"
)

// TestProcs: two Ps per core unless the operator or a container limit
// chose the number.
func TestProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	n, _ := Procs()
	if runtime.GOMAXPROCS(0) >= runtime.NumCPU() && n != 2*runtime.NumCPU() {
		t.Errorf("Procs() = %d on %d CPUs, want %d", n, runtime.NumCPU(), 2*runtime.NumCPU())
	}
	t.Setenv("GOMAXPROCS", "3")
	if n, why := Procs(); n != runtime.GOMAXPROCS(0) || why == "" {
		t.Errorf("with GOMAXPROCS set: Procs() = %d (%s), want the runtime's %d", n, why, runtime.GOMAXPROCS(0))
	}
}
