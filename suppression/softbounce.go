package suppression

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
)

// Soft bounces escalate only by repetition. One soft bounce (a full
// mailbox, a disabled account, a block, a filter: the address may take
// mail again) never suppresses; an address that keeps bouncing softly,
// SoftRule.Limit final failures of distinct messages whose first and last
// are at least SoftRule.Span apart with no delivery between, is suppressed
// with reason Bounce, the entry's Evidence listing the bounces.
//
// The history is kept per tenant and address (not per list: a full
// mailbox is full for every list), by the address's Hash like the
// entries, so the address is never a key. The diagnostics may quote the
// address: an erasure deletes the whole history (forgetting it only
// delays an escalation).
//
// A delivery resets the count, but lazily: it marks the history with its
// message (Delivered), and the next bounce clears the earlier ones unless
// it is a bounce of that very message. A remote server that accepts mail
// and bounces it minutes later (a DSN after a 250) has not delivered it,
// and clearing at the 250 would keep such an address from ever escalating.

// maxEvidence bounds the bounces one history (and one entry's Evidence)
// holds; SoftRule.Limit is at most this.
const maxEvidence = 20

// maxDiagnostic bounds one bounce's diagnostic text, in bytes.
const maxDiagnostic = 300

// SoftBounce is one final failure, with a soft verdict, of one message to
// one address: the evidence an escalation lists.
type SoftBounce struct {
	Time      time.Time `json:"time"`
	MessageID string    `json:"message_id"`
	// Status is the RFC 3463 enhanced status code, "" when none was given.
	Status string `json:"status,omitempty"`
	// Reason is the reason internal/report gave the failure
	// ("mailbox-full", "suspended", ...).
	Reason string `json:"reason"`
	// Diagnostic is the remote server's reply, cut to 300 bytes.
	Diagnostic string `json:"diagnostic,omitempty"`
	// Channel is where the failure was seen: "smtp" (a reply while Heed
	// delivered) or "dsn" (a delivery status notification).
	Channel string `json:"channel"`
}

// SoftRule is when soft bounces escalate (config bounces.*).
type SoftRule struct {
	// Limit is how many soft bounces suppress; 0 turns escalation off and
	// nothing is recorded.
	Limit int
	// Span is how far apart the first and the last of them must be at
	// least, so that a burst (a mailbox full for an hour) does not count
	// as a pattern.
	Span time.Duration
	// Window is how long a soft bounce counts: older ones are dropped, and
	// a history with none newer is deleted by PurgeSoftBounces.
	Window time.Duration
}

// Failure is a final failure to deliver one message to one address: Hard
// (the address is gone: suppress at once) or soft (record it, and
// suppress when the SoftRule says so).
type Failure struct {
	Tenant  string
	Address string
	Hard    bool
	SoftBounce
}

// History is an address's soft bounces in one tenant, for a privacy
// export.
type History struct {
	Tenant  string       `json:"tenant"`
	Bounces []SoftBounce `json:"bounces"`
	// Delivered is the message last delivered to the address since its
	// last bounce, if any.
	Delivered string    `json:"delivered,omitempty"`
	Updated   time.Time `json:"updated_at"`
}

// WithSoftBounces makes the store record soft bounces and escalate them by
// r (Bounce, BounceTx); without it soft bounces change nothing. Call it
// before the store is shared.
func (s *Service) WithSoftBounces(r SoftRule) *Service {
	s.soft = r
	return s
}

// Bounce records b, and ev (the bounce's event; nil for none), in one
// transaction: see BounceTx.
func (s *Service) Bounce(ctx context.Context, b Failure, ev *events.Event) (suppressed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	err = s.tx.Update(ctx, func(tx Tx) error {
		suppressed = false // fn may run more than once
		if ev != nil {
			if err := events.Append(tx.Events(), ev); err != nil {
				return err
			}
		}
		var err error
		suppressed, err = s.BounceTx(tx, b)
		return err
	})
	return suppressed, err
}

// BounceTx records b inside a transaction that the caller commits with
// the bounce's own state change and event. A hard bounce adds a Bounce
// entry (every list) at once. A soft one joins the address's history and,
// when the history meets the SoftRule, adds a Bounce entry whose Evidence
// lists it and deletes the history; it reports whether an entry was
// created. An address the list cannot hold is no error: the bounce itself
// must still be recorded.
func (s *Service) BounceTx(tx Tx, b Failure) (bool, error) {
	e := Entry{Tenant: b.Tenant, Address: b.Address, List: All, Reason: Bounce, Channel: b.Channel,
		MessageID: b.MessageID, Time: b.Time}
	if !b.Hard {
		if !s.soft.enabled() {
			return false, nil
		}
		evidence, err := s.softBounce(tx.Suppressions(), b)
		if err != nil || evidence == nil {
			return false, ignoreInvalid(err)
		}
		e.Evidence = &evidence
	}
	created, err := s.AddTx(tx, e)
	return created, ignoreInvalid(err)
}

func ignoreInvalid(err error) error {
	if errors.Is(err, ErrInvalid) {
		return nil
	}
	return err
}

func (r SoftRule) enabled() bool { return r.Limit > 0 }

