//go:build !unix

package server

import "os"

// lockNodeID cannot lock here: every start gets a fresh node name
// (nodeIdentity), and a restarted node's old leases run out by
// themselves.
func lockNodeID(*os.File) bool { return false }
