package suppression_test

import (
	"context"
	"errors"
	"fmt"
	. "github.com/heedmail/heed/suppression"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

func tenantEvents(t *testing.T, log *events.Log, tenantID string) []events.Event {
	t.Helper()
	evs, err := log.Events(context.Background(), tenantID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func mustAdd(t *testing.T, s Store, e Entry, also ...events.Type) bool {
	t.Helper()
	created, err := s.Add(context.Background(), e, also...)
	if err != nil {
		t.Fatalf("Add(%+v): %v", e, err)
	}
	return created
}

func TestAddIsIdempotentAndWritesEvents(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, db := open(t)
		ctx := context.Background()
		e := Entry{Tenant: "acme", Address: "Bob@Example.com", List: "news", Reason: Unsubscribe,
			Channel: "one-click", MessageID: "01jq3z6k9x8v7w6t5s4r3q2p1n"}
		if !mustAdd(t, s, e, events.RecipientUnsubscribed) {
			t.Fatal("first Add: created = false")
		}
		want := Entry{Tenant: "acme", Address: "bob@example.com", List: "news", Reason: Unsubscribe,
			Channel: "one-click", MessageID: "01jq3z6k9x8v7w6t5s4r3q2p1n", Time: testNow}
		got, err := s.Lookup(ctx, "acme", "bob@example.com")
		if err != nil || len(got) != 1 || got[0] != want {
			t.Fatalf("Lookup = %+v, %v; want [%+v]", got, err, want)
		}
		evs := tenantEvents(t, db, "acme")
		if len(evs) != 2 || evs[0].Type != events.SuppressionAdded || evs[1].Type != events.RecipientUnsubscribed {
			t.Fatalf("events = %+v, want suppression.added then recipient.unsubscribed", evs)
		}
		wantData := events.Data{Tenant: "acme", Recipient: "bob@example.com", List: "news", Reason: "unsubscribe",
			Channel: "one-click", MessageID: "01jq3z6k9x8v7w6t5s4r3q2p1n"}
		for _, ev := range evs {
			if ev.Data != wantData || !ev.Time.Equal(testNow) {
				t.Errorf("%s event: %+v at %v, want %+v at %v", ev.Type, ev.Data, ev.Time, wantData, testNow)
			}
		}

		// The same opt-out again (a retried click, another spelling): nothing
		// changes and no event.
		e.Address, e.Channel = "BOB@example.COM", "landing"
		if mustAdd(t, s, e, events.RecipientUnsubscribed) {
			t.Error("second Add: created = true")
		}
		if got, _ := s.Lookup(ctx, "acme", "bob@example.com"); len(got) != 1 || got[0] != want {
			t.Errorf("after the second Add, Lookup = %+v", got)
		}
		if evs := tenantEvents(t, db, "acme"); len(evs) != 2 {
			t.Errorf("the second Add wrote events: %+v", evs)
		}
	})
}

func TestBounceAndComplaintCoverAll(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, db := open(t)
		ctx := context.Background()
		mustAdd(t, s, Entry{Tenant: "acme", Address: "gone@example.com", List: "news", Reason: Bounce, Channel: "dsn"})
		got, _ := s.Lookup(ctx, "acme", "gone@example.com")
		if len(got) != 1 || got[0].List != All {
			t.Fatalf("bounce stored as %+v, want scope %q", got, All)
		}
		if evs := tenantEvents(t, db, "acme"); len(evs) != 1 || evs[0].Data.List != All {
			t.Errorf("event %+v, want list %q", evs, All)
		}
		// A second bounce, whatever list it names, is the same entry.
		if mustAdd(t, s, Entry{Tenant: "acme", Address: "gone@example.com", List: "promo", Reason: Bounce}) {
			t.Error("a second bounce was created")
		}
		// A complaint scoped to a list is stored with scope All too, beside
		// the bounce: another reason, another entry.
		if !mustAdd(t, s, Entry{Tenant: "acme", Address: "gone@example.com", List: "other", Reason: Complaint}, events.RecipientComplained) {
			t.Error("a complaint on top of a bounce was not created")
		}
		got, _ = s.Lookup(ctx, "acme", "gone@example.com")
		if len(got) != 2 || got[0].List != All || got[1].List != All || reasonsOf(got) != "bounce,complaint" {
			t.Errorf("Lookup = %+v, want a bounce and a complaint of scope %q", got, All)
		}
		if evs := tenantEvents(t, db, "acme"); len(evs) != 3 || evs[1].Data.List != All || evs[2].Type != events.RecipientComplained {
			t.Errorf("events = %+v", evs)
		}
	})
}

