package smtpd

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/suppression"
)

// FuzzInbound feeds arbitrary client bytes to the real inbound listener
// and checks every reply line, and that nothing is recorded except an
// opt-out for the one message Heed did send.
func FuzzInbound(f *testing.F) {
	keys := suppression.NewKeyring(1, map[byte][]byte{1: bytes.Repeat([]byte{3}, 32)})
	const msgID = "06h0gd3bwgtkbhpsme5znxkwag"
	valid := keys.MailtoLocal(msgID, 0) + "@unsubscribe.relay.test"
	for _, s := range []string{
		"EHLO mx.example.net\r\nMAIL FROM:<>\r\nRCPT TO:<" + valid + ">\r\nDATA\r\nSubject: unsubscribe\r\n\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<x@example.net>\r\nRCPT TO:<y@example.org>\r\nRCPT TO:<u-x-0-aaaa@unsubscribe.relay.test>\r\nQUIT\r\n",
		"HELO a\r\nAUTH PLAIN AGEAYg==\r\nSTARTTLS\r\nVRFY x\r\nRSET\r\n",
		"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<" + strings.ToUpper(valid) + ">\r\nBDAT 3 LAST\r\nabc",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	db, err := store.Open(filepath.Join(dir, "heed.db"), store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	qs := boltdb.Queue(db)
	now := time.Now()
	if err := qs.Add(context.Background(), &queue.Message{ID: msgID, Tenant: "acme", List: "marketing", ReceivedAt: now,
		Body: []byte("x"), Recipients: []queue.Recipient{{Index: 0, Address: "pat@example.net"}}}); err != nil {
		f.Fatal(err)
	}
	sup := boltdb.Suppressions(db, bytes.Repeat([]byte{4}, 32), time.Now)
	in := NewInbound(InboundOptions{
		Hostname: "relay.test", MailtoDomain: "unsubscribe.relay.test", Tokens: keys, Messages: qs, Suppressions: sup,
		MaxMessageBytes: 4096, ReadTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxMessagesPerMinute: -1, // the fuzzer sends far more than a minute's worth
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go in.Serve(l)
	defer in.Shutdown(context.Background())

	f.Fuzz(func(t *testing.T, data []byte) {
		dialogue(t, l.Addr().String(), data)
		for _, tn := range []string{"acme", ""} {
			es, _, _ := sup.List(context.Background(), tn, "", "", 10)
			for _, e := range es {
				if e.Tenant != "acme" || e.Address != "pat@example.net" || e.List != "marketing" || e.Channel != "mailto" {
					t.Fatalf("recorded %+v", e)
				}
			}
		}
	})
}
