//go:build unix

package server

import (
	"os"
	"syscall"
)

// lockNodeID takes an exclusive lock on the node-id file without
// waiting; false when another process holds it (or locks are not
// supported there). The lock goes with the process, however it ends.
func lockNodeID(f *os.File) bool {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
