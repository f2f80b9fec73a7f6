package smtpd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/netlimit"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/testclock"
	"github.com/heedmail/heed/internal/unread"
)

// inboundEnv is the inbound listener on loopback with a real bbolt file,
// its reports/unread under t.TempDir() and a clock of the test's.
type inboundEnv struct {
	t      *testing.T
	in     *Inbound
	addr   string
	unread string
	store  *unread.Store
	db     *store.DB
	clock  *testclock.Clock
}

func startInbound(t *testing.T, edit func(*InboundOptions)) *inboundEnv {
	t.Helper()
	return startInboundKeeping(t, nil, edit)
}

// startInboundKeeping is startInbound with reports/unread's options
// changed by keep (when not nil).
func startInboundKeeping(t *testing.T, keep func(*unread.Options), edit func(*InboundOptions)) *inboundEnv {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "heed.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := testclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	o := InboundOptions{
		Hostname: "relay.test", MailtoDomain: "unsubscribe.relay.test",
		VERP:     queue.VERP{Domain: "bounces.relay.test", Key: bytes.Repeat([]byte{5}, 32)},
		Messages: boltdb.Queue(db), Suppressions: boltdb.Suppressions(db, bytes.Repeat([]byte{4}, 32), time.Now),
		Events: boltdb.Events(db), ReadTimeout: 10 * time.Second, Now: clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	uo := unread.Options{Dir: filepath.Join(dir, "reports", "unread"), Now: clock.Now, Logger: o.Logger}
	if keep != nil {
		keep(&uo)
	}
	o.Unread = unread.New(uo)
	if edit != nil {
		edit(&o)
	}
	in := NewInbound(o)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go in.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		in.Shutdown(ctx)
	})
	return &inboundEnv{t: t, in: in, addr: l.Addr().String(), unread: uo.Dir, store: o.Unread, db: db, clock: clock}
}

// dial connects from local (an address on the loopback interface) and
// says EHLO as a mail system would.
func (e *inboundEnv) dial(local string) *smtp.Client {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c := smtp.NewClient(nc)
	e.t.Cleanup(func() { c.Close() })
	if err := c.Hello("mx.example.net"); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// unreadable is a report Heed cannot read, of about size bytes, that
// says which one it is in its Subject.
func unreadable(n, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: someone@mx.example.net\r\nSubject: unreadable report %d\r\n\r\n", n)
	for b.Len() < size {
		b.WriteString("nothing here a parser of delivery or feedback reports could use, line after line\r\n")
	}
	return b.String()
}

// sendReport sends msg from <> to the feedback-loop address.
func sendReport(c *smtp.Client, msg string) error {
	return send(c, "", []string{"fbl@bounces.relay.test"}, msg)
}

// kept returns the contents of the reports in reports/unread and the
// total size of its files (the reports' records included).
func (e *inboundEnv) kept() ([]string, int64) {
	e.t.Helper()
	entries, err := os.ReadDir(e.unread)
	if err != nil {
		e.t.Fatal(err)
	}
	var files []string
	var total int64
	for _, en := range entries {
		b, err := os.ReadFile(filepath.Join(e.unread, en.Name()))
		if err != nil {
			e.t.Fatal(err)
		}
		total += int64(len(b))
		if strings.HasSuffix(en.Name(), ".eml") {
			files = append(files, string(b))
		}
	}
	return files, total
}

// holding reports whether one of files is report n.
func holding(files []string, n int) bool {
	for _, f := range files {
		if strings.Contains(f, fmt.Sprintf("Subject: unreadable report %d\r\n", n)) {
			return true
		}
	}
	return false
}

// TestUnreadReportsBounded: anyone can send unreadable reports to fbl@,
// and each is kept, but reports/unread never holds more than its byte
// quota or file cap. Past either, the oldest kept report is deleted and
// the newest is kept; each file keeps the report's start, marked.
func TestUnreadReportsBounded(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		const quota, keep = 200 << 10, 64 << 10
		e := startInboundKeeping(t, func(o *unread.Options) { o.MaxBytes, o.KeepBytes = quota, keep }, nil)
		c := e.dial("127.0.0.1")
		const reports = 12
		for n := 1; n <= reports; n++ {
			if err := sendReport(c, unreadable(n, 300<<10)); err != nil {
				t.Fatalf("report %d: %v", n, err)
			}
			if _, total := e.kept(); total > quota {
				t.Fatalf("after report %d reports/unread holds %d bytes, over its quota of %d", n, total, quota)
			}
		}
		files, _ := e.kept()
		if !holding(files, reports) {
			t.Errorf("the newest report is not kept")
		}
		if holding(files, 1) {
			t.Errorf("the oldest report is still kept past the quota")
		}
		for _, f := range files {
			if len(f) > keep || !strings.HasPrefix(f, "X-Heed-Truncated: the report had ") || !strings.HasSuffix(f, "\r\n") {
				t.Errorf("a kept report of %d bytes starts %q", len(f), f[:min(len(f), 80)])
			}
		}
	})
	t.Run("files", func(t *testing.T) {
		e := startInboundKeeping(t, func(o *unread.Options) { o.MaxFiles = 3 }, nil)
		c := e.dial("127.0.0.1")
		for n := 1; n <= 7; n++ {
			if err := sendReport(c, unreadable(n, 1000)); err != nil {
				t.Fatalf("report %d: %v", n, err)
			}
		}
		files, _ := e.kept()
		if len(files) != 3 || !holding(files, 5) || !holding(files, 6) || !holding(files, 7) {
			t.Errorf("kept %d files, want the newest three (5, 6, 7)", len(files))
		}
		if strings.HasPrefix(files[0], "X-Heed-Truncated") {
			t.Errorf("a report that fits was marked truncated")
		}
	})
}

