package server

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/testsink"
)

// TestRegistryChangesApplyAtOnce: the tenant records every message reads
// (its list, its tenant, its From domain) are kept in memory, and a change
// made through the admin API applies to the very next message on a relay
// that has just used the old value, at submission and at delivery.
func TestRegistryChangesApplyAtOnce(t *testing.T) { eachBackend(t, testRegistryChangesApplyAtOnce) }

func testRegistryChangesApplyAtOnce(t *testing.T, backend string) {
	e := startRelayOn(t, backend, testsink.Options{}, nil)
	user, pass, _ := e.tenantSetup()
	// Warm: a reminder goes through submission and delivery.
	e.send(user, pass, []string{"pat@example.net"}, reminderMsg)
	// (A field at the start of a line: the DKIM signatures name the field
	// in h= either way.)
	hasListUnsubscribe := func(data []byte) bool { return bytes.Contains(data, []byte("\r\nList-Unsubscribe:")) }
	first := e.sink.Wait(t, 1, 20*time.Second)[0]
	if hasListUnsubscribe(first.Data) {
		t.Fatalf("a reminder on a plain transactional list carries List-Unsubscribe:\n%s", first.Data)
	}

	// The transactional list is made to carry List-Unsubscribe: the next
	// reminder has it.
	e.api("PUT", "/api/v1/tenants/acme/lists/transactional",
		map[string]any{"name": "Transactional", "kind": "transactional", "unsubscribe": true}, http.StatusOK, nil)
	e.send(user, pass, []string{"pat@example.net"}, reminderMsg)
	second := e.sink.Wait(t, 2, 20*time.Second)[1]
	if !hasListUnsubscribe(second.Data) {
		t.Fatalf("the list now asks for List-Unsubscribe, the next reminder has none:\n%s", second.Data)
	}

	// The domain is removed: the next message from it is refused.
	e.api("DELETE", "/api/v1/tenants/acme/domains/acme.test", nil, http.StatusNoContent, nil)
	if err := e.refusal(user, pass, reminderMsg); err == nil || err.Code != 550 || err.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(err.Message, "acme.test") {
		t.Fatalf("a message from a removed domain: got %v, want 550 5.7.1 naming acme.test", err)
	}
}