func reasonsOf(es []Entry) string {
	var rs []string
	for _, e := range es {
		rs = append(rs, string(e.Reason))
	}
	slices.Sort(rs)
	return strings.Join(rs, ",")
}

func eventTypes(evs []events.Event) string {
	var ts []string
	for _, ev := range evs {
		ts = append(ts, string(ev.Type))
	}
	return strings.Join(ts, " ")
}

// TestRemoveBounceKeepsOptOut: a consumer opts out of all marketing, the
// mailbox later hard-bounces, then the operator removes the bounce (the
// mailbox works again). The opt-out must still hold: marketing resuming
// here would break CAN-SPAM.
func TestRemoveBounceKeepsOptOut(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, db := open(t)
		ctx := context.Background()
		const addr = "pat@example.com"
		if !mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: All, Reason: Unsubscribe, Channel: "landing"}, events.RecipientUnsubscribed) {
			t.Fatal("the opt-out was not created")
		}
		if !mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: All, Reason: Bounce, Channel: "dsn"}) {
			t.Fatal("the bounce was not created")
		}
		if e, stop, err := Check(ctx, s, "acme", "receipts", tenant.Transactional, addr); err != nil || !stop || e.Reason != Bounce {
			t.Errorf("with the bounce, transactional Check = %+v, %v, %v; want the bounce", e, stop, err)
		}
		removed, err := s.Remove(ctx, "acme", addr, All, Bounce)
		if err != nil || !removed {
			t.Fatalf("Remove(bounce) = %v, %v", removed, err)
		}
		e, stop, err := Check(ctx, s, "acme", "news", tenant.Marketing, addr)
		if err != nil || !stop || e.Reason != Unsubscribe {
			t.Errorf("after the bounce is removed, marketing Check = %+v, %v, %v; want the opt-out", e, stop, err)
		}
		if _, stop, err := Check(ctx, s, "acme", "receipts", tenant.Transactional, addr); err != nil || stop {
			t.Errorf("after the bounce is removed, transactional Check = %v, %v; want no suppression", stop, err)
		}
		evs := tenantEvents(t, db, "acme")
		want := "suppression.added recipient.unsubscribed suppression.added suppression.removed"
		if got := eventTypes(evs); got != want {
			t.Fatalf("events %q, want %q", got, want)
		}
		if d := evs[3].Data; d.Reason != "bounce" || d.List != All || d.Recipient != addr {
			t.Errorf("removed event data %+v", d)
		}
		// Removing it again finds nothing and writes nothing.
		if removed, err := s.Remove(ctx, "acme", addr, All, Bounce); err != nil || removed {
			t.Errorf("second Remove(bounce) = %v, %v", removed, err)
		}
		if n := len(tenantEvents(t, db, "acme")); n != 4 {
			t.Errorf("%d events after a Remove of nothing, want 4", n)
		}
	})
}

// TestOptOutOverBlock: a one-click opt-out from an address the operator
// had blocked is recorded, with its event: the block may be lifted later,
// the opt-out must not go with it.
func TestOptOutOverBlock(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, db := open(t)
		ctx := context.Background()
		const addr = "lee@example.com"
		mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: All, Reason: Manual, Channel: "api"})
		if !mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: All, Reason: Unsubscribe, Channel: "one-click"}, events.RecipientUnsubscribed) {
			t.Fatal("an opt-out on top of a block: created = false")
		}
		if want, got := "suppression.added suppression.added recipient.unsubscribed", eventTypes(tenantEvents(t, db, "acme")); got != want {
			t.Errorf("events %q, want %q", got, want)
		}
		if e, stop, err := Check(ctx, s, "acme", "news", tenant.Marketing, addr); err != nil || !stop || e.Reason != Manual {
			t.Errorf("Check = %+v, %v, %v; want the block reported", e, stop, err)
		}
		if removed, err := s.Remove(ctx, "acme", addr, All, Manual); err != nil || !removed {
			t.Fatalf("Remove(manual) = %v, %v", removed, err)
		}
		if e, stop, err := Check(ctx, s, "acme", "news", tenant.Marketing, addr); err != nil || !stop || e.Reason != Unsubscribe {
			t.Errorf("after the block is lifted, Check = %+v, %v, %v; want the opt-out", e, stop, err)
		}
	})
}

