package server

import (
	"testing"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/testsink"
)

// TestMain stops the throwaway PostgreSQL the tests on that backend start
// (once per test binary) when the tests end.
func TestMain(m *testing.M) { pgtest.Main(m) }

// backends are the storage backends the end-to-end tests run on.
var backends = []string{config.DriverBbolt, config.DriverPostgres}

// eachBackend runs fn as the subtests …/bbolt and …/postgres.
func eachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) { fn(t, b) })
	}
}

// useBackend points cfg at backend: on postgres, a new database of the
// test binary's cluster, dropped when t ends.
func useBackend(t *testing.T, backend string, cfg *config.Config) {
	t.Helper()
	cfg.Storage.Driver = backend
	if backend == config.DriverPostgres {
		cfg.Storage.Postgres.DSN = pgtest.DSN(t)
		cfg.Storage.Postgres.MaxConns = 8
	}
}

// startRelayOn is startRelayWith on backend.
func startRelayOn(t *testing.T, backend string, sinkOpts testsink.Options, edit func(*config.Config)) *relayEnv {
	t.Helper()
	return startRelayWith(t, sinkOpts, func(c *config.Config) {
		useBackend(t, backend, c)
		if edit != nil {
			edit(c)
		}
	})
}
