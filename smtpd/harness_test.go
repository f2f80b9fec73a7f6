package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	b64 "encoding/base64"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/testsink"
)

// harness is a whole relay in one test: the submission listener on
// loopback, a real bbolt file and spool under t.TempDir(), the real queue
// and outbound transport routing every recipient domain used here to a
// testsink.
type harness struct {
	t     *testing.T
	addr  string
	sub   *Submission
	reg   *tenant.Registry
	db    *store.DB
	sink  *testsink.Sink
	spool *queue.Spool
	user  string // acme's password credential
	pass  string
	user2 string // other's
	pass2 string
	roots *tls.Config
}

type harnessOpt func(*SubmissionOptions)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	return newHarnessOn(t, "bbolt", opts...)
}

// tenantBackends are the backends a harness may keep its tenants in
// (newHarnessOn): what the session looks up by what a client sent must
// answer alike on both.
var tenantBackends = []string{"bbolt", "postgres"}

// newHarnessOn is newHarness with the tenant registry on the backend
// named: "bbolt" (the harness's database) or "postgres" (a fresh
// database of the test binary's throwaway PostgreSQL, pgtest).
func newHarnessOn(t *testing.T, backend string, opts ...harnessOpt) *harness {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Check(db.Bolt()); err != nil {
			t.Errorf("database inconsistent after test: %v", err)
		}
		db.Close()
	})
	spool, err := queue.OpenSpool(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	sink := testsink.Start(t, testsink.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr, err := outbound.New(outbound.Options{
		Mode: "mx", Hostname: "relay.test", Logger: log,
		Routes: map[string]string{"example.net": sink.Addr(), "example.org": sink.Addr()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	q := queue.New(queue.Options{
		Store: boltdb.Queue(db), Spool: spool, Transport: tr,
		VERP:     queue.VERP{Domain: "bounces.relay.test", Key: []byte("0123456789abcdef0123456789abcdef")},
		Hostname: "relay.test", Logger: log,
	})
	q.Start()
	t.Cleanup(func() { q.Stop(context.Background()) })

	var tenants tenant.Store = boltdb.Tenants(db)
	if backend == "postgres" {
		tenants = postgres.Tenants(backendtest.OpenPostgres(t, 0).Backend())
	}
	h := &harness{t: t, db: db, sink: sink, spool: spool, reg: tenant.NewRegistry(tenants)}
	h.setupTenants()
	serverTLS, pool := testsink.SelfSigned(t, "relay.test")
	h.roots = &tls.Config{RootCAs: pool, ServerName: "relay.test"}
	o := SubmissionOptions{
		Hostname: "relay.test", Tenants: h.reg, Queue: q, Spool: spool, TLS: serverTLS,
		MaxMessageBytes: 64 << 10, MaxRecipients: 5, MaxConnections: 50,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, Logger: log,
	}
	for _, f := range opts {
		f(&o)
	}
	h.sub = NewSubmission(o)
	h.addr = h.serve(h.sub.Serve)
	return h
}

// serve runs one of the Submission's Serve methods on a fresh loopback
// listener and returns its address.
func (h *harness) serve(fn func(net.Listener) error) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	go fn(l)
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.sub.Shutdown(ctx)
	})
	return l.Addr().String()
}

func (h *harness) setupTenants() {
	ctx := context.Background()
	now := time.Now()
	for _, tn := range []struct{ id, domain string }{{"acme", "acme.test"}, {"other", "other.test"}} {
		if err := h.reg.CreateTenant(ctx, tenant.Tenant{ID: tn.id, Name: tn.id, PostalAddress: "1 Main St", CreatedAt: now}); err != nil {
			h.t.Fatal(err)
		}
		if err := h.reg.AddDomain(ctx, tenant.Domain{Name: tn.domain, Tenant: tn.id, CreatedAt: now}); err != nil {
			h.t.Fatal(err)
		}
	}
	c, p, err := h.reg.CreatePassword(ctx, "acme", "")
	if err != nil {
		h.t.Fatal(err)
	}
	h.user, h.pass = c.Username, p
	c, p, err = h.reg.CreatePassword(ctx, "other", "")
	if err != nil {
		h.t.Fatal(err)
	}
	h.user2, h.pass2 = c.Username, p
}

// dial returns a go-smtp client that has said EHLO.
func (h *harness) dial() *smtp.Client {
	h.t.Helper()
	c, err := smtp.Dial(h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if err := c.Hello("app.test"); err != nil {
		h.t.Fatal(err)
	}
	return c
}

// login returns a client authenticated as acme.
func (h *harness) login() *smtp.Client {
	h.t.Helper()
	c := h.dial()
	if err := c.Auth(sasl.NewPlainClient("", h.user, h.pass)); err != nil {
		h.t.Fatal(err)
	}
	return c
}

// send runs one transaction and returns the first error.
func send(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	return w.Close()
}

// wantCode fails unless err is an SMTP reply with code and enhanced code.
func wantCode(t *testing.T, err error, code int, enh string) *smtp.SMTPError {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want an SMTP %d %s reply", err, code, enh)
	}
	got := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.Code != code || got != enh {
		t.Fatalf("got %d %s %q, want %d %s", se.Code, got, se.Message, code, enh)
	}
	return se
}

// accepted counts message.accepted events of a tenant: what was queued.
func (h *harness) accepted(tenantID string) int {
	evs, err := boltdb.Events(h.db).Events(context.Background(), tenantID, 0, 10000)
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == events.MessageAccepted {
			n++
		}
	}
	return n
}

// rawConn is a hand-driven SMTP connection for dialogues go-smtp's client
// will not produce.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (h *harness) raw() *rawConn {
	c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawConn{t: h.t, c: c, r: bufio.NewReader(c)}
	rc.expect("220")
	return rc
}

func (rc *rawConn) write(s string) {
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (rc *rawConn) reply() string {
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			rc.t.Fatalf("reading a reply: %v (got %q)", err, line)
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func (rc *rawConn) expect(prefix string) string {
	rc.t.Helper()
	line := rc.reply()
	if !strings.HasPrefix(line, prefix) {
		rc.t.Fatalf("got reply %q, want %s", line, prefix)
	}
	return line
}

func plainIR(user, pass string) string {
	ir := "\x00" + user + "\x00" + pass
	return base64Std(ir)
}

func base64Std(s string) string { return b64.StdEncoding.EncodeToString([]byte(s)) }
