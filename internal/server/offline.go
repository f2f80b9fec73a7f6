package server

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// Data is the data directory of a stopped relay, opened for the operator
// commands (heed suppress, heed backup) without serving anything.
type Data struct {
	// DB is the bbolt database; nil on PostgreSQL, which has no backup
	// of Heed's own (pg_dump and base backups instead).
	DB           *store.DB
	Tenants      *tenant.Registry
	Suppressions *suppression.Service
	ConsoleUsers *consoleusers.Service
	close        func() error
}

// OpenData opens cfg's data directory. The server key must be there and be
// the one the database was written with: a command never creates keys.
// A serving relay holds the database; OpenData then fails at once saying
// so (use the admin API instead).
//
// On PostgreSQL it opens the database instead, which may be in use by
// serving nodes, and refuses one whose schema is not this binary's (run
// heed migrate) or that has no server secrets yet.
func OpenData(cfg *config.Config) (*Data, error) {
	if cfg.Storage.Driver == config.DriverPostgres {
		return openPostgresData(cfg)
	}
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
	d := &Data{DB: db, close: db.Close, Tenants: tenant.NewRegistry(boltdb.Tenants(db)),
		Suppressions: boltdb.Suppressions(db, hashKey, time.Now)}
	if err := d.Tenants.SetSealKey(key); err != nil {
		db.Close()
		return nil, err
	}
	if d.ConsoleUsers, err = consoleUsers(key, func(seal []byte) (*consoleusers.Service, error) {
		return boltdb.ConsoleUsers(db, seal, time.Now)
	}); err != nil {
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
func (d *Data) Close() error { return d.close() }

// openPostgresData is OpenData on PostgreSQL.
func openPostgresData(cfg *config.Config) (*Data, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	db, err := openPostgresDB(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Data, error) {
		db.Close()
		return nil, err
	}
	found, known, err := db.SchemaVersion(ctx)
	if err != nil {
		return fail(err)
	}
	if found != known {
		return fail(fmt.Errorf("the database's schema is at version %d, this Heed's is %d: run heed migrate -config FILE (with the Heed that matches the database)", found, known))
	}
	key, _, err := postgresSecrets(ctx, db, false)
	if err != nil {
		return fail(err)
	}
	hashKey, err := suppressionHashKey(key)
	if err != nil {
		return fail(err)
	}
	b := db.Backend()
	d := &Data{close: func() error { db.Close(); return nil },
		Tenants:      tenant.NewRegistry(postgres.Tenants(b)),
		Suppressions: postgres.Suppressions(b, hashKey, time.Now)}
	if err := d.Tenants.SetSealKey(key); err != nil {
		return fail(err)
	}
	if d.ConsoleUsers, err = consoleUsers(key, func(seal []byte) (*consoleusers.Service, error) {
		return postgres.ConsoleUsers(b, seal, time.Now)
	}); err != nil {
		return fail(err)
	}
	return d, nil
}

// Migrate applies the PostgreSQL migrations cfg's database lacks and
// returns the schema version before and after; on bbolt there is nothing
// to migrate (its layout is upgraded when heed serve opens it), and it
// returns ok false.
func Migrate(ctx context.Context, cfg *config.Config, log *slog.Logger) (before, after int, ok bool, err error) {
	if cfg.Storage.Driver != config.DriverPostgres {
		return 0, 0, false, nil
	}
	db, err := postgres.Open(ctx, postgres.Config{DSN: cfg.Storage.Postgres.DSN, MaxConns: int32(cfg.Storage.Postgres.MaxConns), Logger: log})
	if err != nil {
		return 0, 0, true, err
	}
	defer db.Close()
	if before, _, err = db.SchemaVersion(ctx); err != nil {
		return 0, 0, true, err
	}
	if err := db.Migrate(ctx); err != nil {
		return before, before, true, err
	}
	after, _, err = db.SchemaVersion(ctx)
	return before, after, true, err
}

// CheckDatabase connects to cfg's PostgreSQL database and returns the
// schema version it is at and the one this binary knows; on bbolt it
// returns ok false (the file is opened by heed serve).
func CheckDatabase(ctx context.Context, cfg *config.Config) (found, known int, ok bool, err error) {
	if cfg.Storage.Driver != config.DriverPostgres {
		return 0, 0, false, nil
	}
	db, err := openPostgresDB(ctx, cfg, nil)
	if err != nil {
		return 0, 0, true, err
	}
	defer db.Close()
	found, known, err = db.SchemaVersion(ctx)
	return found, known, true, err
}
