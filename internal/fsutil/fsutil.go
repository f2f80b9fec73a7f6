// Package fsutil writes small files durably: the whole new content or the
// old one survives a crash, never a mix, and a rename is not lost.
//
// The order is the one POSIX file systems need (and ext4's data=ordered
// does not spare): write a temporary file in the same directory, fsync it,
// rename it over the name, then fsync the directory that holds the name.
package fsutil

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to dir/name through a temporary file that is
// fsynced and renamed into place, created with mode 0600. It does not sync
// the directory, so that a caller writing several files syncs it once
// (SyncDir); WriteFileSync does both.
func WriteFile(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*") // 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// WriteFileSync is WriteFile followed by SyncDir: on return the file is
// on disk under its name.
func WriteFileSync(path string, data []byte) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := WriteFile(dir, name, data); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making the creations, renames and removals
// of names in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
