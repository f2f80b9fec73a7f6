// Package suppression decides who must not be mailed, and keeps the record
// of it: the suppression list of every tenant, the normalisation that makes
// two spellings of one mailbox one entry, the policy of which entry stops
// which list, and the unsubscribe tokens that identify a recipient and a
// list in a link or a mailto address.
//
// What it implements, and where the rules come from (the design notes'
// compliance.md is the whole rulebook):
//
//   - CAN-SPAM (15 U.S.C. 7704(a)(3)-(4), 16 CFR 316.5): an opt-out from
//     commercial mail is honoured for every later message, with nothing asked
//     but the address and one action. The delivery workers call [Check] at
//     every attempt, so mail already queued is stopped too. An opt-out of
//     "all marketing of this business" never stops transactional mail
//     (16 CFR 316.3): see [Applies].
//   - Hard bounces and complaints (Gmail and Yahoo bulk-sender rules) stop
//     every kind of mail from that tenant to that mailbox.
//   - RFC 8058 one-click unsubscribe and RFC 2369 List-Unsubscribe: the
//     HTTPS URI carries an opaque, unforgeable, deterministic token bound to
//     tenant, list and recipient ([Keyring.Token]); the mailto URI carries a
//     short MAC'd local part that fits RFC 5321's 64 octets
//     ([Keyring.MailtoLocal]). Tokens do not expire and survive key
//     rotation (CAN-SPAM's 30 days is a floor).
//   - Privacy: entries are keyed by an HMAC of the normalised address under
//     a server secret, not by the address, so an erasure request can drop
//     the address and keep the opt-out (compliance.md, Privacy promises).
//
// Every read and write names its tenant; one tenant never sees another's
// entries. The [Store] interface is what the rest of Heed uses; [Service]
// implements it with this package's rules over the rows a storage backend
// keeps ([Rows], on bbolt or PostgreSQL: docs/storage.md). This package knows nothing of HTTP or SMTP: the one-click
// handler, the landing page and the inbound listener call it.
package suppression

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heedmail/heed/internal/events"
)

// ErrInvalid is wrapped by every error about bad input (an address that does
// not normalise, an unknown reason, a missing list or tenant, a malformed
// cursor), so callers can answer 400 rather than 500.
var ErrInvalid = errors.New("invalid")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Reason is why an address is suppressed.
type Reason string

// The reasons. They decide which lists an entry covers (see [Applies]).
const (
	// Unsubscribe is the recipient's own opt-out (link, one-click POST,
	// mailto, landing page).
	Unsubscribe Reason = "unsubscribe"
	// Bounce is a hard bounce: the mailbox does not exist.
	Bounce Reason = "bounce"
	// Complaint is a spam report (ARF feedback loop).
	Complaint Reason = "complaint"
	// Manual is an operator's or tenant's block through the admin API.
	Manual Reason = "manual"
	// Import is an opt-out carried over from another system (CSV import);
	// it is treated as an opt-out, not as a block.
	Import Reason = "import"
)

var reasons = []Reason{Unsubscribe, Bounce, Complaint, Manual, Import}

// ParseReason returns the Reason named s, or an error wrapping ErrInvalid.
func ParseReason(s string) (Reason, error) {
	for _, r := range reasons {
		if string(r) == s {
			return r, nil
		}
	}
	return "", invalid("reason %q is not one of unsubscribe, bounce, complaint, manual, import", s)
}

// All is the scope that names every list of the tenant. What it covers
// depends on the reason: see [Applies].
const All = "*"

