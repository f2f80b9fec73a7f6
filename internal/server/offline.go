package server

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// Data is the data directory of a stopped relay, opened for the operator
// commands (heed suppress, heed backup) without serving anything.
type Data struct {
	DB           *store.DB
	Tenants      *tenant.Registry
	Suppressions *suppression.Service
	ConsoleUsers *consoleusers.Service
}

// OpenData opens cfg's data directory. The server key must be there and be
// the one the database was written with: a command never creates keys.
// A serving relay holds the database; OpenData then fails at once saying
// so (use the admin API instead).
func OpenData(cfg *config.Config) (*Data, error) {
	path := filepath.Join(cfg.DataDir, "heed.db")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no database at %s: %w", path, err)
	}
	db, err := store.Open(path, store.Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(filepath.Join(cfg.DataDir, "keys", "server.key"))
	if err == nil && len(key) < 32 {
		err = errors.New("server key shorter than 32 bytes")
	}
	if err == nil {
		err = db.BindSecret("server key", fingerprint(key))
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server key of %s: %w", cfg.DataDir, err)
	}
	hashKey, err := suppressionHashKey(key)
	if err != nil {
		db.Close()
		return nil, err
	}
	d := &Data{DB: db, Tenants: tenant.NewRegistry(boltdb.Tenants(db)),
		Suppressions: boltdb.Suppressions(db, hashKey, time.Now)}
	if err := d.Tenants.SetSealKey(key); err != nil {
		db.Close()
		return nil, err
	}
	if d.ConsoleUsers, err = consoleUsers(db, key); err != nil {
		db.Close()
		return nil, err
	}
	return d, nil
}

// suppressionHashKey derives the key of the suppression list's address
// hashes from the server key.
func suppressionHashKey(serverKey []byte) ([]byte, error) {
	return hkdf.Key(sha256.New, serverKey, nil, "heed suppression address hash v1", 32)
}

// Close closes the database.
func (d *Data) Close() error { return d.DB.Close() }
