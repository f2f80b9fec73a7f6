package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestMappedIPCredential: an ip credential given in its IPv4-mapped IPv6
// spelling lets the IPv4 client it names send without AUTH, as the API
// showed it would (the network is stored as the IPv4 one).
func TestMappedIPCredential(t *testing.T) {
	e := startRelay(t)
	e.tenantSetup()
	var cred struct{ CIDR string }
	e.api("POST", "/api/v1/tenants/acme/credentials", map[string]string{"kind": "ip", "cidr": "::ffff:127.0.0.1"}, http.StatusCreated, &cred)
	if cred.CIDR != "127.0.0.1/32" {
		t.Errorf("cidr %q, want 127.0.0.1/32", cred.CIDR)
	}
	c, err := smtp.Dial(e.r.SubmissionAddr()) // from 127.0.0.1, no AUTH
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.ReplaceAll(reminderMsg, "\n", "\r\n")
	if err := c.SendMail("frontdesk@acme.test", []string{"pat@example.net"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("mail from the credential's network: %v", err)
	}
	got := e.sink.Wait(t, 1, 20*time.Second)
	if !strings.Contains(string(got[0].Data), "DKIM-Signature:") {
		t.Error("the message was not signed as the tenant's")
	}
}
