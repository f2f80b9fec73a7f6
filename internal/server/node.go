package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// nodeIDFile, under data_dir, keeps this node's name among the nodes
// that share a PostgreSQL database (docs/postgresql.md, "Delivery
// leases").
const nodeIDFile = "node-id"

// nodeIdentity returns this node's name in the schedule's leases
// (queue.Records.Leases) and a function that lets it go at close.
//
// The name is kept in data_dir/node-id, so that a node restarted after a
// crash knows the leases of its previous life and ends them at once
// instead of waiting for them to run out. The file is locked while the
// node runs (lockNodeID), so no two live processes share a name: a
// second process on the same data_dir, or a system without the lock,
// gets a fresh name of its own and leaves old leases to run out.
//
// A fresh name is node (the config key node, the metrics' label, the host
// name by default) and a random part, so that a lease says which node
// holds it and two processes of one node's name never share a lease.
func nodeIdentity(dataDir, node string) (name string, release func(), err error) {
	fresh := func() string {
		var b [8]byte
		rand.Read(b[:])
		return node + "/" + hex.EncodeToString(b[:])
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", nil, err
	}
	f, err := os.OpenFile(filepath.Join(dataDir, nodeIDFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", nil, err
	}
	if !lockNodeID(f) {
		f.Close()
		return fresh(), func() {}, nil
	}
	release = func() { f.Close() } // closing the file lets the lock go
	raw, err := os.ReadFile(f.Name())
	if err != nil {
		release()
		return "", nil, err
	}
	if name = strings.TrimSpace(string(raw)); name != "" {
		return name, release, nil
	}
	name = fresh()
	if _, err := f.WriteString(name + "\n"); err != nil {
		release()
		return "", nil, err
	}
	if err := f.Sync(); err != nil {
		release()
		return "", nil, errors.Join(errors.New("writing data_dir/node-id"), err)
	}
	return name, release, nil
}