// Entry is one suppression: this address must not get mail of this scope
// from this tenant.
type Entry struct {
	Tenant string `json:"tenant"`
	// Address is the normalised address (see [Normalize]). It is empty once
	// the address has been erased at the recipient's request; the entry
	// still holds, found by the keyed hash of the address.
	Address string `json:"address"`
	// List is the scope: a list id, or [All].
	List   string `json:"list"`
	Reason Reason `json:"reason"`
	// Channel says how the suppression came in, free text: "one-click",
	// "landing", "mailto", "dsn", "arf", "api", "import", "smtp".
	Channel string `json:"channel"`
	// MessageID is the message that led to it, where there is one.
	MessageID string    `json:"message_id"`
	Time      time.Time `json:"created_at"`
	// Link is the list id of the opt-out link (the token) through which
	// the recipient made this entry, and "" for every other way in (API,
	// mailto, import, bounce, complaint). Only that same link can undo
	// the entry, and only shortly after (Store.Undo, OptOut.Resubscribe):
	// a forwarded email must not lift an opt-out made any other way. An
	// Add of the same entry another way clears it.
	Link string `json:"-"`
	// Evidence lists the soft bounces that made a Bounce entry when they
	// escalated (see SoftRule), oldest first; nil for every other entry. A
	// pointer, so that entries stay comparable with ==.
	Evidence *[]SoftBounce `json:"evidence,omitempty"`
}

// Store keeps the suppression lists of all tenants.
//
// Lifecycle: a Store is built once at start over an open database and
// shared by every goroutine (its methods are safe for concurrent use); it is
// not closed itself, the database under it is, after the last caller has
// returned. Every method is scoped by tenant. Writes are durable when they
// return nil: an opt-out is on disk before the unsubscribe endpoint answers.
type Store interface {
	// Add records e. It normalises e.Address, stores Bounce and Complaint
	// entries with scope All whatever e.List says, sets e.Time from the
	// store's clock when it is zero, and fails with ErrInvalid when the
	// tenant, address, list or reason is missing or malformed.
	//
	// An entry is one tenant, address, scope and reason. When that entry
	// exists, Add reports created == false and writes no events (so a
	// retried click or a second bounce is harmless); the one change it
	// makes is to clear the entry's Link when e does not come through
	// that same link, so that the link's undo no longer lifts an opt-out
	// that was also made another way. An entry of another
	// reason, whatever the scope, is kept beside the new one, never
	// replaced by it: each reason lasts until it is removed itself (see
	// Remove), and a block or bounce on top of an opt-out is still
	// created and still writes its events.
	//
	// When created, a suppression.added event, and one event of each type in
	// also (recipient.unsubscribed, recipient.complained, ...), is written
	// in the same transaction as the entry, with the entry's tenant,
	// address, list, reason, channel and message id.
	Add(ctx context.Context, e Entry, also ...events.Type) (created bool, err error)

	// Remove deletes entries of tenant for addr (normalised first, as
	// everywhere in this interface) with exactly this scope (a list id or
	// All; Bounce and Complaint entries are always of scope All): the one
	// of reason, or every reason of the scope when reason is "". For each
	// entry removed it writes a suppression.removed event naming that
	// entry's reason, and one event of each type in also, in the same
	// transaction. Removing what is not there reports removed == false and
	// writes nothing; an unknown reason fails with ErrInvalid.
	//
	// Entries of other reasons stay. Removing a bounce (the mailbox works
	// again) leaves an opt-out of the same scope in place, so marketing
	// does not resume to someone who opted out (CAN-SPAM 15 U.S.C.
	// 7704(a)(4)); lifting every reason of a scope takes reason "", and is
	// the caller's decision to make knowingly.
	Remove(ctx context.Context, tenant, addr, scope string, reason Reason, also ...events.Type) (removed bool, err error)

	// Undo removes tenant's Unsubscribe entry for addr of exactly scope if
	// the opt-out link of list link made it (Entry.Link) at or after since,
	// with the events Remove writes, in one transaction, and reports
	// whether it did. Every other entry stays, whatever made it: an undo
	// takes back the click it follows, never an opt-out made through the
	// API, by mail, by import or through another link, nor an old one.
	Undo(ctx context.Context, tenant, addr, scope, link string, since time.Time, also ...events.Type) (removed bool, err error)

	// Lookup returns every entry of tenant for addr, whatever the scope and
	// reason (an address can hold several of one scope), or none. addr is normalised first (ErrInvalid when it does not
	// normalise). An erased entry comes back with an empty Address. It is
	// on the delivery path: one index seek, no scan.
	Lookup(ctx context.Context, tenant, addr string) ([]Entry, error)

	// List returns up to limit entries of tenant (only those of one scope
	// when scope is not empty) after cursor ("" for the first page), and
	// the cursor of the next page, "" at the end. Cursors are opaque and
	// valid only for the tenant that got them. The order is stable but is
	// not the addresses' order. A page may hold fewer than limit entries
	// while next is not empty (a scope filter examines a bounded number of
	// entries per call): callers page until next is "". limit <= 0 means
	// 100; more than 1000 is cut to 1000.
	List(ctx context.Context, tenant, scope, cursor string, limit int) (entries []Entry, next string, err error)
	// Bounce records a final failure to deliver a message to an address,
	// and ev (the failure's own event; nil for none), in one transaction:
	// a hard one adds a Bounce entry at once; a soft one joins the
	// address's soft-bounce history, and adds a Bounce entry whose
	// Evidence lists the history when it meets the store's SoftRule. It
	// reports whether an entry was created. An address the list cannot
	// hold is no error: the event is still written.
	Bounce(ctx context.Context, f Failure, ev *events.Event) (suppressed bool, err error)
	// DeleteTenant removes every entry of a tenant that is being deleted,
	// so that a later tenant given the same id inherits nothing of it. It
	// writes no events: the tenant's event log goes with it.
	DeleteTenant(ctx context.Context, tenant string) error
}