// TestRemoveEveryReason: reason "" removes every reason of the scope, one
// event (and one of each also) per entry, and nothing of another scope.
func TestRemoveEveryReason(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, db := open(t)
		ctx := context.Background()
		const addr = "kim@example.com"
		for _, r := range []Reason{Unsubscribe, Manual, Import, Complaint} {
			mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: All, Reason: r})
		}
		mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: "news", Reason: Unsubscribe})
		removed, err := s.Remove(ctx, "acme", "KIM@example.com", All, "", events.RecipientResubscribed)
		if err != nil || !removed {
			t.Fatalf("Remove(all reasons) = %v, %v", removed, err)
		}
		got, err := s.Lookup(ctx, "acme", addr)
		if err != nil || len(got) != 1 || got[0].List != "news" || got[0].Reason != Unsubscribe {
			t.Errorf("after Remove of scope %q, Lookup = %+v, %v; want the news opt-out only", All, got, err)
		}
		evs := tenantEvents(t, db, "acme")[5:]
		if len(evs) != 8 {
			t.Fatalf("Remove wrote %d events, want 4 × (suppression.removed, recipient.resubscribed): %q", len(evs), eventTypes(evs))
		}
		var removedReasons []Entry
		for i := 0; i < len(evs); i += 2 {
			if evs[i].Type != events.SuppressionRemoved || evs[i+1].Type != events.RecipientResubscribed ||
				evs[i].Data != evs[i+1].Data || evs[i].Data.List != All {
				t.Errorf("events %d, %d: %+v, %+v", i, i+1, evs[i], evs[i+1])
			}
			removedReasons = append(removedReasons, Entry{Reason: Reason(evs[i].Data.Reason)})
		}
		if r := reasonsOf(removedReasons); r != "complaint,import,manual,unsubscribe" {
			t.Errorf("removed events name %s", r)
		}
		if removed, err := s.Remove(ctx, "acme", addr, All, ""); err != nil || removed {
			t.Errorf("Remove of an emptied scope = %v, %v", removed, err)
		}
	})
}

// TestStrongerReasonReported: an opt-out from all marketing, then a
// complaint about a receipt: the complaint must stop transactional mail
// too, although the scope is the same, and Check reports it.
func TestStrongerReasonReported(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, db := open(t)
		ctx := context.Background()
		mustAdd(t, s, Entry{Tenant: "acme", Address: "ann@example.com", List: All, Reason: Unsubscribe})
		if _, stop, _ := Check(ctx, s, "acme", "receipts", tenant.Transactional, "ann@example.com"); stop {
			t.Fatal("an all-marketing opt-out stops transactional mail")
		}
		if !mustAdd(t, s, Entry{Tenant: "acme", Address: "ann@example.com", List: All, Reason: Complaint, Channel: "arf"}, events.RecipientComplained) {
			t.Fatal("the complaint was not recorded")
		}
		e, stop, err := Check(ctx, s, "acme", "receipts", tenant.Transactional, "ann@example.com")
		if err != nil || !stop || e.Reason != Complaint {
			t.Errorf("Check after the complaint = %+v, %v, %v", e, stop, err)
		}
		// The opt-out is still there, beside the complaint; adding it again
		// changes nothing.
		if mustAdd(t, s, Entry{Tenant: "acme", Address: "ann@example.com", List: All, Reason: Unsubscribe}) {
			t.Error("a second opt-out was created")
		}
		if got, _ := s.Lookup(ctx, "acme", "ann@example.com"); reasonsOf(got) != "complaint,unsubscribe" {
			t.Errorf("Lookup = %+v, want the complaint and the opt-out", got)
		}
		if evs := tenantEvents(t, db, "acme"); len(evs) != 3 || evs[2].Type != events.RecipientComplained {
			t.Errorf("events = %+v", evs)
		}
	})
}

