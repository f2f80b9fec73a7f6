package main

import (
	"context"
	"fmt"
	"math"

	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/tenant"
)

// tenantRows is one tenant's registry rows.
type tenantRows struct {
	t     tenant.Tenant
	lists []tenant.List
	creds []tenant.Credential
	doms  []tenant.Domain
	keys  []tenant.DKIMKey
}

func (r *tenantRows) read(tx backend.Tx, id string) error {
	rows := tx.Tenants()
	var err error
	*r = tenantRows{}
	if r.t, err = rows.Tenant(id); err != nil {
		return err
	}
	if r.lists, err = rows.Lists(id); err != nil {
		return err
	}
	if r.creds, err = rows.Credentials(id); err != nil {
		return err
	}
	if r.doms, err = rows.Domains(id); err != nil {
		return err
	}
	for _, d := range r.doms {
		ks, err := rows.Keys(d.Name)
		if err != nil {
			return err
		}
		r.keys = append(r.keys, ks...)
	}
	return nil
}

func (r *tenantRows) write(tx backend.Tx) error {
	rows := tx.Tenants()
	if err := rows.PutTenant(r.t); err != nil {
		return err
	}
	for _, l := range r.lists {
		if err := rows.PutList(l); err != nil {
			return err
		}
	}
	for _, c := range r.creds {
		if err := rows.PutCredential(c); err != nil {
			return err
		}
	}
	for _, d := range r.doms {
		if err := rows.PutDomain(d); err != nil {
			return err
		}
	}
	for _, k := range r.keys {
		if err := rows.PutKey(k); err != nil {
			return err
		}
	}
	return nil
}

func tenantIDs(ctx context.Context, b backend.Backend) ([]string, error) {
	var ids []string
	err := b.View(ctx, func(tx backend.Tx) error {
		ts, err := tx.Tenants().Tenants()
		for _, t := range ts {
			ids = append(ids, t.ID)
		}
		return err
	})
	return ids, err
}

// queued is one message with its recipients and, while a recipient still
// needs it, its body.
type queued struct {
	m    queue.Message
	rcpt []queue.Recipient
	body []byte
}

// readQueued reads a page of messages after after, with their bodies
// from the database or, over 64 KiB on bbolt, from the spool. On
// PostgreSQL every body is in the database, so the copy marks each
// message that still needs one Inline.
func readQueued(tx backend.Tx, spool *queue.Spool, after string) ([]queued, error) {
	rows := tx.Queue()
	ms, err := rows.Messages(after, copyBatch)
	if err != nil {
		return nil, err
	}
	out := make([]queued, 0, len(ms))
	size := 0
	for _, m := range ms {
		q := queued{m: m}
		if q.rcpt, err = rows.Recipients(m.ID); err != nil {
			return nil, err
		}
		switch {
		case m.Inline:
			if q.body, _, err = rows.Body(m.ID); err != nil {
				return nil, err
			}
		case m.Pending > 0:
			if q.body, err = spool.ReadAll(m.ID); err != nil {
				return nil, fmt.Errorf("message %s has recipients to deliver: %w", m.ID, err)
			}
			q.m.Inline = true
		}
		out = append(out, q)
		if size += len(q.body); size > copyBodyBytes {
			break
		}
	}
	return out, nil
}

func writeQueued(tx backend.Tx, qs []queued) error {
	rows := tx.Queue()
	for _, q := range qs {
		if err := rows.PutMessage(&q.m); err != nil {
			return err
		}
		if q.body != nil {
			if err := rows.PutBody(q.m.ID, q.body); err != nil {
				return err
			}
		}
		for i := range q.rcpt {
			if err := rows.PutRecipient(q.m.ID, &q.rcpt[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// messages copies the queue's messages, recipients with their states,
// attempts and replies, and bodies.
func (c *copier) messages() error {
	for after := ""; ; {
		var qs []queued
		if err := c.view(func(tx backend.Tx) (err error) {
			qs, err = readQueued(tx, c.spool, after)
			return err
		}); err != nil {
			return fmt.Errorf("queued messages: %w", err)
		}
		if len(qs) == 0 {
			return nil
		}
		if err := c.update(func(tx backend.Tx) error { return writeQueued(tx, qs) }); err != nil {
			return fmt.Errorf("queued messages: %w", err)
		}
		c.progress("queued messages", len(qs))
		after = qs[len(qs)-1].m.ID
	}
}

// schedule copies the queue's schedule: the recipients waiting for an
// attempt, each at its time. Its entries are small; they are read in one
// View, since the face pages them by time only.
func (c *copier) schedule() error {
	var jobs []queue.Job
	if err := c.view(func(tx backend.Tx) error {
		return tx.Queue().Due(math.MaxInt, func(j queue.Job) bool { jobs = append(jobs, j); return true })
	}); err != nil {
		return fmt.Errorf("the queue's schedule: %w", err)
	}
	for len(jobs) > 0 {
		page := jobs[:min(len(jobs), copyBatch)]
		jobs = jobs[len(page):]
		if err := c.update(func(tx backend.Tx) error {
			for _, j := range page {
				if err := tx.Queue().Schedule(j); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("the queue's schedule: %w", err)
		}
		c.progress("schedule entries", len(page))
	}
	return nil
}
