package webhooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/txn"
)

// Service is the Store over a storage backend: this package's rules (what
// an attempt changes, when a resend stands, where a paused endpoint's
// deliveries wait, where a new endpoint's cursor starts, erasure) on the
// rows a backend keeps (Rows).
//
// Lifecycle: built once at start over an open backend (New), shared by
// every goroutine; the backend under it is closed, not the Service.
type Service struct{ tx txn.Runner[Tx] }

var _ Store = (*Service)(nil)

// New returns the store kept by tx.
func New(tx txn.Runner[Tx]) *Service { return &Service{tx: tx} }

// chunk bounds the rows one transaction deletes or rewrites, so that
// removing a large endpoint, a purge or an erasure never holds the writer
// for long or builds a huge transaction.
const chunk = 10000

// CreateEndpoint implements Store.
func (s *Service) CreateEndpoint(ctx context.Context, ep *Endpoint) error {
	var cursor uint64
	err := s.tx.Update(ctx, func(tx Tx) error {
		rows := tx.Webhooks()
		if _, ok, err := rows.Endpoint(ep.Tenant, ep.ID); err != nil || ok {
			if err == nil {
				err = ErrExists
			}
			return err
		}
		eps, err := rows.Endpoints(ep.Tenant)
		if err != nil {
			return err
		}
		if len(eps) >= MaxEndpoints {
			return fmt.Errorf("%w: a tenant has at most %d webhook endpoints", ErrInvalid, MaxEndpoints)
		}
		e := *ep
		// New endpoints get what happens from now on; history is replayed
		// on request. Last is at or above every event committed, and below
		// every event committed later (events.TxLog), so the cursor skips
		// none of those.
		if e.Cursor, err = tx.Events().Last(); err != nil {
			return err
		}
		cursor = e.Cursor
		return rows.PutEndpoint(&e)
	})
	if err == nil {
		ep.Cursor = cursor // set once committed: the function may run again
	}
	return err
}

// Endpoint implements Store.
func (s *Service) Endpoint(ctx context.Context, tenant, id string) (*Endpoint, error) {
	var ep Endpoint
	err := s.tx.View(ctx, func(tx Tx) error {
		var ok bool
		var err error
		if ep, ok, err = tx.Webhooks().Endpoint(tenant, id); err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &ep, nil
}

// Endpoints implements Store.
func (s *Service) Endpoints(ctx context.Context, tenant string) ([]Endpoint, error) {
	var out []Endpoint
	err := s.tx.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Webhooks().Endpoints(tenant)
		return err
	})
	return out, err
}