// TestUnreadReportsRetention: a retention pass deletes the unread reports
// kept longer than the retention period, and only those.
func TestUnreadReportsRetention(t *testing.T) {
	e := startInboundKeeping(t, func(o *unread.Options) { o.Retention = 30 * 24 * time.Hour }, nil)
	c := e.dial("127.0.0.1")
	for n := 1; n <= 2; n++ {
		if err := sendReport(c, unreadable(n, 500)); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Add(20 * 24 * time.Hour)
	if err := sendReport(c, unreadable(3, 500)); err != nil {
		t.Fatal(err)
	}
	if n, err := e.store.Purge(); err != nil || n != 0 {
		t.Fatalf("a pass at 20 days deleted %d (%v), want none", n, err)
	}
	e.clock.Add(11 * 24 * time.Hour) // 31 days after the first two
	if n, err := e.store.Purge(); err != nil || n != 2 {
		t.Fatalf("a pass at 31 days deleted %d (%v), want the 2 older reports", n, err)
	}
	if files, _ := e.kept(); len(files) != 1 || !holding(files, 3) {
		t.Fatalf("kept %d files after the pass, want report 3 only", len(files))
	}
	e.clock.Add(20 * 24 * time.Hour)
	if n, err := e.store.Purge(); err != nil || n != 1 {
		t.Fatalf("the last pass deleted %d (%v), want 1", n, err)
	}
}

// TestInboundRateLimit: one client address sending more messages a
// minute than the limit is told to try again later (450 4.7.1), while
// another address is served; a minute later the first is served again.
func TestInboundRateLimit(t *testing.T) {
	const limit = 3
	e := startInbound(t, func(o *InboundOptions) { o.MaxMessagesPerMinute = limit })
	flood := e.dial("127.0.0.1")
	for n := 1; n <= limit; n++ {
		if err := sendReport(flood, unreadable(n, 500)); err != nil {
			t.Fatalf("message %d of the limit: %v", n, err)
		}
	}
	se := wantCode(t, sendReport(flood, unreadable(limit+1, 500)), 450, "4.7.1")
	if !strings.Contains(se.Message, fmt.Sprintf("at most %d messages a minute", limit)) || !strings.Contains(se.Message, "try again later") {
		t.Errorf("the refusal %q does not say what the limit is and to retry", se.Message)
	}
	// A new connection from the same address is no way round it.
	wantCode(t, sendReport(e.dial("127.0.0.1"), unreadable(limit+2, 500)), 450, "4.7.1")
	if err := sendReport(e.dial("127.0.0.2"), unreadable(100, 500)); err != nil {
		t.Fatalf("another client address was refused: %v", err)
	}
	e.clock.Add(time.Minute)
	flood.Reset()
	if err := sendReport(flood, unreadable(limit+3, 500)); err != nil {
		t.Fatalf("a minute later: %v", err)
	}
	if files, _ := e.kept(); len(files) != limit+2 {
		t.Errorf("%d reports kept, want the %d accepted", len(files), limit+2)
	}
}

// TestClientNet: an IPv6 client is counted by its /64, an IPv4 one (also
// when mapped into IPv6) by its address.
func TestClientNet(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
		{"192.0.2.1", "::ffff:192.0.2.1"},
	} {
		if netlimit.Client(netip.MustParseAddr(tc.a)) != netlimit.Client(netip.MustParseAddr(tc.b)) {
			t.Errorf("%s and %s counted apart", tc.a, tc.b)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
		{"192.0.2.1", "192.0.2.2"},
	} {
		if netlimit.Client(netip.MustParseAddr(tc.a)) == netlimit.Client(netip.MustParseAddr(tc.b)) {
			t.Errorf("%s and %s counted together", tc.a, tc.b)
		}
	}
}

// strangerARF is a complaint Heed can read that names no message it sent:
// its quoted copy's return path is no VERP address of Heed's.
const strangerARF = "From: fbl@isp.example\r\nTo: fbl@bounces.relay.test\r\nSubject: complaint\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n" +
	"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: isp/1.0\r\nVersion: 1\r\n\r\n" +
	"--b\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <someone@elsewhere.example>\r\nFrom: a@elsewhere.example\r\nSubject: hi\r\n\r\nhello\r\n" +
	"--b--\r\n"

// TestOneMessageKeptOnce: a message to the feedback-loop addresses a
// hundred times over is one report, kept once: the rate limit counts
// messages, so a report multiplied by its recipients would pass it a
// hundredfold and flush reports/unread in a few messages.
func TestOneMessageKeptOnce(t *testing.T) {
	e := startInbound(t, nil)
	c := e.dial("127.0.0.1")
	var rcpts []string
	for i := range 100 {
		rcpts = append(rcpts, []string{"fbl@bounces.relay.test", "abuse@bounces.relay.test", "FBL@bounces.relay.test"}[i%3])
	}
	if err := send(c, "", rcpts, strangerARF); err != nil {
		t.Fatal(err)
	}
	if files, _ := e.kept(); len(files) != 1 {
		t.Errorf("one report to %d feedback-loop recipients was kept %d times, want once", len(rcpts), len(files))
	}
}
