package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"time"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/server"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

// copyBatch bounds the rows of one PostgreSQL transaction of the copy, so
// that a list of millions of suppressions is not one huge transaction;
// copyBodyBytes bounds the message bodies of one.
const (
	copyBatch     = 1000
	copyBodyBytes = 64 << 20
)

// storageCmd: heed storage copy -from CONFIG -to CONFIG
func storageCmd(args []string, stdout, stderr io.Writer) error {
	const use = "storage: heed storage copy -from CONFIG -to CONFIG"
	if len(args) == 0 || args[0] != "copy" {
		return errors.New(use)
	}
	fs := flag.NewFlagSet("storage copy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "configuration of the stopped bbolt relay (its data_dir is read)")
	to := fs.String("to", "", "configuration naming the empty PostgreSQL database (storage.driver: postgres)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *from == "" || *to == "" || fs.NArg() != 0 {
		return errors.New(use)
	}
	src, err := config.Load(*from)
	if err != nil {
		return err
	}
	dst, err := config.Load(*to)
	if err != nil {
		return err
	}
	if src.Storage.Driver != config.DriverBbolt {
		return fmt.Errorf("storage copy: -from %s must be a bbolt configuration (storage.driver: bbolt), not %q", *from, src.Storage.Driver)
	}
	if dst.Storage.Driver != config.DriverPostgres {
		return fmt.Errorf("storage copy: -to %s must be a postgres configuration (storage.driver: postgres), not %q", *to, dst.Storage.Driver)
	}
	return storageCopy(context.Background(), src, dst, stdout, stderr)
}

// storageCopy moves src's stopped bbolt database into dst's empty
// PostgreSQL database, carries the key files the rows are sealed and
// hashed under, and verifies the copy (see docs/postgresql.md).
func storageCopy(ctx context.Context, src, dst *config.Config, stdout, stderr io.Writer) error {
	d, err := server.OpenData(src)
	if errors.Is(err, server.ErrLocked) {
		return fmt.Errorf("storage copy: %w; stop Heed before copying its database", err)
	}
	if err != nil {
		return fmt.Errorf("storage copy: %w", err)
	}
	defer d.Close()
	spool, err := queue.OpenSpool(filepath.Join(src.DataDir, "spool"))
	if err != nil {
		return err
	}

	pg, err := postgres.Open(ctx, postgres.Config{DSN: dst.Storage.Postgres.DSN, MaxConns: int32(dst.Storage.Postgres.MaxConns)})
	if err != nil {
		return fmt.Errorf("storage copy: %w", err)
	}
	defer pg.Close()
	if err := pg.Migrate(ctx); err != nil {
		return fmt.Errorf("storage copy: %w", err)
	}
	if t, err := pg.NonEmptyTable(ctx); err != nil {
		return fmt.Errorf("storage copy: %w", err)
	} else if t != "" {
		return fmt.Errorf("storage copy: the PostgreSQL database is not empty: table %s has rows; copy into a new database (createdb, then heed migrate)", t)
	}
	if n, err := server.CopySecretsToPostgres(ctx, pg, src.DataDir); err != nil {
		return fmt.Errorf("storage copy: the server's keys: %w", err)
	} else {
		fmt.Fprintf(stderr, "copied the server key and %d opt-out token keys into server_secrets\n", n-1)
	}

	c := &copier{ctx: ctx, src: boltdb.New(d.DB), dst: pg.Backend(), spool: spool, show: stderr}
	for _, step := range []func() error{c.tenants, c.suppressions, c.histories, c.events, c.audit, c.webhooks, c.messages, c.schedule} {
		if err := step(); err != nil {
			return fmt.Errorf("storage copy: %w", err)
		}
	}
	c.progress("", 0)
	return verifyCopy(ctx, c.src, c.dst, spool, stdout)
}

// copier moves the rows of every store, page by page: a page is read in
// a View of the source and written in an Update of the target. The
// source is a stopped database, so pages read apart agree.
type copier struct {
	ctx      context.Context
	src, dst backend.Backend
	spool    *queue.Spool
	show     io.Writer

	what  string
	n     int
	last  time.Time
	shown bool
}

// progress adds n rows of what and shows the count on stderr, at most a
// few times a second and only for large copies, as heed suppress does;
// what "" ends the line.
func (c *copier) progress(what string, n int) {
	if what != c.what {
		if c.shown {
			fmt.Fprintf(c.show, "\rcopying %s: %d rows, done\n", c.what, c.n)
		}
		c.what, c.n, c.shown = what, 0, false
	}
	c.n += n
	if what != "" && c.n > 10000 && time.Since(c.last) > 200*time.Millisecond {
		c.last = time.Now()
		fmt.Fprintf(c.show, "\rcopying %s: %d rows", what, c.n)
		c.shown = true
	}
}

func (c *copier) view(fn func(backend.Tx) error) error   { return c.src.View(c.ctx, fn) }
func (c *copier) update(fn func(backend.Tx) error) error { return c.dst.Update(c.ctx, fn) }

// tenants copies the registry, a tenant with its lists, credentials (API
// keys and SMTP passwords as their hashes), domains and sealed DKIM keys
// per transaction.
func (c *copier) tenants() error {
	var ids []string
	if err := c.view(func(tx backend.Tx) error {
		ts, err := tx.Tenants().Tenants()
		for _, t := range ts {
			ids = append(ids, t.ID)
		}
		return err
	}); err != nil {
		return err
	}
	for _, id := range ids {
		var reg tenantRows
		if err := c.view(func(tx backend.Tx) error { return reg.read(tx, id) }); err != nil {
			return fmt.Errorf("tenant %s: %w", id, err)
		}
		if err := c.update(reg.write); err != nil {
			return fmt.Errorf("tenant %s: %w", id, err)
		}
		c.progress("tenants", 1)
	}
	return nil
}

// suppressions copies every tenant's entries with their evidence, link
// marks and keyed hashes as they are: an erased entry (no address) still
// suppresses by its hash.
func (c *copier) suppressions() error {
	ids, err := tenantIDs(c.ctx, c.src)
	if err != nil {
		return err
	}
	for _, id := range ids {
		var after *suppression.Key
		for {
			var rs []suppression.Row
			var next *suppression.Key
			if err := c.view(func(tx backend.Tx) (err error) {
				rs, next, err = tx.Suppressions().Page(id, "", after, copyBatch)
				return err
			}); err != nil {
				return fmt.Errorf("suppressions of %s: %w", id, err)
			}
			if err := c.update(func(tx backend.Tx) error {
				taken, err := tx.Suppressions().Insert(rs)
				if err == nil && len(taken) > 0 {
					err = fmt.Errorf("suppression of %s already in the target", id)
				}
				return err
			}); err != nil {
				return err
			}
			c.progress("suppressions", len(rs))
			if next == nil {
				break
			}
			after = next
		}
	}
	return nil
}

func (c *copier) histories() error {
	for after := ""; ; {
		var hs []suppression.HistoryRow
		var next string
		if err := c.view(func(tx backend.Tx) (err error) {
			hs, next, err = tx.Suppressions().Histories(after, copyBatch)
			return err
		}); err != nil {
			return fmt.Errorf("soft-bounce histories: %w", err)
		}
		if err := c.update(func(tx backend.Tx) error {
			for _, h := range hs {
				if err := tx.Suppressions().PutHistory(h.Hash, h.History); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("soft-bounce histories: %w", err)
		}
		c.progress("soft-bounce histories", len(hs))
		if next == "" {
			return nil
		}
		after = next
	}
}

// events copies the log with its sequence numbers, which webhook cursors
// and API clients' after= hold; Restore moves the target's sequence past
// the source's last number given, so that none is given twice (a cursor
// may stand on an event deleted since).
func (c *copier) events() error {
	var last uint64
	for after := uint64(0); ; {
		var evs []events.Event
		if err := c.view(func(tx backend.Tx) (err error) {
			if last, err = tx.Events().Last(); err != nil {
				return err
			}
			evs, err = tx.Events().All(after, copyBatch)
			return err
		}); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if err := c.update(func(tx backend.Tx) error { return tx.Events().Restore(evs, last) }); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if len(evs) == 0 {
			return nil
		}
		c.progress("events", len(evs))
		after = evs[len(evs)-1].Seq
	}
}

func (c *copier) audit() error {
	for after := uint64(0); ; {
		var rs []audit.Record
		if err := c.view(func(tx backend.Tx) (err error) {
			rs, err = tx.Audit().Records("", after, copyBatch)
			return err
		}); err != nil {
			return fmt.Errorf("audit records: %w", err)
		}
		if len(rs) == 0 {
			return nil
		}
		if err := c.update(func(tx backend.Tx) error { return tx.Audit().Restore(rs, 0) }); err != nil {
			return fmt.Errorf("audit records: %w", err)
		}
		c.progress("audit records", len(rs))
		after = rs[len(rs)-1].Seq
	}
}

// webhooks copies the endpoints with their cursors and sealed secrets,
// then each endpoint's deliveries, whose status puts them back on the
// retry schedule or among the dead letters.
func (c *copier) webhooks() error {
	var eps []webhooks.Endpoint
	if err := c.view(func(tx backend.Tx) (err error) {
		eps, err = tx.Webhooks().Endpoints("")
		return err
	}); err != nil {
		return fmt.Errorf("webhook endpoints: %w", err)
	}
	if err := c.update(func(tx backend.Tx) error {
		for i := range eps {
			if err := tx.Webhooks().PutEndpoint(&eps[i]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("webhook endpoints: %w", err)
	}
	for _, ep := range eps {
		for from, more := uint64(math.MaxUint64), true; more; {
			var ds []webhooks.Delivery
			if err := c.view(func(tx backend.Tx) (err error) {
				ds, from, more, err = tx.Webhooks().Deliveries(ep.Tenant, ep.ID, "", from, copyBatch, copyBatch)
				return err
			}); err != nil {
				return fmt.Errorf("webhook deliveries of %s/%s: %w", ep.Tenant, ep.ID, err)
			}
			if err := c.update(func(tx backend.Tx) error {
				for i := range ds {
					if err := tx.Webhooks().PutDelivery(&ds[i]); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return fmt.Errorf("webhook deliveries of %s/%s: %w", ep.Tenant, ep.ID, err)
			}
			c.progress("webhook deliveries", len(ds))
		}
	}
	return nil
}
