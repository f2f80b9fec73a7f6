package boltdb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/webhooks"
)

// webhookRows is webhooks.Rows in bbolt.
//
// Layout (that of webhooks' former BoltStore, unchanged):
//
//	webhook_endpoints   tenant 0x00 id                       → Endpoint (JSON)
//	webhook_deliveries  tenant 0x00 id 0x00 be64(seq)        → Delivery (JSON)
//	webhook_schedule    be64(due ns) tenant 0x00 id 0x00 be64(seq) → empty
//	webhook_dead        tenant 0x00 id 0x00 be64(seq)        → empty
//
// A schedule entry exists exactly while its delivery is pending or
// retrying, at the delivery's NextAttempt, so PutDelivery finds the entry
// to move from the stored row. Tenant and endpoint ids hold no 0x00 (the
// admin API checks them), so the separators are unambiguous.
type webhookRows struct{ tx *bolt.Tx }

func epKey(tenant, id string) []byte {
	k := make([]byte, 0, len(tenant)+1+len(id))
	k = append(k, tenant...)
	k = append(k, 0)
	return append(k, id...)
}

func epPrefix(tenant, id string) []byte { return append(epKey(tenant, id), 0) }

// hookTenantPrefix is the prefix of a tenant's keys; nil (every key) for "".
func hookTenantPrefix(tenant string) []byte {
	if tenant == "" {
		return nil
	}
	return append([]byte(tenant), 0)
}

func hookKey(tenant, id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(epPrefix(tenant, id), seq)
}

func hookSchedKey(due time.Time, tenant, id string, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(due.UnixNano()))
	return append(k, hookKey(tenant, id, seq)...)
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

func parseSched(k []byte) (webhooks.Job, bool) {
	if len(k) < 8 {
		return webhooks.Job{}, false
	}
	t, id, seq, ok := parseRow(k[8:])
	if !ok {
		return webhooks.Job{}, false
	}
	return webhooks.Job{Tenant: t, Endpoint: id, Seq: seq, Due: time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))}, true
}

func getJSON(b *bolt.Bucket, k []byte, v any) (bool, error) {
	raw := b.Get(k)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("%q: %w", k, err)
	}
	return true, nil
}

func (r webhookRows) bucket(name []byte) *bolt.Bucket { return r.tx.Bucket(name) }

func (r webhookRows) Endpoint(tenant, id string) (webhooks.Endpoint, bool, error) {
	var ep webhooks.Endpoint
	ok, err := getJSON(r.bucket(store.BucketWebhookEndpoints), epKey(tenant, id), &ep)
	return ep, ok, err
}

func (r webhookRows) Endpoints(tenant string) ([]webhooks.Endpoint, error) {
	var out []webhooks.Endpoint
	pfx := hookTenantPrefix(tenant)
	c := r.bucket(store.BucketWebhookEndpoints).Cursor()
	for k, v := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx); k, v = c.Next() {
		var ep webhooks.Endpoint
		if err := json.Unmarshal(v, &ep); err != nil {
			return nil, fmt.Errorf("webhook endpoint %q: %w", k, err)
		}
		out = append(out, ep)
	}
	return out, nil
}

func (r webhookRows) PutEndpoint(ep *webhooks.Endpoint) error {
	return putJSON(r.bucket(store.BucketWebhookEndpoints), epKey(ep.Tenant, ep.ID), ep)
}

func (r webhookRows) DeleteEndpoint(tenant, id string) (bool, error) {
	b := r.bucket(store.BucketWebhookEndpoints)
	k := epKey(tenant, id)
	if b.Get(k) == nil {
		return false, nil
	}
	return true, b.Delete(k)
}

func (r webhookRows) Delivery(tenant, endpoint string, seq uint64) (webhooks.Delivery, bool, error) {
	var d webhooks.Delivery
	ok, err := getJSON(r.bucket(store.BucketWebhookDeliveries), hookKey(tenant, endpoint, seq), &d)
	return d, ok, err
}