func TestRemove(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, db := open(t)
		ctx := context.Background()
		mustAdd(t, s, Entry{Tenant: "acme", Address: "bob@example.com", List: "news", Reason: Unsubscribe})
		mustAdd(t, s, Entry{Tenant: "acme", Address: "bob@example.com", List: All, Reason: Manual})
		removed, err := s.Remove(ctx, "acme", "BOB@example.com", "news", Unsubscribe, events.RecipientResubscribed)
		if err != nil || !removed {
			t.Fatalf("Remove = %v, %v", removed, err)
		}
		got, _ := s.Lookup(ctx, "acme", "bob@example.com")
		if len(got) != 1 || got[0].List != All {
			t.Errorf("after Remove of the list scope, Lookup = %+v, want only the %q entry", got, All)
		}
		evs := tenantEvents(t, db, "acme")
		if len(evs) != 4 || evs[2].Type != events.SuppressionRemoved || evs[3].Type != events.RecipientResubscribed {
			t.Fatalf("events = %+v", evs)
		}
		want := events.Data{Tenant: "acme", Recipient: "bob@example.com", List: "news", Reason: "unsubscribe"}
		if evs[2].Data != want {
			t.Errorf("removed event data %+v, want %+v", evs[2].Data, want)
		}
		if removed, err := s.Remove(ctx, "acme", "bob@example.com", "news", ""); err != nil || removed {
			t.Errorf("second Remove = %v, %v", removed, err)
		}
		if len(tenantEvents(t, db, "acme")) != 4 {
			t.Error("a Remove of nothing wrote an event")
		}
	})
}

func TestTenantIsolation(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, db := open(t)
		ctx := context.Background()
		mustAdd(t, s, Entry{Tenant: "acme", Address: "bob@example.com", List: All, Reason: Complaint})
		mustAdd(t, s, Entry{Tenant: "acme", Address: "ann@example.com", List: "news", Reason: Unsubscribe})
		mustAdd(t, s, Entry{Tenant: "globex", Address: "carl@example.com", List: "news", Reason: Unsubscribe})

		if got, err := s.Lookup(ctx, "globex", "bob@example.com"); err != nil || len(got) != 0 {
			t.Errorf("globex sees acme's entry through Lookup: %+v, %v", got, err)
		}
		if _, stop, _ := Check(ctx, s, "globex", "news", tenant.Marketing, "bob@example.com"); stop {
			t.Error("acme's complaint stops globex's mail")
		}
		if removed, _ := s.Remove(ctx, "globex", "bob@example.com", All, ""); removed {
			t.Error("globex removed acme's entry")
		}
		got, next, err := s.List(ctx, "globex", "", "", 10)
		if err != nil || next != "" || len(got) != 1 || got[0].Address != "carl@example.com" {
			t.Errorf("globex's List = %+v %q %v, want carl only", got, next, err)
		}
		// A cursor is relative to the tenant using it: acme's cursor gets
		// globex nothing of acme's.
		_, acmeNext, _ := s.List(ctx, "acme", "", "", 1)
		if acmeNext == "" {
			t.Fatal("acme's first page of 1 has no next cursor")
		}
		got, _, err = s.List(ctx, "globex", "", acmeNext, 10)
		for _, e := range got {
			if e.Tenant != "globex" || e.Address != "carl@example.com" {
				t.Errorf("globex with acme's cursor got %+v (%v)", e, err)
			}
		}
		if evs := tenantEvents(t, db, "globex"); len(evs) != 1 {
			t.Errorf("globex's events: %+v", evs)
		}
	})
}

