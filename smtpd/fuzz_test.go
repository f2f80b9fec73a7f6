package smtpd

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
)

// checkingQueue stands in for the queue: it checks what the session
// accepted against the invariants and forgets it.
type checkingQueue struct {
	t     testing.TB
	spool *queue.Spool
	mu    sync.Mutex
	n     int
}

func (q *checkingQueue) Enqueue(_ context.Context, m *queue.Message) error {
	body := m.Body
	var err error
	if body == nil {
		body, err = q.spool.ReadAll(m.ID)
	}
	if err != nil {
		q.t.Errorf("accepted message has no body: %v", err)
		return err
	}
	if bytes.IndexByte(body, 0) >= 0 || bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n")) ||
		bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\r")) {
		q.t.Errorf("accepted a body with a bare CR, LF or NUL: %q", body)
	}
	if !strings.HasSuffix(m.HeaderFrom, "@acme.test") || !strings.HasSuffix(m.From, "@acme.test") || m.Tenant != "acme" {
		q.t.Errorf("accepted mail from %q / %q for tenant %q", m.From, m.HeaderFrom, m.Tenant)
	}
	q.mu.Lock()
	q.n++
	q.mu.Unlock()
	return q.spool.Remove(m.ID)
}

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// FuzzSession feeds arbitrary client bytes to the real submission listener
// (a loopback client covered by acme's ip credential, so transactions can
// complete without AUTH) and checks every reply line and every accepted
// message.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO a\r\nMAIL FROM:<x@acme.test>\r\nRCPT TO:<y@example.net>\r\nDATA\r\nFrom: x@acme.test\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<x@acme.test>\r\nRCPT TO:<y@example.net>\r\nDATA\r\nFrom: x@acme.test\r\n\r\nhi\n.\nMAIL FROM:<x@acme.test>\r\n.\r\n",
		"EHLO a\r\nAUTH PLAIN AGEAYg==\r\nAUTH LOGIN\r\neA==\r\neQ==\r\n",
		"HELO a\r\nMAIL FROM:<>\r\nRSET\r\nNOOP\r\nVRFY x\r\nSTARTTLS\r\n",
		"EHLO a\r\nMAIL FROM:<x@acme.test> SIZE=99999999999\r\nBDAT 5 LAST\r\nFrom:\r\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	db, err := store.Open(filepath.Join(dir, "heed.db"), store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	spool, _ := queue.OpenSpool(filepath.Join(dir, "spool"))
	reg := tenant.NewRegistry(boltdb.Tenants(db))
	ctx := context.Background()
	reg.CreateTenant(ctx, tenant.Tenant{ID: "acme", Name: "Acme"})
	reg.AddDomain(ctx, tenant.Domain{Name: "acme.test", Tenant: "acme"})
	if _, err := reg.CreateIP(ctx, "acme", "127.0.0.0/8", ""); err != nil {
		f.Fatal(err)
	}
	q := &checkingQueue{t: f, spool: spool}
	sub := NewSubmission(SubmissionOptions{
		Hostname: "relay.test", Tenants: reg, Queue: q, Spool: spool, MaxMessageBytes: 4096, MaxRecipients: 3,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go sub.Serve(l)
	defer sub.Shutdown(ctx)

	f.Fuzz(func(t *testing.T, in []byte) {
		q.t = t
		dialogue(t, l.Addr().String(), in)
	})
}

// dialogue sends a fuzzed client's bytes to addr, reads everything the
// server answers, and fails on a reply line that is not an SMTP reply.
func dialogue(t *testing.T, addr string, in []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
	}()
	out, _ := io.ReadAll(c)
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n") {
		if line != "" && !replyLine.MatchString(line) {
			t.Fatalf("malformed reply line %q in %q", line, out)
		}
	}
}
