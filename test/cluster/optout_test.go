package cluster

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// reader is the recipient of TestOptOutOnOneNodeStopsMailOnAnother.
const reader = "reader@example.net"

// TestOptOutOnOneNodeStopsMailOnAnother: a recipient opts out through
// the first node's one-click endpoint (RFC 8058) while a message of the
// same list to them waits for its retry; the first node is then gone,
// and the second node, making the retry, suppresses it instead of
// sending it: the opt-out is in the database every node checks at each
// attempt, not in a node's memory.
func TestOptOutOnOneNodeStopsMailOnAnother(t *testing.T) {
	// The reader's server takes the first message and defers the second
	// once; a retry would be taken, so a copy that should not go shows.
	c := startCluster(t, options{nodes: 2, reply: func(stage, _, rcpt string, attempt int) *smtp.SMTPError {
		if stage == "RCPT" && rcpt == reader && attempt == 2 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try again later"}
		}
		return nil
	}})
	first, second := c.nodes[0], c.nodes[1]
	first.api("PUT", "/api/v1/tenants/acme/lists/news", map[string]any{"name": "News", "kind": "marketing", "unsubscribe": true}, nil)

	s := &submitter{c: c}
	defer s.close()
	if err := s.sendTo(reader, newsletter("first")); err != nil {
		t.Fatal(err)
	}
	var link string
	waitFor(t, "the first newsletter at a sink", time.Minute, func() bool {
		for _, n := range c.nodes {
			for _, m := range n.sink.Messages() {
				if m.To[0] == reader {
					link = oneClickPath(t, m.Data)
					return true
				}
			}
		}
		return false
	})
	if err := s.sendTo(reader, newsletter("second")); err != nil {
		t.Fatal(err)
	}
	var deferred struct {
		Events []struct {
			Data struct {
				MessageID string `json:"message_id"`
			} `json:"data"`
		} `json:"events"`
	}
	waitFor(t, "the second newsletter deferred", time.Minute, func() bool {
		second.api("GET", "/api/v1/tenants/acme/events?type=message.deferred", nil, &deferred)
		return len(deferred.Events) > 0
	})
	id := deferred.Events[0].Data.MessageID

	resp, err := http.Post("http://"+first.public+link, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("one-click opt-out on %s: %s", first.name, resp.Status)
	}
	first.kill() // the retry is the second node's to make

	var msg struct {
		Recipients []struct {
			State     string `json:"state"`
			LastReply string `json:"last_reply"`
		} `json:"recipients"`
	}
	// The first retry comes 24 to 36 s after the deferral
	// (docs/delivery.md's schedule).
	waitFor(t, "the second newsletter's retry on "+second.name, 2*time.Minute, func() bool {
		second.api("GET", "/api/v1/messages/"+id, nil, &msg)
		return len(msg.Recipients) == 1 && msg.Recipients[0].State != "deferred"
	})
	if st := msg.Recipients[0].State; st != "suppressed" {
		t.Errorf("the second newsletter is %s (%s) after the opt-out on another node, want suppressed", st, msg.Recipients[0].LastReply)
	}
	copies := 0
	for _, n := range c.nodes {
		for _, m := range n.sink.Messages() {
			if m.To[0] == reader {
				copies++
			}
		}
	}
	if copies != 1 {
		t.Errorf("the reader got %d newsletters, want only the one sent before the opt-out", copies)
	}
}

// newsletter is a marketing message of list news to the reader.
func newsletter(subject string) string {
	return "From: hello@acme.test\r\nTo: " + reader + "\r\nSubject: " + subject + "\r\nX-Heed-List: news\r\n\r\nNews: " + subject + ".\r\n"
}

var oneClick = regexp.MustCompile(`<` + regexp.QuoteMeta(publicBase) + `(/u/[^>]+)>`)

// oneClickPath is the path of the https link in a message's
// List-Unsubscribe field, which a load balancer at publicBase would pass
// to a node's public listener.
func oneClickPath(t *testing.T, data []byte) string {
	t.Helper()
	unfolded := strings.NewReplacer("\r\n ", " ", "\r\n\t", " ").Replace(string(data))
	m := oneClick.FindStringSubmatch(unfolded)
	if m == nil {
		t.Fatalf("no one-click link in the newsletter:\n%s", data)
	}
	return m[1]
}