func TestNormalisedMatching(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		ctx := context.Background()
		mustAdd(t, s, Entry{Tenant: "acme", Address: "Bob@BÜCHER.example", List: All, Reason: Unsubscribe})
		for _, addr := range []string{"bob@xn--bcher-kva.example", "BOB@bücher.example.", " bob@Xn--Bcher-Kva.Example "} {
			e, stop, err := Check(ctx, s, "acme", "news", tenant.Marketing, addr)
			if err != nil || !stop || e.Address != "bob@xn--bcher-kva.example" {
				t.Errorf("Check(%q) = %+v, %v, %v", addr, e, stop, err)
			}
		}
		// Not the same mailbox: no provider folding.
		if _, stop, _ := Check(ctx, s, "acme", "news", tenant.Marketing, "bob+x@xn--bcher-kva.example"); stop {
			t.Error("bob+x is suppressed by bob's opt-out")
		}
	})
}

// TestPolicyThroughCheck runs the policy table against a real store: the
// entry as Add stores it, found by Check.
func TestPolicyThroughCheck(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		ctx := context.Background()
		lists := map[string]string{tenant.Marketing: "news", tenant.Transactional: "receipts"}
		for i, c := range PolicyCases {
			list := lists[c.Kind]
			addr := fmt.Sprintf("case%d@example.com", i)
			mustAdd(t, s, Entry{Tenant: "acme", Address: addr, Reason: c.Reason, List: c.EntryScope(list)})
			e, stop, err := Check(ctx, s, "acme", list, c.Kind, addr)
			if err != nil || stop != c.Stops {
				t.Errorf("%v: Check = %v, %v; want %v", c, stop, err, c.Stops)
			}
			if stop && e.Reason != c.Reason {
				t.Errorf("%v: Check reports %q", c, e.Reason)
			}
		}
	})
}

// TestCheckReportsStrongest: with an opt-out from the list and a bounce,
// the bounce is what Check reports.
func TestCheckReportsStrongest(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		ctx := context.Background()
		mustAdd(t, s, Entry{Tenant: "acme", Address: "bob@example.com", List: "news", Reason: Unsubscribe})
		mustAdd(t, s, Entry{Tenant: "acme", Address: "bob@example.com", List: "news", Reason: Bounce})
		mustAdd(t, s, Entry{Tenant: "acme", Address: "bob@example.com", List: All, Reason: Import})
		for range 3 {
			e, stop, err := Check(ctx, s, "acme", "news", tenant.Marketing, "bob@example.com")
			if err != nil || !stop || e.Reason != Bounce {
				t.Errorf("Check = %+v, %v, %v; want the bounce", e, stop, err)
			}
		}
		if _, stop, err := Check(ctx, s, "acme", "news", tenant.Marketing, "nobody@example.com"); stop || err != nil {
			t.Errorf("Check of an unknown address = %v, %v", stop, err)
		}
		if _, _, err := Check(ctx, s, "acme", "news", tenant.Marketing, "not an address"); !errors.Is(err, ErrInvalid) {
			t.Errorf("Check of a malformed address: %v, want ErrInvalid", err)
		}
	})
}

func TestInvalidInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		ctx := context.Background()
		good := Entry{Tenant: "acme", Address: "bob@example.com", List: "news", Reason: Unsubscribe}
		for name, mod := range map[string]func(*Entry){
			"address": func(e *Entry) { e.Address = "bob" },
			"reason":  func(e *Entry) { e.Reason = "because" },
			"list":    func(e *Entry) { e.List = "" },
			"list id": func(e *Entry) { e.List = "News Letter" },
			"tenant":  func(e *Entry) { e.Tenant = "" },
			"tenant0": func(e *Entry) { e.Tenant = "ac\x00me" },
		} {
			e := good
			mod(&e)
			if _, err := s.Add(ctx, e); !errors.Is(err, ErrInvalid) {
				t.Errorf("Add with a bad %s: %v, want ErrInvalid", name, err)
			}
		}
		if _, err := s.Remove(ctx, "acme", "bob@example.com", "", Unsubscribe); !errors.Is(err, ErrInvalid) {
			t.Errorf("Remove without a scope: %v", err)
		}
		if _, err := s.Remove(ctx, "acme", "bob@example.com", "news", "because"); !errors.Is(err, ErrInvalid) {
			t.Errorf("Remove with an unknown reason: %v", err)
		}
		for _, cur := range []string{"!!", "AAAA", "AAAAAAAAAAAAAAAAAAAAAAA="} {
			if _, _, err := s.List(ctx, "acme", "", cur, 10); !errors.Is(err, ErrInvalid) {
				t.Errorf("List with cursor %q: %v, want ErrInvalid", cur, err)
			}
		}
		if got, _, _ := s.List(ctx, "acme", "", "", 10); len(got) != 0 {
			t.Errorf("invalid Adds stored %+v", got)
		}
	})
}