// UpdateEndpoint implements Store.
func (s *Service) UpdateEndpoint(ctx context.Context, tenant, id string, fn func(*Endpoint) error) (*Endpoint, error) {
	var out Endpoint
	err := s.tx.Update(ctx, func(tx Tx) error {
		rows := tx.Webhooks()
		ep, ok, err := rows.Endpoint(tenant, id)
		if err != nil || !ok {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		if err := fn(&ep); err != nil {
			return err
		}
		out = ep
		return rows.PutEndpoint(&ep)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteEndpoint implements Store. The endpoint goes first, so the
// dispatcher stops recording for it; its rows go in chunks after.
func (s *Service) DeleteEndpoint(ctx context.Context, tenant, id string) error {
	err := s.tx.Update(ctx, func(tx Tx) error {
		ok, err := tx.Webhooks().DeleteEndpoint(tenant, id)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return err
	}
	return s.deleteDeliveries(ctx, tenant, id)
}

// DeleteTenant implements Store.
func (s *Service) DeleteTenant(ctx context.Context, tenant string) error {
	err := s.tx.Update(ctx, func(tx Tx) error {
		rows := tx.Webhooks()
		eps, err := rows.Endpoints(tenant)
		if err != nil {
			return err
		}
		for _, ep := range eps {
			if _, err := rows.DeleteEndpoint(tenant, ep.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.deleteDeliveries(ctx, tenant, "")
}

// deleteDeliveries removes the deliveries of an endpoint (of a whole
// tenant for ""), chunk by chunk.
func (s *Service) deleteDeliveries(ctx context.Context, tenant, endpoint string) error {
	for n := chunk; n == chunk; {
		err := s.tx.Update(ctx, func(tx Tx) error {
			var err error
			n, err = tx.Webhooks().DeleteDeliveries(tenant, endpoint, chunk)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Record implements Store.
func (s *Service) Record(ctx context.Context, r Result) error {
	return s.tx.Update(ctx, func(tx Tx) error {
		rows := tx.Webhooks()
		ep, ok, err := rows.Endpoint(r.Tenant, r.Endpoint)
		if err != nil || !ok {
			return err // !ok: deleted while the attempt ran
		}
		d, err := loadDelivery(rows, r)
		if err != nil {
			return err
		}
		d.Attempts = append(d.Attempts, r.Attempt)
		if n := len(d.Attempts); n > maxAttemptsKept {
			d.Attempts = d.Attempts[n-maxAttemptsKept:]
		}
		if d.Status == Pending && d.Resends > r.Resends {
			// Resent while this attempt ran: the resend stands.
			return rows.PutDelivery(d)
		}
		d.Status, d.UpdatedAt, d.NextAttempt = r.Status, r.Attempt.At, time.Time{}
		if r.CountRetry {
			d.Retries++
		}
		if r.Status.Scheduled() {
			d.NextAttempt = r.NextAttempt
			if ep.State != Active {
				// Paused or disabled meanwhile: it waits with the endpoint,
				// out of the way of the schedule's other entries.
				d.NextAttempt = Hold
			}
		}
		if err := rows.PutDelivery(d); err != nil {
			return err
		}
		if r.Cursor > ep.Cursor {
			ep.Cursor = r.Cursor
			return rows.PutEndpoint(&ep)
		}
		return nil
	})
}

// loadDelivery reads a delivery, or starts one for r's event.
func loadDelivery(rows Rows, r Result) (*Delivery, error) {
	d, ok, err := rows.Delivery(r.Tenant, r.Endpoint, r.Event.Seq)
	if err != nil {
		return nil, err
	}
	if !ok {
		d = Delivery{Tenant: r.Tenant, Endpoint: r.Endpoint, Seq: r.Event.Seq, EventID: r.Event.ID, Type: r.Event.Type}
	}
	return &d, nil
}

// Handled implements Store.
func (s *Service) Handled(ctx context.Context, tenant, endpoint string, seqs []uint64) (map[uint64]bool, error) {
	var out map[uint64]bool
	err := s.tx.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Webhooks().Handled(tenant, endpoint, seqs)
		return err
	})
	return out, err
}

// Delivery implements Store.
func (s *Service) Delivery(ctx context.Context, tenant, endpoint string, seq uint64) (*Delivery, error) {
	var d Delivery
	err := s.tx.View(ctx, func(tx Tx) error {
		var ok bool
		var err error
		if d, ok, err = tx.Webhooks().Delivery(tenant, endpoint, seq); err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

var cursorEnc = base64.RawURLEncoding.Strict()

// maxScan bounds the rows one listing examines, so that a status filter
// matching little returns a cursor instead of scanning everything.
const maxScan = 10000

// Deliveries implements Store. The cursor is the sequence number of the
// next row to examine.
func (s *Service) Deliveries(ctx context.Context, tenant, endpoint string, status Status, cursor string, limit int) ([]Delivery, string, error) {
	from := ^uint64(0)
	if cursor != "" {
		c, err := cursorEnc.DecodeString(cursor)
		if err != nil || len(c) != 8 {
			return nil, "", fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		from = binary.BigEndian.Uint64(c)
	}
	var out []Delivery
	var next string
	err := s.tx.View(ctx, func(tx Tx) error {
		rows := tx.Webhooks()
		if _, ok, err := rows.Endpoint(tenant, endpoint); err != nil || !ok {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		ds, n, more, err := rows.Deliveries(tenant, endpoint, status, from, limit, maxScan)
		out, next = ds, ""
		if more {
			next = cursorEnc.EncodeToString(binary.BigEndian.AppendUint64(nil, n))
		}
		return err
	})
	return out, next, err
}

// deadCursor is the form of DeadLetters' cursors: tenant 0x00 endpoint
// 0x00 be64(seq) of the last delivery returned (tenant and endpoint ids
// hold no 0x00: the admin API checks them).
func deadCursor(d Delivery) string {
	k := append(append(append([]byte(d.Tenant), 0), d.Endpoint...), 0)
	return cursorEnc.EncodeToString(binary.BigEndian.AppendUint64(k, d.Seq))
}

func parseDeadCursor(cursor, tenant string) (*Job, bool) {
	c, err := cursorEnc.DecodeString(cursor)
	if err != nil || len(c) < 8+2 || c[len(c)-9] != 0 {
		return nil, false
	}
	t, e, ok := bytes.Cut(c[:len(c)-9], []byte{0})
	if !ok || tenant != "" && string(t) != tenant {
		return nil, false
	}
	return &Job{Tenant: string(t), Endpoint: string(e), Seq: binary.BigEndian.Uint64(c[len(c)-8:])}, true
}

// DeadLetters implements Store. The cursor names the last one returned.
func (s *Service) DeadLetters(ctx context.Context, tenant, cursor string, limit int) ([]Delivery, string, error) {
	var after *Job
	if cursor != "" {
		var ok bool
		if after, ok = parseDeadCursor(cursor, tenant); !ok {
			return nil, "", fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
	}
	var out []Delivery
	var next string
	err := s.tx.View(ctx, func(tx Tx) error {
		ds, more, err := tx.Webhooks().DeadLetters(tenant, after, limit)
		out, next = ds, ""
		if more && len(ds) > 0 {
			next = deadCursor(ds[len(ds)-1])
		}
		return err
	})
	return out, next, err
}

// Due implements Store.
func (s *Service) Due(ctx context.Context, now time.Time, limit int, skip func(Job) bool) (jobs []Job, next time.Time, err error) {
	// One read of the schedule (txn.ViewOne).
	err = txn.ViewOne(ctx, s.tx, func(tx Tx) error {
		var err error
		jobs, next, err = tx.Webhooks().Due(now, limit, skip)
		return err
	})
	return jobs, next, err
}

// Schedule implements Store.
func (s *Service) Schedule(ctx context.Context, tenant, endpoint string, evs []events.Event, at, now time.Time) (int, error) {
	n := 0
	err := s.tx.Update(ctx, func(tx Tx) error {
		n = 0
		rows := tx.Webhooks()
		if _, ok, err := rows.Endpoint(tenant, endpoint); err != nil || !ok {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		for _, ev := range evs {
			if ev.Data.Tenant != tenant {
				continue
			}
			d, err := loadDelivery(rows, Result{Tenant: tenant, Endpoint: endpoint, Event: ev})
			if err != nil {
				return err
			}
			d.Status, d.NextAttempt, d.Retries, d.UpdatedAt = Pending, at, 0, now
			d.Resends++
			if err := rows.PutDelivery(d); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Reschedule implements Store.
func (s *Service) Reschedule(ctx context.Context, tenant, endpoint string, at time.Time) error {
	return s.tx.Update(ctx, func(tx Tx) error {
		rows := tx.Webhooks()
		jobs, err := rows.Jobs(tenant, endpoint)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if j.Due.Equal(at) {
				continue
			}
			d, ok, err := rows.Delivery(tenant, endpoint, j.Seq)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("webhooks: schedule entry %s/%s/%d without its delivery", tenant, endpoint, j.Seq)
			}
			d.NextAttempt = at
			if err := rows.PutDelivery(&d); err != nil {
				return err
			}
		}
		return nil
	})
}

// Scheduled implements Store.
func (s *Service) Scheduled(ctx context.Context) (int, error) {
	n := 0
	err := s.tx.View(ctx, func(tx Tx) error {
		var err error
		n, err = tx.Webhooks().CountScheduled()
		return err
	})
	return n, err
}

// Held implements Store.
func (s *Service) Held(ctx context.Context, tenant, endpoint string, limit int) ([]Job, error) {
	var out []Job
	err := s.tx.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Webhooks().Held(tenant, endpoint, limit)
		return err
	})
	return out, err
}

// Erase removes addr from the attempts recorded (a receiver's answer may
// quote it), in transactions of at most chunk deliveries examined, and
// returns how many deliveries it changed. The events themselves are the
// event log's to erase.
func (s *Service) Erase(ctx context.Context, addr string) (int, error) {
	total := 0
	for from, first := "", true; first || from != ""; first = false {
		var n int
		var next string
		err := s.tx.Update(ctx, func(tx Tx) error {
			rows := tx.Webhooks()
			var ds []Delivery
			var err error
			if ds, next, err = rows.Mentioning(addr, from, chunk); err != nil {
				return err
			}
			n = 0
			for i := range ds {
				if eraseAttempts(&ds[i], addr) {
					if err := rows.PutDelivery(&ds[i]); err != nil {
						return err
					}
					n++
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		from, total = next, total+n // here: the function may run more than once
	}
	return total, nil
}

// eraseAttempts replaces addr in d's attempts and reports whether it
// changed anything (the JSON form may mention addr elsewhere, escaped).
func eraseAttempts(d *Delivery, addr string) bool {
	before, _ := json.Marshal(d.Attempts)
	for i := range d.Attempts {
		a := &d.Attempts[i]
		a.Response, a.Error = events.EraseText(a.Response, addr), events.EraseText(a.Error, addr)
	}
	after, _ := json.Marshal(d.Attempts)
	return !bytes.Equal(before, after)
}

// Purge deletes finished deliveries (delivered, or dead letters) last
// changed before cutoff, in transactions of at most chunk examined, and
// returns how many it deleted.
func (s *Service) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for from, first := "", true; first || from != ""; first = false {
		var n int
		var next string
		err := s.tx.Update(ctx, func(tx Tx) error {
			var err error
			n, next, err = tx.Webhooks().PurgeDeliveries(cutoff, from, chunk)
			return err
		})
		if err != nil {
			return total, err
		}
		from, total = next, total+n
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
	return total, nil
}
