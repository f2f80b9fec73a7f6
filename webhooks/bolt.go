package webhooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
)

// BoltStore is the Store in Heed's bbolt database.
//
// Layout:
//
//	webhook_endpoints   tenant 0x00 id                       → Endpoint (JSON)
//	webhook_deliveries  tenant 0x00 id 0x00 be64(seq)        → Delivery (JSON)
//	webhook_schedule    be64(due ns) tenant 0x00 id 0x00 be64(seq) → empty
//	webhook_dead        tenant 0x00 id 0x00 be64(seq)        → empty
//
// A schedule entry exists exactly while its delivery is pending or
// retrying, at the delivery's NextAttempt, so Record and Schedule find the
// entry to move from the delivery row. Tenant and endpoint ids hold no
// 0x00 (the admin API checks them), so the separators are unambiguous.
type BoltStore struct{ db *store.DB }

var _ Store = (*BoltStore)(nil)

// NewBoltStore returns the store kept in db.
func NewBoltStore(db *store.DB) *BoltStore { return &BoltStore{db: db} }

// chunk bounds the keys one transaction deletes, so that removing a large
// endpoint never holds the writer for long or builds a huge transaction.
const chunk = 10000

func epKey(tenant, id string) []byte {
	k := make([]byte, 0, len(tenant)+1+len(id))
	k = append(k, tenant...)
	k = append(k, 0)
	return append(k, id...)
}

func epPrefix(tenant, id string) []byte { return append(epKey(tenant, id), 0) }

func rowKey(tenant, id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(epPrefix(tenant, id), seq)
}

func schedKey(due time.Time, tenant, id string, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(due.UnixNano()))
	return append(k, rowKey(tenant, id, seq)...)
}

// parseRow splits tenant 0x00 id 0x00 be64(seq).
func parseRow(k []byte) (tenant, id string, seq uint64, ok bool) {
	if len(k) < 8+2 {
		return "", "", 0, false
	}
	head, tail := k[:len(k)-8], k[len(k)-8:]
	if head[len(head)-1] != 0 {
		return "", "", 0, false
	}
	t, e, found := bytes.Cut(head[:len(head)-1], []byte{0})
	if !found {
		return "", "", 0, false
	}
	return string(t), string(e), binary.BigEndian.Uint64(tail), true
}

func parseSched(k []byte) (Job, bool) {
	if len(k) < 8 {
		return Job{}, false
	}
	t, id, seq, ok := parseRow(k[8:])
	if !ok {
		return Job{}, false
	}
	return Job{Tenant: t, Endpoint: id, Seq: seq, Due: time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))}, true
}

// CreateEndpoint implements Store.
func (s *BoltStore) CreateEndpoint(_ context.Context, ep *Endpoint) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketWebhookEndpoints)
		k := epKey(ep.Tenant, ep.ID)
		if b.Get(k) != nil {
			return ErrExists
		}
		n, c, pfx := 0, b.Cursor(), append([]byte(ep.Tenant), 0)
		for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Next() {
			n++
		}
		if n >= MaxEndpoints {
			return fmt.Errorf("%w: a tenant has at most %d webhook endpoints", ErrInvalid, MaxEndpoints)
		}
		e := *ep
		// New endpoints get what happens from now on; history is replayed
		// on request.
		e.Cursor = tx.Bucket(store.BucketEvents).Sequence()
		if err := putJSON(b, k, &e); err != nil {
			return err
		}
		ep.Cursor = e.Cursor
		return nil
	})
}

// Endpoint implements Store.
func (s *BoltStore) Endpoint(_ context.Context, tenant, id string) (*Endpoint, error) {
	var ep Endpoint
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(store.BucketWebhookEndpoints), epKey(tenant, id), &ep)
	})
	if err != nil {
		return nil, err
	}
	return &ep, nil
}

// Endpoints implements Store.
func (s *BoltStore) Endpoints(_ context.Context, tenant string) ([]Endpoint, error) {
	var out []Endpoint
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketWebhookEndpoints).Cursor()
		var pfx []byte
		if tenant != "" {
			pfx = append([]byte(tenant), 0)
		}
		for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
			var ep Endpoint
			if err := json.Unmarshal(v, &ep); err != nil {
				return fmt.Errorf("webhook endpoint %q: %w", k, err)
			}
			out = append(out, ep)
		}
		return nil
	})
	return out, err
}

// UpdateEndpoint implements Store.
func (s *BoltStore) UpdateEndpoint(_ context.Context, tenant, id string, fn func(*Endpoint) error) (*Endpoint, error) {
	var out Endpoint
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketWebhookEndpoints)
		k := epKey(tenant, id)
		var ep Endpoint
		if err := getJSON(b, k, &ep); err != nil {
			return err
		}
		if err := fn(&ep); err != nil {
			return err
		}
		out = ep
		return putJSON(b, k, &ep)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteEndpoint implements Store. The endpoint goes first, so the