func listAll(t *testing.T, s Store, tenantID, scope string, limit int) (entries []Entry, pages int) {
	t.Helper()
	seen := map[string]bool{}
	cursor := ""
	for {
		page, next, err := s.List(context.Background(), tenantID, scope, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d entries, limit %d", len(page), limit)
		}
		pages++
		for _, e := range page {
			k := e.Address + " " + e.List + " " + string(e.Reason)
			if seen[k] {
				t.Fatalf("%s listed twice", k)
			}
			seen[k] = true
		}
		entries = append(entries, page...)
		if next == "" {
			return entries, pages
		}
		cursor = next
	}
}

func TestListPagination(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		want := map[string][]string{} // scope → addresses, once per entry
		for i := range 240 {
			scope := []string{"news", "promo", All}[i%3]
			addr := fmt.Sprintf("user%03d@example.com", i)
			mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: scope, Reason: Unsubscribe})
			want[scope] = append(want[scope], addr)
			if i%24 == 0 { // a second reason of the same scope: a second entry
				mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: scope, Reason: Manual})
				want[scope] = append(want[scope], addr)
			}
		}
		mustAdd(t, s, Entry{Tenant: "acme0", Address: "other@example.com", List: All, Reason: Manual})
		mustAdd(t, s, Entry{Tenant: "acm", Address: "other@example.com", List: All, Reason: Manual})

		all, pages := listAll(t, s, "acme", "", 100)
		if len(all) != 250 || pages != 3 {
			t.Errorf("listed %d entries in %d pages, want 250 in 3", len(all), pages)
		}
		for scope := range want {
			slices.Sort(want[scope])
		}
		for scope, addrs := range want {
			got, _ := listAll(t, s, "acme", scope, 30)
			var gotAddrs []string
			for _, e := range got {
				if e.List != scope || e.Tenant != "acme" {
					t.Errorf("scope %q listed %+v", scope, e)
				}
				gotAddrs = append(gotAddrs, e.Address)
			}
			slices.Sort(gotAddrs)
			if !slices.Equal(gotAddrs, addrs) {
				t.Errorf("scope %q: listed %d addresses, want %d", scope, len(gotAddrs), len(addrs))
			}
		}
	})
}

// TestListScopeFilterBudget: a rare scope among many entries is listed in
// full although each call examines a bounded number of entries.
func TestListScopeFilterBudget(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		n := 20500 // past twice the bbolt backend's scan budget of 10,000
		entries := make([]Entry, n)
		rare := 0
		for i := range entries {
			scope := All
			if i%1000 == 0 {
				scope, rare = "rare", rare+1
			}
			entries[i] = Entry{Tenant: "acme", Address: fmt.Sprintf("u%d@example.com", i), List: scope, Reason: Import, Channel: "import"}
		}
		added, err := s.Import(context.Background(), entries)
		if err != nil || added != n {
			t.Fatalf("Import = %d, %v; want %d", added, err, n)
		}
		got, pages := listAll(t, s, "acme", "rare", 100)
		if len(got) != rare || strings.HasSuffix(t.Name(), "/bbolt") && pages < 3 {
			t.Errorf("listed %d rare entries in %d pages, want %d in at least 3", len(got), pages, rare)
		}
		// Importing again adds nothing; an invalid row fails the call whole.
		if added, err := s.Import(context.Background(), entries[:10]); err != nil || added != 0 {
			t.Errorf("second Import = %d, %v", added, err)
		}
		bad := []Entry{{Tenant: "acme", Address: "new@example.com", List: All, Reason: Import}, {Tenant: "acme", Address: "bad", List: All, Reason: Import}}
		if _, err := s.Import(context.Background(), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Import with a bad row: %v", err)
		}
		if got, _ := s.Lookup(context.Background(), "acme", "new@example.com"); len(got) != 0 {
			t.Error("a failed Import wrote its valid rows")
		}
	})
}