// softBounce adds b to its address's history and returns the bounces that
// escalate (the history is deleted then), or nil.
func (s *Service) softBounce(rows Rows, b Failure) ([]SoftBounce, error) {
	h, err := s.historyHash(b.Tenant, b.Address)
	if err != nil {
		return nil, err
	}
	hist, _, err := rows.History(b.Tenant, h)
	if err != nil {
		return nil, err
	}
	if hist.Delivered != "" && hist.Delivered != b.MessageID {
		hist.Bounces = nil // another message got through since
	}
	hist.Delivered = ""
	cutoff := b.Time.Add(-s.soft.Window)
	kept := hist.Bounces[:0]
	for _, o := range hist.Bounces {
		if o.Time.Before(cutoff) {
			continue
		}
		if o.MessageID == b.MessageID {
			// A second report of one message (a resent or replayed
			// DSN) is not a second bounce, and changes nothing (kept
			// shares hist.Bounces' array: hist is not to be written now).
			return nil, nil
		}
		kept = append(kept, o)
	}
	if len(kept) == maxEvidence {
		// Keep the first: it dates the pattern.
		kept = append(kept[:1], kept[2:]...)
	}
	b.Diagnostic = diagnostic(b.Diagnostic)
	hist.Bounces = append(kept, b.SoftBounce)
	first, last := hist.Bounces[0].Time, hist.Bounces[len(hist.Bounces)-1].Time
	if len(hist.Bounces) >= s.soft.Limit && last.Sub(first) >= s.soft.Span {
		return hist.Bounces, rows.DeleteHistory(b.Tenant, h)
	}
	return nil, putHistory(rows, b.Tenant, h, hist, b.Time)
}

// DeliveredTx notes, in the transaction that records the delivery of
// message to addr, that the address took mail: the next soft bounce of
// another message starts a new count. It writes nothing for an address
// with no history, which is nearly every delivery.
func (s *Service) DeliveredTx(tx Tx, tenantID, addr, message string, at time.Time) error {
	if !s.soft.enabled() {
		return nil
	}
	h, err := s.historyHash(tenantID, addr)
	if err != nil {
		return ignoreInvalid(err)
	}
	rows := tx.Suppressions()
	if n, ok := rows.(DeliveryNoter); ok {
		return n.NoteDelivery(tenantID, h, message, at)
	}
	hist, ok, err := rows.History(tenantID, h)
	if err != nil || !ok {
		return err
	}
	if hist.Delivered != "" {
		hist.Bounces = nil // two deliveries: the first one stood
	}
	hist.Delivered = message
	return putHistory(rows, tenantID, h, hist, at)
}

// diagnostic is a remote server's reply as a bounce keeps it: cut to
// maxDiagnostic bytes, and with what is not text (a NUL, bytes that are
// not UTF-8, a rune the cut split) shown as U+FFFD. A reply may hold any
// byte, and PostgreSQL's jsonb, which keeps histories and evidence there,
// refuses a NUL: the bounce would not be recorded.
func diagnostic(s string) string {
	if len(s) > maxDiagnostic {
		s = s[:maxDiagnostic]
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// DeliveryNoter is Rows that make DeliveredTx's change to an address's
// history in one write, without reading it first (PostgreSQL: an UPDATE
// that finds no row for nearly every delivery, sent with the
// transaction's other writes). Its rule is DeliveredTx's: an address
// with no history gets none; one whose history already names a delivery
// loses its bounces; the history then names message, and is updated at
// at if that is later.
type DeliveryNoter interface {
	NoteDelivery(tenant string, h Hash, message string, at time.Time) error
}

func (s *Service) historyHash(tenantID, addr string) (Hash, error) {
	if err := checkTenantRead(tenantID); err != nil {
		return Hash{}, err
	}
	norm, err := Normalize(addr)
	if err != nil {
		return Hash{}, err
	}
	return s.hash(norm), nil
}

func putHistory(rows Rows, tenantID string, h Hash, hist History, at time.Time) error {
	if at.After(hist.Updated) {
		hist.Updated = at
	}
	hist.Tenant = tenantID
	return rows.PutHistory(h, hist)
}

// SoftBounces returns tenant's soft-bounce history of addr (nil when it
// has none).
func (s *Service) SoftBounces(ctx context.Context, tenantID, addr string) (*History, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, err := s.historyHash(tenantID, addr)
	if err != nil {
		return nil, err
	}
	var out *History
	err = s.tx.View(ctx, func(tx Tx) error {
		hist, ok, err := tx.Suppressions().History(tenantID, h)
		out = nil
		if ok {
			hist.Tenant = tenantID
			out = &hist
		}
		return err
	})
	return out, err
}

// SoftBouncesEverywhere returns addr's soft-bounce histories in every
// tenant (a privacy export).
func (s *Service) SoftBouncesEverywhere(ctx context.Context, addr string) ([]History, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	norm, err := Normalize(addr)
	if err != nil {
		return nil, err
	}
	var out []History
	err = s.tx.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Suppressions().HistoriesEverywhere(s.hash(norm))
		return err
	})
	return out, err
}

// PurgeSoftBounces deletes the histories with no bounce and no delivery
// for longer than the SoftRule's Window before now, and returns how many
// (the retention job), in transactions of at most 1,000.
func (s *Service) PurgeSoftBounces(ctx context.Context, now time.Time) (int, error) {
	cutoff := now.Add(-s.soft.Window)
	total := 0
	for from := ""; ; {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, next := 0, ""
		err := s.tx.Update(ctx, func(tx Tx) error {
			var err error
			n, next, err = tx.Suppressions().PurgeHistories(cutoff, from, 1000)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if next == "" {
			return total, nil
		}
		from = next
	}
}
