package suppression

import (
	"context"
	"slices"

	"github.com/heedmail/heed/internal/events"
)

// Everywhere returns the entries of addr in every tenant's list (a
// privacy export).
func (s *Service) Everywhere(ctx context.Context, addr string) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	norm, err := Normalize(addr)
	if err != nil {
		return nil, err
	}
	var out []Entry
	err = s.tx.View(ctx, func(tx Tx) error {
		rows, err := tx.Suppressions().Everywhere(s.hash(norm))
		out = out[:0]
		for _, r := range rows {
			out = append(out, r.Entry)
		}
		return err
	})
	return out, err
}

// Erase clears addr from every tenant's entries (their Address, and the
// address where a bounce's diagnostic in Evidence quotes it) and deletes
// its soft-bounce histories, and returns how many entries and histories
// it changed. The entries stay, keyed by the keyed hash of the address, so
// every opt-out, bounce and complaint still holds (Lookup finds them, with
// an empty Address): the address is forgotten, the promise not to mail it
// is kept. A history is only a count towards a suppression; forgetting it
// costs nothing the recipient asked to keep.
func (s *Service) Erase(ctx context.Context, addr string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	norm, err := Normalize(addr)
	if err != nil {
		return 0, err
	}
	h := s.hash(norm)
	n := 0
	err = s.tx.Update(ctx, func(tx Tx) error {
		n = 0
		rows := tx.Suppressions()
		all, err := rows.Everywhere(h)
		if err != nil {
			return err
		}
		for _, r := range all {
			if !eraseEntry(&r.Entry, norm) {
				continue
			}
			if err := rows.Put(r); err != nil {
				return err
			}
			n++
		}
		hs, err := rows.HistoriesEverywhere(h)
		if err != nil {
			return err
		}
		for _, hist := range hs {
			if err := rows.DeleteHistory(hist.Tenant, h); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// eraseEntry clears norm from e and reports whether anything changed.
func eraseEntry(e *Entry, norm string) bool {
	changed := e.Address != ""
	e.Address = ""
	if e.Evidence != nil {
		evidence := slices.Clone(*e.Evidence)
		for i, b := range evidence {
			if d := events.EraseText(b.Diagnostic, norm); d != b.Diagnostic {
				evidence[i].Diagnostic, changed = d, true
			}
		}
		e.Evidence = &evidence
	}
	return changed
}