// dispatcher stops recording for it; its rows go in chunks after.
func (s *BoltStore) DeleteEndpoint(_ context.Context, tenant, id string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(store.BucketWebhookEndpoints)
		k := epKey(tenant, id)
		if b.Get(k) == nil {
			return ErrNotFound
		}
		return b.Delete(k)
	})
	if err != nil {
		return err
	}
	return s.purge(epPrefix(tenant, id))
}

// DeleteTenant implements Store.
func (s *BoltStore) DeleteTenant(_ context.Context, tenant string) error {
	pfx := append([]byte(tenant), 0)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return deletePrefix(tx.Bucket(store.BucketWebhookEndpoints), pfx, -1)
	})
	if err != nil {
		return err
	}
	return s.purge(pfx)
}

// purge removes the deliveries, dead letters and schedule entries whose
// row keys start with pfx.
func (s *BoltStore) purge(pfx []byte) error {
	for _, name := range [][]byte{store.BucketWebhookDeliveries, store.BucketWebhookDead} {
		for more := true; more; {
			err := s.db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(name)
				more = false
				if err := deletePrefix(b, pfx, chunk); err != nil {
					return err
				}
				k, _ := b.Cursor().Seek(pfx)
				more = k != nil && bytes.HasPrefix(k, pfx)
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketWebhookSchedule).Cursor()
		for k, _ := c.First(); k != nil; {
			if len(k) > 8 && bytes.HasPrefix(k[8:], pfx) {
				if err := c.Delete(); err != nil {
					return err
				}
				k, _ = c.Seek(k) // Delete leaves the cursor before the next key
				continue
			}
			k, _ = c.Next()
		}
		return nil
	})
}

// deletePrefix deletes up to max keys (all for max < 0) starting with pfx.
func deletePrefix(b *bolt.Bucket, pfx []byte, max int) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx) && (max < 0 || len(keys) < max); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// scheduled reports whether a delivery in status st has a schedule entry.
func scheduled(st Status) bool { return st == Pending || st == Retrying }

// Record implements Store.
func (s *BoltStore) Record(_ context.Context, r Result) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		eps := tx.Bucket(store.BucketWebhookEndpoints)
		ek := epKey(r.Tenant, r.Endpoint)
		var ep Endpoint
		if err := getJSON(eps, ek, &ep); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil // deleted while the attempt ran
			}
			return err
		}
		rows := tx.Bucket(store.BucketWebhookDeliveries)
		// Rows come nearly in key order (the log's): fuller pages than
		// bbolt's default half, which suits random inserts.
		rows.FillPercent = 0.9
		rk := rowKey(r.Tenant, r.Endpoint, r.Event.Seq)
		d, err := loadRow(rows, rk, r)
		if err != nil {
			return err
		}
		d.Attempts = append(d.Attempts, r.Attempt)
		if n := len(d.Attempts); n > maxAttemptsKept {
			d.Attempts = d.Attempts[n-maxAttemptsKept:]
		}
		if d.Status == Pending && d.Resends > r.Resends {
			// Resent while this attempt ran: the resend stands.
			return putJSON(rows, rk, d)
		}
		if err := unschedule(tx, d); err != nil {
			return err
		}
		d.Status, d.UpdatedAt, d.NextAttempt = r.Status, r.Attempt.At, time.Time{}
		if r.CountRetry {
			d.Retries++
		}
		if scheduled(r.Status) {
			d.NextAttempt = r.NextAttempt
			if ep.State != Active {
				// Paused or disabled meanwhile: it waits with the endpoint,
				// out of the way of the schedule's other entries.
				d.NextAttempt = Hold
			}
		}
		if err := place(tx, d); err != nil {
			return err
		}
		if err := putJSON(rows, rk, d); err != nil {
			return err
		}
		if r.Cursor > ep.Cursor {
			ep.Cursor = r.Cursor
			return putJSON(eps, ek, &ep)
		}
		return nil
	})
}

// loadRow reads a delivery row, or starts one for r's event.
func loadRow(rows *bolt.Bucket, rk []byte, r Result) (*Delivery, error) {
	d := &Delivery{Tenant: r.Tenant, Endpoint: r.Endpoint, Seq: r.Event.Seq, EventID: r.Event.ID, Type: r.Event.Type}
	if v := rows.Get(rk); v != nil {
		if err := json.Unmarshal(v, d); err != nil {
			return nil, fmt.Errorf("webhook delivery %q: %w", rk, err)
		}
	}
	return d, nil
}

