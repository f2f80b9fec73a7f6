package main

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/heedproc"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/server"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	heedproc.Cleanup()
	os.Exit(code)
}

// copyFixture is a stopped bbolt relay's data directory built through the
// real stores, and what the test expects to find after a copy.
type copyFixture struct {
	from, to  string // config files
	serverKey []byte
	addrs     map[string][]string // tenant → suppressed addresses
	bigID     string              // a queued message whose body is a spool file
	bigBody   []byte
	lastEvent uint64
	cursors   map[string]uint64 // tenant/endpoint → cursor
}

func hashKeyOf(t *testing.T, serverKey []byte) []byte {
	k, err := hkdf.Key(sha256.New, serverKey, nil, "heed suppression address hash v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCopyFixture(t *testing.T) *copyFixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	f := &copyFixture{addrs: map[string][]string{}, cursors: map[string]uint64{}}
	src, dst := filepath.Join(dir, "bolt-data"), filepath.Join(dir, "pg-data")
	f.serverKey = make([]byte, 32)
	rand.Read(f.serverKey)
	os.MkdirAll(filepath.Join(src, "keys"), 0o700)
	os.WriteFile(filepath.Join(src, "keys", "server.key"), f.serverKey, 0o600)
	// The opt-out links' key, made as a starting bbolt relay makes it.
	if _, err := suppression.LoadKeyring(filepath.Join(src, "keys", "unsubscribe")); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(src, "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	f.from = filepath.Join(dir, "from.yaml")
	const common = "hostname: relay.example.com\nadmin: { tokens: [\"copy-test-operator-token-0123456789\"] }\ndelivery: { mode: capture }\n"
	os.WriteFile(f.from, []byte(common+"data_dir: "+src+"\n"), 0o600)
	f.to = filepath.Join(dir, "to.yaml")
	os.WriteFile(f.to, []byte(fmt.Sprintf(common+"data_dir: %s\nstorage:\n  driver: postgres\n  postgres:\n    dsn: %q\n", dst, pgtest.DSN(t))), 0o600)

	cfg, err := config.Load(f.from)
	if err != nil {
		t.Fatal(err)
	}
	d, err := server.OpenData(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b := boltdb.New(d.DB)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	sup := boltdb.Suppressions(d.DB, hashKeyOf(t, f.serverKey), func() time.Time { return now })
	for _, tn := range []string{"acme", "globex", "initech"} {
		if err := d.Tenants.CreateTenant(ctx, tenant.Tenant{ID: tn, Name: tn, PostalAddress: "1 Main St"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Tenants.CreateDomain(ctx, tn, tn+".example"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Tenants.CreatePassword(ctx, tn, ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Tenants.CreateAPIKey(ctx, tn, "read-write", "ci"); err != nil {
			t.Fatal(err)
		}
		// More than a copy batch for acme, so that pages meet.
		n := map[string]int{"acme": copyBatch + 250, "globex": 40, "initech": 3}[tn]
		for i := range n {
			a := fmt.Sprintf("reader-%d@%s.net", i, tn)
			e := suppression.Entry{Tenant: tn, Address: a, List: "marketing", Reason: suppression.Unsubscribe, Channel: "one-click"}
			if i%2 == 0 {
				e.List, e.Link = suppression.All, "marketing" // opted out of everything through a link
			}
			if _, err := sup.Add(ctx, e); err != nil {
				t.Fatal(err)
			}
			f.addrs[tn] = append(f.addrs[tn], a)
		}
	}
	ev := []suppression.SoftBounce{{MessageID: "m1", Reason: "mailbox-full", Time: now.Add(-48 * time.Hour)}}
	if _, err := sup.Add(ctx, suppression.Entry{Tenant: "globex", Address: "full@globex.net", List: suppression.All, Reason: suppression.Bounce, Channel: "dsn", Evidence: &ev}); err != nil {
		t.Fatal(err)
	}
	f.addrs["globex"] = append(f.addrs["globex"], "full@globex.net")
	seedHistories(t, b, now)
	f.bigID, f.bigBody = seedQueue(t, d.DB, src, now)
	seedWebhooks(t, d.DB, f)
	if err := boltdb.Audit(d.DB).Append(ctx, &audit.Record{Time: now, Actor: "operator:0123abcd", Action: "POST /api/v1/tenants", Target: "/api/v1/tenants"}); err != nil {
		t.Fatal(err)
	}
	if err := b.View(ctx, func(tx backend.Tx) (err error) { f.lastEvent, err = tx.Events().Last(); return err }); err != nil {
		t.Fatal(err)
	}
	return f
}

// seedHistories writes soft-bounce histories for addresses on no list.
func seedHistories(t *testing.T, b *boltdb.Backend, now time.Time) {
	err := b.Update(context.Background(), func(tx backend.Tx) error {
		for i := range 3 {
			h := suppression.Hash{byte(i + 1), 7}
			hist := suppression.History{Tenant: "acme", Updated: now, Bounces: []suppression.SoftBounce{{MessageID: fmt.Sprint("m", i), Reason: "mailbox-full", Time: now}}}
			if err := tx.Suppressions().PutHistory(h, hist); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// seedQueue accepts three messages: one waiting (its body over 64 KiB in
// a spool file), one delivered, one with a recipient suppressed at
// accept time and another deferred.
func seedQueue(t *testing.T, db *store.DB, dataDir string, now time.Time) (string, []byte) {
	ctx := context.Background()
	spool, err := queue.OpenSpool(filepath.Join(dataDir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	q := boltdb.Queue(db).WithSpool(spool)
	big := bytes.Repeat([]byte("Subject: big\r\n\r\nline of a long newsletter\r\n"), 4000)
	w, err := spool.Create("msg-big")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(big)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	msgs := []*queue.Message{
		{ID: "msg-big", Tenant: "acme", List: "marketing", From: "news@acme.example", ReceivedAt: now,
			Recipients: []queue.Recipient{{Index: 0, Address: "a@dest.example"}, {Index: 1, Address: "b@dest.example"}}},
		{ID: "msg-small", Tenant: "globex", List: "transactional", From: "app@globex.example", ReceivedAt: now, Body: []byte("Subject: hi\r\n\r\nhello\r\n"),
			Recipients: []queue.Recipient{{Index: 0, Address: "c@dest.example"}, {Index: 1, Address: "d@dest.example", State: queue.Suppressed, Reason: "unsubscribe"}}},
	}
	for _, m := range msgs {
		if err := q.Add(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// c@ was delivered; b@ deferred for an hour.
	if _, err := q.Record(ctx, queue.Job{MessageID: "msg-small", Index: 0, Domain: "dest.example", Due: now}, queue.Outcome{State: queue.Delivered, Reply: "250 ok", At: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Record(ctx, queue.Job{MessageID: "msg-big", Index: 1, Domain: "dest.example", Due: now}, queue.Outcome{State: queue.Deferred, Reply: "451 later", NextAttempt: now.Add(time.Hour), At: now}); err != nil {
		t.Fatal(err)
	}
	return "msg-big", big
}

// seedWebhooks makes an endpoint per tenant, moves acme's cursor and
// gives it a delivery waiting for a retry and a dead letter.
func seedWebhooks(t *testing.T, db *store.DB, f *copyFixture) {
	ctx := context.Background()
	hooks := boltdb.Webhooks(db)
	for _, tn := range []string{"acme", "globex"} {
		ep := &webhooks.Endpoint{Tenant: tn, ID: "ep_" + tn, URL: "https://hooks." + tn + ".example/heed", State: webhooks.Active,
			Secrets: []webhooks.SealedSecret{{Sealed: []byte("sealed-" + tn)}}}
		if err := hooks.CreateEndpoint(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	err := boltdb.New(db).Update(ctx, func(tx backend.Tx) error {
		rows := tx.Webhooks()
		ep, _, err := rows.Endpoint("acme", "ep_acme")
		if err != nil {
			return err
		}
		ep.Cursor = 5
		if err := rows.PutEndpoint(&ep); err != nil {
			return err
		}
		at := time.Date(2025, 3, 1, 13, 0, 0, 0, time.UTC)
		for _, d := range []webhooks.Delivery{
			{Tenant: "acme", Endpoint: "ep_acme", Seq: 3, EventID: "evt_3", Type: events.MessageAccepted, Status: webhooks.Retrying, Retries: 2, NextAttempt: at, UpdatedAt: at},
			{Tenant: "acme", Endpoint: "ep_acme", Seq: 4, EventID: "evt_4", Type: events.MessageAccepted, Status: webhooks.Failed, Retries: 9, UpdatedAt: at},
		} {
			if err := rows.PutDelivery(&d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.cursors["acme/ep_acme"] = 5
}

func runCopy(t *testing.T, f *copyFixture) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run([]string{"storage", "copy", "-from", f.from, "-to", f.to}, &out, &errb)
	return code, out.String(), errb.String()
}

// TestStorageCopy: every store of a bbolt data directory, copied into an
// empty PostgreSQL database, reads back the same through the PostgreSQL
// backend: each opt-out gives the same verdict, the waiting message is
// due with its spooled body, the webhook cursors and the event numbers
// go on where they were, DKIM keys open under the carried server key.
func TestStorageCopy(t *testing.T) {
	ctx := context.Background()
	f := newCopyFixture(t)
	code, out, errOut := runCopy(t, f)
	if code != 0 {
		t.Fatalf("storage copy exited %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "every count matches") || strings.Contains(out, "MISMATCH") {
		t.Fatalf("storage copy's report:\n%s", out)
	}
	to, _ := config.Load(f.to)
	pg, err := postgres.Open(ctx, postgres.Config{DSN: to.Storage.Postgres.DSN})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	// The relay on PostgreSQL reads the bbolt relay's keys: hashes, seals
	// and the links in mail already sent keep working.
	key, tokens, err := server.PostgresSecrets(ctx, pg)
	if err != nil || !bytes.Equal(key, f.serverKey) {
		t.Fatalf("the server key in server_secrets: %v (same as the bbolt relay's: %v)", err, bytes.Equal(key, f.serverKey))
	}
	from0, _ := config.Load(f.from)
	boltTokens, err := suppression.LoadKeyring(filepath.Join(from0.DataDir, "keys", "unsubscribe"))
	if err != nil {
		t.Fatal(err)
	}
	link := suppression.Target{Tenant: "acme", List: "news", Address: "reader@example.net"}
	if got, err := tokens.Parse(boltTokens.Token(link)); err != nil || got != link {
		t.Fatalf("an opt-out link made on bbolt, opened on PostgreSQL: %+v, %v", got, err)
	}
	b := pg.Backend()

	from, _ := config.Load(f.from)
	d, err := server.OpenData(from)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	now := func() time.Time { return time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC) }
	pgSup := postgres.Suppressions(b, hashKeyOf(t, f.serverKey), now)
	for tn, addrs := range f.addrs {
		for _, a := range append(addrs, "never-opted-out@"+tn+".net") {
			want, wok, err := suppression.Check(ctx, d.Suppressions, tn, "marketing", "marketing", a)
			if err != nil {
				t.Fatal(err)
			}
			got, gok, err := suppression.Check(ctx, pgSup, tn, "marketing", "marketing", a)
			if err != nil {
				t.Fatal(err)
			}
			if gok != wok || got.Reason != want.Reason || got.List != want.List || got.Link != want.Link || (got.Evidence == nil) != (want.Evidence == nil) {
				t.Fatalf("%s of %s: PostgreSQL says %v %+v, bbolt %v %+v", a, tn, gok, got, wok, want)
			}
		}
	}

	// The waiting message is due on PostgreSQL, with its spooled body.
	q := postgres.Queue(b).WithSpool(queue.DatabaseSpool())
	jobs, _, err := q.Due(ctx, now(), 10, nil)
	if err != nil || len(jobs) != 1 || jobs[0].MessageID != f.bigID || jobs[0].Index != 0 {
		t.Fatalf("due on PostgreSQL: %+v, %v; want recipient 0 of %s", jobs, err, f.bigID)
	}
	m, r, err := q.Load(ctx, jobs[0])
	if err != nil || !bytes.Equal(m.Body, f.bigBody) || r.Address != "a@dest.example" {
		t.Fatalf("load: %v; body of %d bytes (want %d), recipient %q", err, len(m.Body), len(f.bigBody), r.Address)
	}
	later, _, err := q.Due(ctx, now().Add(2*time.Hour), 10, nil)
	if err != nil || len(later) != 2 {
		t.Fatalf("due in two hours: %+v, %v; want the deferred recipient too", later, err)
	}

	// Cursors, DKIM keys, and the event numbers going on.
	var ev events.Event
	err = b.Update(ctx, func(tx backend.Tx) error {
		eps, err := tx.Webhooks().Endpoints("")
		if err != nil {
			return err
		}
		for _, ep := range eps {
			if want, ok := f.cursors[ep.Tenant+"/"+ep.ID]; ok && ep.Cursor != want {
				t.Errorf("cursor of %s/%s: %d, want %d", ep.Tenant, ep.ID, ep.Cursor, want)
			}
		}
		ev = events.Event{Type: events.SuppressionAdded, Time: now(), Data: events.Data{Tenant: "acme"}}
		return events.Append(tx.Events(), &ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The number is the caller's once Update has returned.
	if ev.Seq <= f.lastEvent {
		t.Errorf("a new event on PostgreSQL took seq %d, at or below the copied %d", ev.Seq, f.lastEvent)
	}
	reg := tenant.NewRegistry(postgres.Tenants(b))
	if err := reg.SetSealKey(f.serverKey); err != nil {
		t.Fatal(err)
	}
	keys, err := reg.SigningKeys(ctx, "acme.example")
	if err != nil || len(keys) == 0 {
		t.Fatalf("signing keys of acme.example on PostgreSQL: %v, %v", keys, err)
	}
	if _, err := dkim.TXTRecord(keys[0].Signer.Public()); err != nil {
		t.Fatal(err)
	}
}

// TestStorageCopyRefuses: a second copy into the now non-empty database
// is refused naming a table, and a running Heed (the bbolt file locked)
// is refused saying to stop it; neither changes the target.
func TestStorageCopyRefuses(t *testing.T) {
	f := newCopyFixture(t)
	if code, out, errOut := runCopy(t, f); code != 0 {
		t.Fatalf("first copy exited %d\n%s%s", code, out, errOut)
	}
	code, _, errOut := runCopy(t, f)
	if code != 1 || !strings.Contains(errOut, "not empty: table ") {
		t.Fatalf("a copy into a non-empty database: exit %d, %s", code, errOut)
	}

	g := newCopyFixture(t)
	from, _ := config.Load(g.from)
	held, err := store.Open(filepath.Join(from.DataDir, "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	code, _, errOut = runCopy(t, g)
	if code != 1 || !strings.Contains(errOut, "locked") || !strings.Contains(errOut, "stop Heed") {
		t.Fatalf("a copy from a running Heed: exit %d, %s", code, errOut)
	}
	to, _ := config.Load(g.to)
	pg, err := postgres.Open(context.Background(), postgres.Config{DSN: to.Storage.Postgres.DSN})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if err := pg.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tbl, err := pg.NonEmptyTable(context.Background()); err != nil || tbl != "" {
		t.Fatalf("the refused copy wrote to %q (%v)", tbl, err)
	}
}
