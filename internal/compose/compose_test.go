package compose

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func render(t *testing.T, msg string) string {
	t.Helper()
	var b bytes.Buffer
	err := Render(&b, []byte(msg), Input{
		MessageID: "06h0abc", Hostname: "relay.test", ReceivedAt: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC),
		Helo: "app.test", ClientAddr: "192.0.2.1", TLS: true, Auth: true, Recipient: "pat@example.net",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRenderKeepsAppBytes(t *testing.T) {
	in := "From: a@acme.test\r\nX-Heed-List: marketing\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n folded\r\n" +
		"Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <m@acme.test>\r\nx-heed-other: y\r\n\r\nbody\r\n"
	out := render(t, in)
	want := "Received: from app.test (192.0.2.1) by relay.test (Heed) with ESMTPSA id\r\n 06h0abc for <pat@example.net>; Mon, 23 Nov 2026 09:00:00 +0000\r\n" +
		"From: a@acme.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n folded\r\nDate: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <m@acme.test>\r\n\r\nbody\r\n"
	if out != want {
		t.Errorf("got\n%q\nwant\n%q", out, want)
	}
}

func TestRenderAddsMissingDateAndMessageID(t *testing.T) {
	out := render(t, "From: a@acme.test\r\n\r\nbody\r\n")
	for _, want := range []string{"Date: Mon, 23 Nov 2026 09:00:00 +0000\r\n", "Message-ID: <06h0abc@relay.test>\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered message lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(out, "\r\n\r\nbody\r\n") {
		t.Errorf("body changed: %q", out)
	}
}