// unschedule removes d's schedule entry, if it has one.
func unschedule(tx *bolt.Tx, d *Delivery) error {
	if !scheduled(d.Status) || d.NextAttempt.IsZero() {
		return nil
	}
	return tx.Bucket(store.BucketWebhookSchedule).Delete(schedKey(d.NextAttempt, d.Tenant, d.Endpoint, d.Seq))
}

// place writes d's schedule entry and dead-letter mark for its status.
func place(tx *bolt.Tx, d *Delivery) error {
	if scheduled(d.Status) {
		if err := tx.Bucket(store.BucketWebhookSchedule).Put(schedKey(d.NextAttempt, d.Tenant, d.Endpoint, d.Seq), nil); err != nil {
			return err
		}
	}
	dead := tx.Bucket(store.BucketWebhookDead)
	dk := rowKey(d.Tenant, d.Endpoint, d.Seq)
	if d.Status == Failed {
		return dead.Put(dk, nil)
	}
	return dead.Delete(dk)
}

// Handled implements Store.
func (s *BoltStore) Handled(_ context.Context, tenant, endpoint string, seqs []uint64) (map[uint64]bool, error) {
	out := make(map[uint64]bool)
	err := s.db.View(func(tx *bolt.Tx) error {
		rows := tx.Bucket(store.BucketWebhookDeliveries)
		for _, seq := range seqs {
			if rows.Get(rowKey(tenant, endpoint, seq)) != nil {
				out[seq] = true
			}
		}
		return nil
	})
	return out, err
}

// Delivery implements Store.
func (s *BoltStore) Delivery(_ context.Context, tenant, endpoint string, seq uint64) (*Delivery, error) {
	var d Delivery
	err := s.db.View(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(store.BucketWebhookDeliveries), rowKey(tenant, endpoint, seq), &d)
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
func (s *BoltStore) Deliveries(_ context.Context, tenant, endpoint string, status Status, cursor string, limit int) ([]Delivery, string, error) {
	pfx := epPrefix(tenant, endpoint)
	from := rowKey(tenant, endpoint, ^uint64(0))
	if cursor != "" {
		c, err := cursorEnc.DecodeString(cursor)
		if err != nil || len(c) != 8 {
			return nil, "", fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		from = rowKey(tenant, endpoint, binary.BigEndian.Uint64(c))
	}
	var out []Delivery
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(store.BucketWebhookEndpoints).Get(epKey(tenant, endpoint)) == nil {
			return ErrNotFound
		}
		c := tx.Bucket(store.BucketWebhookDeliveries).Cursor()
		k, v := c.Seek(from)
		switch {
		case k == nil:
			k, v = c.Last()
		case !bytes.Equal(k, from):
			k, v = c.Prev()
		}
		for scanned := 0; k != nil && bytes.HasPrefix(k, pfx); k, v = c.Prev() {
			if len(out) == limit || scanned == maxScan {
				next = cursorEnc.EncodeToString(k[len(k)-8:])
				return nil
			}
			scanned++
			var d Delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("webhook delivery %q: %w", k, err)
			}
			if status == "" || d.Status == status {
				out = append(out, d)
			}
		}
		return nil
	})
	return out, next, err
}

// DeadLetters implements Store. The cursor is the last key returned.
func (s *BoltStore) DeadLetters(_ context.Context, tenant, cursor string, limit int) ([]Delivery, string, error) {
	var pfx []byte
	if tenant != "" {
		pfx = append([]byte(tenant), 0)
	}
	var after []byte
	if cursor != "" {
		c, err := cursorEnc.DecodeString(cursor)
		if err != nil || !bytes.HasPrefix(c, pfx) {
			return nil, "", fmt.Errorf("%w: malformed cursor", ErrInvalid)
		}
		after = c
	}
	var out []Delivery
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		rows := tx.Bucket(store.BucketWebhookDeliveries)
		c := tx.Bucket(store.BucketWebhookDead).Cursor()
		k, _ := c.Seek(pfx)
		if after != nil {
			if k, _ = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, _ = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Next() {
			if len(out) == limit {
				next = cursorEnc.EncodeToString(out[len(out)-1].key())
				return nil
			}
			var d Delivery
			if err := getJSON(rows, k, &d); err != nil {
				continue // the row went with its endpoint
			}
			out = append(out, d)
		}
		return nil
	})
	return out, next, err
}

func (d *Delivery) key() []byte { return rowKey(d.Tenant, d.Endpoint, d.Seq) }