// TestImportKeepsEveryReason: Import follows Add's rules: one entry per
// scope and reason, the first of two equal ones kept.
func TestImportKeepsEveryReason(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		ctx := context.Background()
		added, err := s.Import(ctx, []Entry{
			{Tenant: "acme", Address: "max@example.com", List: All, Reason: Import, Channel: "first"},
			{Tenant: "acme", Address: "max@example.com", List: All, Reason: Manual},
			{Tenant: "acme", Address: "MAX@example.com", List: All, Reason: Import, Channel: "second"},
			{Tenant: "acme", Address: "max@example.com", List: "news", Reason: Import},
		})
		if err != nil || added != 3 {
			t.Fatalf("Import = %d, %v; want 3", added, err)
		}
		got, err := s.Lookup(ctx, "acme", "max@example.com")
		if err != nil || len(got) != 3 || reasonsOf(got) != "import,import,manual" {
			t.Fatalf("Lookup = %+v, %v", got, err)
		}
		for _, e := range got {
			if e.Reason == Import && e.List == All && e.Channel != "first" {
				t.Errorf("the later of two equal imported entries won: %+v", e)
			}
		}
		if added, err := s.Import(ctx, []Entry{{Tenant: "acme", Address: "max@example.com", List: All, Reason: Unsubscribe}}); err != nil || added != 1 {
			t.Errorf("importing an opt-out beside them = %d, %v; want 1", added, err)
		}
	})
}

// TestUndo: Undo removes the opt-out that the named link made at or after
// since, with its events, and nothing else: not an opt-out of another
// link or channel, not an older one, not another reason.
func TestUndo(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, db := open(t)
		ctx := context.Background()
		const addr = "pat@example.net"
		mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: "news", Reason: Unsubscribe, Channel: "page", Link: "news"})
		mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: All, Reason: Unsubscribe, Channel: "page", Link: "offers"})
		mustAdd(t, s, Entry{Tenant: "acme", Address: addr, List: All, Reason: Manual, Channel: "api"})
		mustAdd(t, s, Entry{Tenant: "acme", Address: "sam@example.net", List: "news", Reason: Unsubscribe, Channel: "api"})
		n := len(tenantEvents(t, db, "acme"))
		for _, c := range []struct {
			addr, scope, link string
			since             time.Time
		}{
			{addr, All, "news", testNow},                         // another link's
			{addr, "news", "offers", testNow},                    // the scope holds another link's
			{addr, "news", "news", testNow.Add(time.Nanosecond)}, // made before since
			{"sam@example.net", "news", "news", testNow},         // not made by a link
			{"nobody@example.net", "news", "news", testNow},      // nothing there
			{addr, "offers", "offers", testNow.Add(-time.Hour)},  // no such scope
		} {
			if removed, err := s.Undo(ctx, "acme", c.addr, c.scope, c.link, c.since, events.RecipientResubscribed); err != nil || removed {
				t.Errorf("Undo(%+v) = %v, %v; want nothing removed", c, removed, err)
			}
		}
		if _, err := s.Undo(ctx, "acme", addr, "news", "", testNow); !errors.Is(err, ErrInvalid) {
			t.Errorf("Undo without a link: %v", err)
		}
		if got := len(tenantEvents(t, db, "acme")); got != n {
			t.Errorf("refused Undos wrote %d events", got-n)
		}
		removed, err := s.Undo(ctx, "acme", "PAT@example.net", All, "offers", testNow, events.RecipientResubscribed)
		if err != nil || !removed {
			t.Fatalf("Undo of the offers link's opt-out = %v, %v", removed, err)
		}
		got, _ := s.Lookup(ctx, "acme", addr)
		if reasonsOf(got) != "manual,unsubscribe" || got[1].List != "news" {
			t.Errorf("after Undo, Lookup = %+v; want the block and the news opt-out", got)
		}
		evs := tenantEvents(t, db, "acme")[n:]
		if len(evs) != 2 || evs[0].Type != events.SuppressionRemoved || evs[1].Type != events.RecipientResubscribed ||
			evs[0].Data.List != All || evs[0].Data.Reason != string(Unsubscribe) {
			t.Errorf("Undo's events %+v", evs)
		}
	})
}

