package testsink

import (
	"bytes"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func send(t *testing.T, c *smtp.Client, from, to, body string) error {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return err
	}
	return w.Close()
}

func TestSinkRecordsAndScripts(t *testing.T) {
	s := Start(t, Options{
		Reply: func(stage, from, rcpt string, attempt int) *smtp.SMTPError {
			if stage == StageRcpt && rcpt == "later@example.org" && attempt == 1 {
				return SMTPError(451, "4.7.1", "greylisted")
			}
			return nil
		},
	})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	body := "Subject: hi\r\n\r\n.leading dot\r\n"
	if err := send(t, c, "a@example.com", "b@example.org", body); err != nil {
		t.Fatal(err)
	}
	err = send(t, c, "a@example.com", "later@example.org", body)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
		t.Fatalf("first attempt: got %v, want 451 4.7.1", err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := send(t, c, "a@example.com", "later@example.org", body); err != nil {
		t.Fatalf("second attempt: %v", err)
	}

	msgs := s.Wait(t, 2, 5*time.Second)
	if got := string(msgs[0].Data); got != body {
		t.Errorf("data = %q, want %q", got, body)
	}
	if msgs[0].From != "a@example.com" || strings.Join(msgs[1].To, ",") != "later@example.org" {
		t.Errorf("envelopes = %+v", msgs)
	}
	if msgs[0].TLS || msgs[0].Conn != 1 || msgs[1].Conn != 1 || s.Connections() != 1 {
		t.Errorf("tls/conn = %v/%d/%d, connections %d", msgs[0].TLS, msgs[0].Conn, msgs[1].Conn, s.Connections())
	}
}

func TestSinkTLSAndAuth(t *testing.T) {
	cfg, pool := SelfSigned(t)
	s := Start(t, Options{TLS: cfg, Users: map[string]string{"app": "secret"}})

	c, err := smtp.DialStartTLS(s.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = send(t, c, "a@example.com", "b@example.org", "x\r\n")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 530 {
		t.Fatalf("unauthenticated MAIL: got %v, want 530", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "app", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := send(t, c, "a@example.com", "b@example.org", "x\r\n"); err != nil {
		t.Fatal(err)
	}
	m := s.Wait(t, 1, 5*time.Second)[0]
	if !m.TLS || m.AuthUser != "app" || !bytes.Equal(m.Data, []byte("x\r\n")) {
		t.Errorf("message = %+v", m)
	}
}

func TestSinkDiscardKeepsEnvelopes(t *testing.T) {
	s := Start(t, Options{Discard: true})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := send(t, c, "a@example.com", "b@example.org", "Subject: hi\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	m := s.Wait(t, 1, 5*time.Second)[0]
	if m.Data != nil || m.From != "a@example.com" || strings.Join(m.To, ",") != "b@example.org" {
		t.Errorf("message = %+v, want the envelope without data", m)
	}
}
