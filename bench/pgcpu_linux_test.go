//go:build linux

package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on Linux's
// interface whatever the kernel's own tick).
const userHZ = 100

// serverCPU is the CPU time the PostgreSQL server with postmaster pid has
// used: the postmaster's own and that of the backends it has reaped
// (cutime, cstime), plus its children still running (the WAL writer, the
// checkpointer, sessions not yet ended). 0 when /proc cannot tell.
func serverCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	ticks := statTicks(pid, true)
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := statFields(string(b))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			ticks += statTicks(n, false)
		}
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// statFields are the fields of /proc/PID/stat after the command name
// (which may hold spaces): state, ppid, … (proc(5) fields 3 onwards).
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// statTicks is utime + stime of pid, and with reaped, its reaped
// children's cutime + cstime (proc(5) fields 14 to 17).
func statTicks(pid int, reaped bool) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := statFields(string(b))
	if len(f) < 15 {
		return 0
	}
	last := 13 // fields 14, 15 are f[11], f[12]; 16, 17 are f[13], f[14]
	if reaped {
		last = 15
	}
	var t int64
	for _, s := range f[11:last] {
		n, _ := strconv.ParseInt(s, 10, 64)
		t += n
	}
	return t
}