// TestAddOnTopClearsLinkMark: an opt-out a link made, then the same
// opt-out made another way (a mailto, the API, an import, another link):
// Add creates nothing and writes no event, but the link can no longer
// undo it, while the same link adding it again keeps its undo.
func TestAddOnTopClearsLinkMark(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		const addr = "pat@example.net"
		byLink := Entry{Tenant: "acme", Address: addr, List: "news", Reason: Unsubscribe, Channel: "one-click", Link: "news"}
		for name, add := range map[string]func(s *Service) error{
			"mailto": func(s *Service) error {
				_, err := s.Add(ctx, Entry{Tenant: "acme", Address: addr, List: "news", Reason: Unsubscribe, Channel: "mailto"})
				return err
			},
			"api": func(s *Service) error {
				_, err := s.Add(ctx, Entry{Tenant: "acme", Address: "PAT@example.net", List: "news", Reason: Unsubscribe, Channel: "api"})
				return err
			},
			"import": func(s *Service) error {
				_, err := s.Import(ctx, []Entry{{Tenant: "acme", Address: addr, List: "news", Reason: Unsubscribe, Channel: "import"}})
				return err
			},
			"another link": func(s *Service) error {
				_, err := s.Add(ctx, Entry{Tenant: "acme", Address: addr, List: "news", Reason: Unsubscribe, Channel: "page", Link: "offers"})
				return err
			},
		} {
			t.Run(name, func(t *testing.T) {
				s, db := open(t)
				mustAdd(t, s, byLink, events.RecipientUnsubscribed)
				n := len(tenantEvents(t, db, "acme"))
				if err := add(s); err != nil {
					t.Fatal(err)
				}
				if got := len(tenantEvents(t, db, "acme")); got != n {
					t.Errorf("the Add on top wrote %d events", got-n)
				}
				for _, link := range []string{"news", "offers"} {
					if removed, err := s.Undo(ctx, "acme", addr, "news", link, testNow, events.RecipientResubscribed); err != nil || removed {
						t.Errorf("Undo through the %s link = %v, %v; want nothing removed", link, removed, err)
					}
				}
				got, _ := s.Lookup(ctx, "acme", addr)
				if len(got) != 1 || got[0].Link != "" || got[0].Channel != "one-click" || !got[0].Time.Equal(testNow) {
					t.Errorf("Lookup = %+v; want the first entry, without its link", got)
				}
			})
		}
		t.Run("same link", func(t *testing.T) {
			s, _ := open(t)
			mustAdd(t, s, byLink)
			if mustAdd(t, s, byLink) {
				t.Error("the repeat created an entry")
			}
			if removed, err := s.Undo(ctx, "acme", addr, "news", "news", testNow); err != nil || !removed {
				t.Errorf("Undo after the same link's repeat = %v, %v; want removed", removed, err)
			}
		})
	})
}

// TestDeleteTenant: a deleted tenant's entries are gone, another tenant's
// stay, and a tenant created again with the same id starts empty.
func TestDeleteTenant(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		s, _ := open(t)
		ctx := context.Background()
		for _, tn := range []string{"acme", "other"} {
			for _, a := range []string{"pat@example.net", "sam@example.net"} {
				if _, err := s.Add(ctx, Entry{Tenant: tn, Address: a, List: All, Reason: Manual}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.DeleteTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		if es, _, _ := s.List(ctx, "acme", "", "", 100); len(es) != 0 {
			t.Errorf("acme still has %d entries", len(es))
		}
		if es, _, _ := s.List(ctx, "other", "", "", 100); len(es) != 2 {
			t.Errorf("other has %d entries, want 2", len(es))
		}
	})
}