// unindex removes d's schedule entry and dead-letter mark.
func (r webhookRows) unindex(d *webhooks.Delivery) error {
	k := hookKey(d.Tenant, d.Endpoint, d.Seq)
	if d.Status.Scheduled() && !d.NextAttempt.IsZero() {
		if err := r.bucket(store.BucketWebhookSchedule).Delete(hookSchedKey(d.NextAttempt, d.Tenant, d.Endpoint, d.Seq)); err != nil {
			return err
		}
	}
	return r.bucket(store.BucketWebhookDead).Delete(k)
}

func (r webhookRows) PutDelivery(d *webhooks.Delivery) error {
	rows := r.bucket(store.BucketWebhookDeliveries)
	// Rows come nearly in key order (the log's): fuller pages than
	// bbolt's default half, which suits random inserts.
	rows.FillPercent = 0.9
	k := hookKey(d.Tenant, d.Endpoint, d.Seq)
	var old webhooks.Delivery
	if ok, err := getJSON(rows, k, &old); err != nil {
		return err
	} else if ok {
		if err := r.unindex(&old); err != nil {
			return err
		}
	}
	if d.Status.Scheduled() {
		if err := r.bucket(store.BucketWebhookSchedule).Put(hookSchedKey(d.NextAttempt, d.Tenant, d.Endpoint, d.Seq), nil); err != nil {
			return err
		}
	}
	if d.Status == webhooks.Failed {
		if err := r.bucket(store.BucketWebhookDead).Put(k, nil); err != nil {
			return err
		}
	}
	return putJSON(rows, k, d)
}

func (r webhookRows) Handled(tenant, endpoint string, seqs []uint64) (map[uint64]bool, error) {
	out := make(map[uint64]bool)
	rows := r.bucket(store.BucketWebhookDeliveries)
	for _, seq := range seqs {
		if rows.Get(hookKey(tenant, endpoint, seq)) != nil {
			out[seq] = true
		}
	}
	return out, nil
}

func (r webhookRows) Deliveries(tenant, endpoint string, status webhooks.Status, from uint64, limit, scan int) ([]webhooks.Delivery, uint64, bool, error) {
	pfx := epPrefix(tenant, endpoint)
	start := hookKey(tenant, endpoint, from)
	var out []webhooks.Delivery
	c := r.bucket(store.BucketWebhookDeliveries).Cursor()
	k, v := c.Seek(start)
	switch {
	case k == nil:
		k, v = c.Last()
	case !bytes.Equal(k, start):
		k, v = c.Prev()
	}
	for scanned := 0; k != nil && bytes.HasPrefix(k, pfx); k, v = c.Prev() {
		if len(out) == limit || scanned == scan {
			return out, binary.BigEndian.Uint64(k[len(k)-8:]), true, nil
		}
		scanned++
		var d webhooks.Delivery
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, 0, false, fmt.Errorf("webhook delivery %q: %w", k, err)
		}
		if status == "" || d.Status == status {
			out = append(out, d)
		}
	}
	return out, 0, false, nil
}