// Check says whether addr must not get mail of list (of the given kind,
// tenant.Marketing or tenant.Transactional) from tenant, and which entry
// says so. When several entries apply, the strongest is reported (a bounce
// or complaint before a block before an opt-out), so the event and the
// message status name the reason that matters most.
//
// The delivery workers call it before every attempt (so an opt-out stops
// mail already queued). An error means the answer is unknown, and the mail
// must not go: a store error may pass on a retry, ErrInvalid (an address
// that does not normalise, hence cannot be matched) will not.
func Check(ctx context.Context, s Store, tenant, list, kind, addr string) (Entry, bool, error) {
	entries, err := s.Lookup(ctx, tenant, addr) // Lookup normalises
	if err != nil {
		return Entry{}, false, err
	}
	e, hit := strongest(entries, list, kind)
	return e, hit, nil
}

// Verdict is CheckAll's answer for one address: Hit says whether it must
// not get the mail, and Entry which entry says so (as Check reports it).
type Verdict struct {
	Entry Entry
	Hit   bool
}

// allLooker is a Store that reads the entries of many addresses in one
// read of its backend (Service.LookupAll).
type allLooker interface {
	LookupAll(ctx context.Context, tenant string, addrs []string) ([][]Entry, error)
}

// CheckAll is Check for every recipient of one message: out[i] is the
// verdict for addrs[i], by the same rules. Over a Store that has
// LookupAll (the Service, on either backend) it is one read of the
// backend, one query on PostgreSQL, however many recipients there are,
// so the accept of a 50-recipient message does not make 50 round trips
// before its 250. An address that does not normalise fails the whole call
// with ErrInvalid, as it fails Check.
func CheckAll(ctx context.Context, s Store, tenant, list, kind string, addrs []string) ([]Verdict, error) {
	var all [][]Entry
	if la, ok := s.(allLooker); ok {
		var err error
		if all, err = la.LookupAll(ctx, tenant, addrs); err != nil {
			return nil, err
		}
	} else {
		all = make([][]Entry, len(addrs))
		for i, a := range addrs {
			es, err := s.Lookup(ctx, tenant, a)
			if err != nil {
				return nil, err
			}
			all[i] = es
		}
	}
	out := make([]Verdict, len(addrs))
	for i, es := range all {
		out[i].Entry, out[i].Hit = strongest(es, list, kind)
	}
	return out, nil
}

// strongest picks, of entries, the strongest one that applies to list
// (see Check); found is false when none does.
func strongest(entries []Entry, list, kind string) (best Entry, found bool) {
	for _, e := range entries {
		if !Applies(e, list, kind) {
			continue
		}
		if !found || strength(e.Reason) > strength(best.Reason) {
			best, found = e, true
		}
	}
	return best, found
}
