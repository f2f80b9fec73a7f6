package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// HealthCheck is a round trip to the server on a connection of its own,
// for a node's health probe (package health). Outside the pool so that
// a pool busy with delivery (every connection in use) is not taken for a
// database that is down, and so that the check measures the server, not
// the wait for a free connection.
type HealthCheck struct {
	cfg *pgx.ConnConfig

	mu   sync.Mutex // one check at a time
	conn *pgx.Conn  // nil until the first check, and after a failed one
}

// HealthCheck returns a check on db's server; the caller closes it.
func (db *DB) HealthCheck() *HealthCheck {
	return &HealthCheck{cfg: db.pool.Config().ConnConfig.Copy()}
}

// Check connects if it has no connection and sends an empty query. Any
// failure drops the connection, so that the next check starts afresh;
// a lost server is ErrUnavailable.
func (h *HealthCheck) Check(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn == nil {
		c, err := pgx.ConnectConfig(ctx, h.cfg)
		if err != nil {
			return fmt.Errorf("postgres: health check: %w: %w", ErrUnavailable, err)
		}
		h.conn = c
	}
	if err := h.conn.Ping(ctx); err != nil {
		h.drop()
		return fmt.Errorf("postgres: health check: %w", classify(ctx, err))
	}
	return nil
}

// Close closes the check's connection.
func (h *HealthCheck) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		h.drop()
	}
}

// drop closes the connection, waiting a second at most to say goodbye
// to a server that may not be there.
func (h *HealthCheck) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = h.conn.Close(ctx)
	h.conn = nil
}