func (r webhookRows) DeadLetters(tenant string, after *webhooks.Job, limit int) ([]webhooks.Delivery, bool, error) {
	pfx := hookTenantPrefix(tenant)
	var out []webhooks.Delivery
	rows := r.bucket(store.BucketWebhookDeliveries)
	c := r.bucket(store.BucketWebhookDead).Cursor()
	k, _ := c.Seek(pfx)
	if after != nil {
		ak := hookKey(after.Tenant, after.Endpoint, after.Seq)
		if k, _ = c.Seek(ak); k != nil && bytes.Equal(k, ak) {
			k, _ = c.Next()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		var d webhooks.Delivery
		if ok, err := getJSON(rows, k, &d); err != nil || !ok {
			continue // the row went with its endpoint
		}
		out = append(out, d)
	}
	return out, false, nil
}

func (r webhookRows) DeleteDeliveries(tenant, endpoint string, max int) (int, error) {
	pfx := hookTenantPrefix(tenant)
	if endpoint != "" {
		pfx = epPrefix(tenant, endpoint)
	}
	rows := r.bucket(store.BucketWebhookDeliveries)
	var keys [][]byte
	c := rows.Cursor()
	for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx) && len(keys) < max; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		var d webhooks.Delivery
		if _, err := getJSON(rows, k, &d); err != nil {
			return 0, err
		}
		if err := r.unindex(&d); err != nil {
			return 0, err
		}
		if err := rows.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// walk calls fn with up to max deliveries from the key from (empty: the
// first) and returns the key to go on from ("" at the end).
func (r webhookRows) walk(from string, max int, fn func(k []byte, d *webhooks.Delivery) error) (string, error) {
	type kv struct {
		k []byte
		d webhooks.Delivery
	}
	var batch []kv
	c := r.bucket(store.BucketWebhookDeliveries).Cursor()
	k, v := c.Seek([]byte(from))
	for ; k != nil && len(batch) < max; k, v = c.Next() {
		var d webhooks.Delivery
		if err := json.Unmarshal(v, &d); err != nil {
			return "", fmt.Errorf("webhook delivery %q: %w", k, err)
		}
		batch = append(batch, kv{bytes.Clone(k), d})
	}
	next := ""
	if k != nil {
		next = string(k)
	}
	// After the walk: bbolt forbids changing a bucket its cursor is on.
	for i := range batch {
		if err := fn(batch[i].k, &batch[i].d); err != nil {
			return "", err
		}
	}
	return next, nil
}

func (r webhookRows) PurgeDeliveries(cutoff time.Time, from string, max int) (int, string, error) {
	n := 0
	next, err := r.walk(from, max, func(k []byte, d *webhooks.Delivery) error {
		if d.Status.Scheduled() || !d.UpdatedAt.Before(cutoff) {
			return nil
		}
		n++
		if err := r.bucket(store.BucketWebhookDead).Delete(k); err != nil {
			return err
		}
		return r.bucket(store.BucketWebhookDeliveries).Delete(k)
	})
	return n, next, err
}

func (r webhookRows) Mentioning(addr, from string, max int) ([]webhooks.Delivery, string, error) {
	var out []webhooks.Delivery
	rows := r.bucket(store.BucketWebhookDeliveries)
	next, err := r.walk(from, max, func(k []byte, d *webhooks.Delivery) error {
		if events.ContainsFold(rows.Get(k), addr) {
			out = append(out, *d)
		}
		return nil
	})
	return out, next, err
}

func (r webhookRows) Due(now time.Time, limit int, skip func(webhooks.Job) bool) ([]webhooks.Job, time.Time, error) {
	var jobs []webhooks.Job
	c := r.bucket(store.BucketWebhookSchedule).Cursor()
	scanned := 0
	for k, _ := c.First(); k != nil && scanned < 4*limit+1024; k, _ = c.Next() {
		scanned++
		j, ok := parseSched(k)
		if !ok {
			continue
		}
		if j.Due.After(now) {
			var next time.Time
			if !j.Due.Equal(webhooks.Hold) {
				next = j.Due
			}
			return jobs, next, nil
		}
		if skip != nil && skip(j) {
			continue
		}
		if len(jobs) == limit {
			break
		}
		jobs = append(jobs, j)
	}
	return jobs, time.Time{}, nil
}

func (r webhookRows) Jobs(tenant, endpoint string) ([]webhooks.Job, error) {
	var out []webhooks.Job
	c := r.bucket(store.BucketWebhookSchedule).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if j, ok := parseSched(k); ok && j.Tenant == tenant && j.Endpoint == endpoint {
			out = append(out, j)
		}
	}
	return out, nil
}

func (r webhookRows) Held(tenant, endpoint string, limit int) ([]webhooks.Job, error) {
	var out []webhooks.Job
	pfx := binary.BigEndian.AppendUint64(nil, uint64(webhooks.Hold.UnixNano()))
	pfx = append(pfx, epPrefix(tenant, endpoint)...)
	c := r.bucket(store.BucketWebhookSchedule).Cursor()
	for k, _ := c.Seek(pfx); k != nil && bytes.HasPrefix(k, pfx) && len(out) < limit; k, _ = c.Next() {
		if j, ok := parseSched(k); ok {
			out = append(out, j)
		}
	}
	return out, nil
}

func (r webhookRows) CountScheduled() (int, error) {
	return r.bucket(store.BucketWebhookSchedule).Stats().KeyN, nil
}
