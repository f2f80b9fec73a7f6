package cluster

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// seenEverywhere is how soon the issue wants a change made on one node
// to hold on every other (issue 17, "Changes seen everywhere at once").
const seenEverywhere = time.Second

// TestRevokedCredentialRefusedEverywhere: an SMTP credential and an API
// key, each used on the second node (so that whatever it keeps of them
// is warm), are revoked through the first; within a second of the
// DELETE's answer the second node refuses them (535 5.7.8 at AUTH, 401
// on the API). A DKIM key activated through the first node signs the
// mail the second node accepts a second later.
func TestRevokedCredentialRefusedEverywhere(t *testing.T) {
	c := startCluster(t, options{nodes: 2})
	first, second := c.nodes[0], c.nodes[1]

	s := &submitter{c: c, next: 1} // pinned to the second node
	defer s.close()
	if err := s.send("before-revoke", ""); err != nil {
		t.Fatalf("the credential before its revocation, on %s: %v", second.name, err)
	}
	var key struct{ ID, Key string }
	first.api("POST", "/api/v1/tenants/acme/api-keys", map[string]string{"name": "app"}, &key)
	if got := tenantStatus(t, second, key.Key); got != http.StatusOK {
		t.Fatalf("the API key before its revocation, on %s: %d", second.name, got)
	}

	first.api("DELETE", "/api/v1/tenants/acme/credentials/"+c.credID, nil, nil)
	answered := time.Now()
	var last error
	waitFor(t, second.name+" to refuse AUTH with the revoked credential", seenEverywhere, func() bool {
		last = authOn(second, c.user, c.pass)
		return smtpCode(last) == 535
	})
	t.Logf("the revoked credential refused on %s %v after the DELETE's answer: %v", second.name, time.Since(answered).Round(time.Millisecond), last)

	first.api("DELETE", "/api/v1/tenants/acme/api-keys/"+key.ID, nil, nil)
	answered = time.Now()
	waitFor(t, second.name+" to answer 401 to the revoked API key", seenEverywhere, func() bool {
		return tenantStatus(t, second, key.Key) == http.StatusUnauthorized
	})
	t.Logf("the revoked API key refused on %s %v after the DELETE's answer", second.name, time.Since(answered).Round(time.Millisecond))

	newKeySignsEverywhere(t, c, first, second)
}

// newKeySignsEverywhere activates a new DKIM key of acme.test through
// from while messages are submitted through to. A copy is signed by the
// node that attempts it, at the attempt (docs/delivery.md), which comes
// after the message's 250: so every copy to delivers of a message it
// accepted a second after the activation's answer must carry the new
// key's signature.
func newKeySignsEverywhere(t *testing.T, c *cluster, from, to *node) {
	t.Helper()
	// A new credential: the cluster's was revoked above.
	var cred struct{ Username, Password string }
	from.api("POST", "/api/v1/tenants/acme/credentials", map[string]string{}, &cred)
	c.user, c.pass = cred.Username, cred.Password
	s := &submitter{c: c, next: 1}
	defer s.close()
	var acked ackLog
	if err := s.send("key-warm", ""); err != nil {
		t.Fatal(err)
	}
	acked.add("key-warm")
	c.waitDelivered(&acked, time.Minute) // the nodes' caches hold acme.test's keys now
	var k struct{ Selector string }
	from.api("POST", "/api/v1/tenants/acme/domains/acme.test/keys", map[string]string{"algorithm": "ed25519"}, &k)
	from.api("POST", "/api/v1/tenants/acme/domains/acme.test/keys/"+k.Selector+"/activate", map[string]bool{"force": true}, nil)
	answered := time.Now()

	late := map[string]bool{} // submitted a second or more after the answer
	deadline := answered.Add(time.Minute)
	for i := 0; ; i++ {
		id := fmt.Sprintf("key-%d", i)
		after := time.Since(answered) >= seenEverywhere
		if err := s.send(id, ""); err != nil {
			t.Fatalf("message %s on %s: %v", id, to.name, err)
		}
		acked.add(id)
		if after {
			late[id] = true
		}
		if lateAt(to, late) >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s delivered %d of the %d messages submitted a second after the activation", to.name, lateAt(to, late), len(late))
		}
	}
	c.waitDelivered(&acked, time.Minute)
	early, earlyNew := 0, 0
	for _, m := range to.sink.Messages() {
		id := strings.TrimSuffix(m.To[0], "@example.net")
		signed := strings.Contains(unfold(m.Data), "s="+k.Selector+";")
		switch {
		case late[id] && !signed:
			t.Errorf("message %s, submitted to %s a second or more after the key's activation on %s, was delivered by %s without the new key's signature", id, to.name, from.name, to.name)
		case !late[id] && id != "key-warm":
			early++
			if signed {
				earlyNew++
			}
		}
	}
	t.Logf("%s delivered %d messages submitted within the second after the key's activation on %s, %d signed with the new key; %d submitted later, all signed with it",
		to.name, early, from.name, earlyNew, len(late))
}

// lateAt counts the messages of ids at n's sink.
func lateAt(n *node, ids map[string]bool) int {
	k := 0
	for _, m := range n.sink.Messages() {
		if ids[strings.TrimSuffix(m.To[0], "@example.net")] {
			k++
		}
	}
	return k
}

// authOn opens a connection to n and authenticates with user and pass:
// nil when accepted, else the refusal.
func authOn(n *node, user, pass string) error {
	conn, err := smtp.Dial(n.smtp)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Auth(sasl.NewPlainClient("", user, pass))
}

// tenantStatus is the status of GET /api/v1/tenants/acme on n with the
// bearer token key.
func tenantStatus(t *testing.T, n *node, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+n.admin+"/api/v1/tenants/acme", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// unfold is a message's header fields unfolded (RFC 5322, section 2.2.3).
func unfold(data []byte) string {
	return strings.NewReplacer("\r\n ", " ", "\r\n\t", " ").Replace(string(data))
}