// Due implements Store.
func (s *BoltStore) Due(_ context.Context, now time.Time, limit int, skip func(Job) bool) (jobs []Job, next time.Time, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketWebhookSchedule).Cursor()
		scanned := 0
		for k, _ := c.First(); k != nil && scanned < 4*limit+1024; k, _ = c.Next() {
			scanned++
			j, ok := parseSched(k)
			if !ok {
				continue
			}
			if j.Due.After(now) {
				if !j.Due.Equal(Hold) {
					next = j.Due
				}
				return nil
			}
			if skip != nil && skip(j) {
				continue
			}
			if len(jobs) == limit {
				return nil
			}
			jobs = append(jobs, j)
		}
		return nil
	})
	return jobs, next, err
}

// Schedule implements Store.
func (s *BoltStore) Schedule(_ context.Context, tenant, endpoint string, evs []events.Event, at, now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		if tx.Bucket(store.BucketWebhookEndpoints).Get(epKey(tenant, endpoint)) == nil {
			return ErrNotFound
		}
		rows := tx.Bucket(store.BucketWebhookDeliveries)
		for _, ev := range evs {
			if ev.Data.Tenant != tenant {
				continue
			}
			rk := rowKey(tenant, endpoint, ev.Seq)
			d, err := loadRow(rows, rk, Result{Tenant: tenant, Endpoint: endpoint, Event: ev})
			if err != nil {
				return err
			}
			if err := unschedule(tx, d); err != nil {
				return err
			}
			d.Status, d.NextAttempt, d.Retries, d.UpdatedAt = Pending, at, 0, now
			d.Resends++
			if err := place(tx, d); err != nil {
				return err
			}
			if err := putJSON(rows, rk, d); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Reschedule implements Store.
func (s *BoltStore) Reschedule(_ context.Context, tenant, endpoint string, at time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		sched := tx.Bucket(store.BucketWebhookSchedule)
		rows := tx.Bucket(store.BucketWebhookDeliveries)
		var moved []Job
		c := sched.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			j, ok := parseSched(k)
			if ok && j.Tenant == tenant && j.Endpoint == endpoint && !j.Due.Equal(at) {
				moved = append(moved, j)
			}
		}
		for _, j := range moved {
			rk := rowKey(tenant, endpoint, j.Seq)
			var d Delivery
			if err := getJSON(rows, rk, &d); err != nil {
				return err
			}
			if err := unschedule(tx, &d); err != nil {
				return err
			}
			d.NextAttempt = at
			if err := place(tx, &d); err != nil {
				return err
			}
			if err := putJSON(rows, rk, &d); err != nil {
				return err
			}
		}
		return nil
	})
}

// Scheduled implements Store.
func (s *BoltStore) Scheduled(_ context.Context) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(store.BucketWebhookSchedule).Stats().KeyN
		return nil
	})
	return n, err
}

// Held implements Store.
func (s *BoltStore) Held(_ context.Context, tenant, endpoint string, limit int) ([]Job, error) {
	var out []Job
	pfx := binary.BigEndian.AppendUint64(nil, uint64(Hold.UnixNano()))
	pfx = append(pfx, epPrefix(tenant, endpoint)...)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(store.BucketWebhookSchedule).Cursor()
		for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx) && len(out) < limit; k, _ = c.Next() {
			if j, ok := parseSched(k); ok {
				out = append(out, j)
			}
		}
		return nil
	})
	return out, err
}

func getJSON(b *bolt.Bucket, k []byte, v any) error {
	raw := b.Get(k)
	if raw == nil {
		return ErrNotFound
	}
	return json.Unmarshal(raw, v)
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

// Erase removes addr from the attempts recorded (a receiver's answer may
// quote it) and returns how many deliveries it changed. The events
// themselves are the event log's to erase.
func (s *BoltStore) Erase(_ context.Context, addr string) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = store.Rewrite(tx.Bucket(store.BucketWebhookDeliveries), func(k, v []byte) ([]byte, bool, error) {
			if !events.ContainsFold(v, addr) {
				return nil, false, nil
			}
			var d Delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return nil, false, fmt.Errorf("webhook delivery %q: %w", k, err)
			}
			for i := range d.Attempts {
				a := &d.Attempts[i]
				a.Response, a.Error = events.EraseText(a.Response, addr), events.EraseText(a.Error, addr)
			}
			nv, err := json.Marshal(d)
			return nv, err == nil, err
		})
		return err
	})
	return n, err
}

// Purge deletes finished deliveries (delivered, or dead letters) last
// changed before cutoff, in transactions of at most 10,000, and returns
// how many it deleted.
func (s *BoltStore) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	return s.db.Sweep(ctx, store.BucketWebhookDeliveries, chunk, func(tx *bolt.Tx, k, v []byte) (bool, bool, error) {
		var d Delivery
		if err := json.Unmarshal(v, &d); err != nil {
			return false, false, err
		}
		if scheduled(d.Status) || !d.UpdatedAt.Before(cutoff) {
			return false, false, nil
		}
		return true, false, tx.Bucket(store.BucketWebhookDead).Delete(k)
	})
}
