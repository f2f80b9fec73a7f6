// Package privacy answers a person's requests about their address, across
// every tenant: export everything Heed holds about it, or erase it.
//
// Erasure keeps the promise not to mail the address while forgetting it:
// suppression entries stay, found by the keyed hash of the address (HMAC
// under the server key), with the address cleared; events, queue rows,
// webhook attempts and audit records keep what happened with the address
// replaced by "[erased]"; mail still queued to it is not sent; stored
// copies (captured mail, unread reports) that mention it are deleted; and
// the database's free pages are overwritten so the old bytes do not
// linger in the file. Heed keeps no log files of its own: its log goes to
// the operator's log system, where log.redact_addresses keeps addresses
// out in the first place.
package privacy

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/suppression"
)

// The stores, as the privacy service needs them.
type (
	// Suppressions erases the soft-bounce histories with the entries.
	Suppressions interface {
		Everywhere(ctx context.Context, addr string) ([]suppression.Entry, error)
		SoftBouncesEverywhere(ctx context.Context, addr string) ([]suppression.History, error)
		Erase(ctx context.Context, addr string) (int, error)
	}
	Events interface {
		About(ctx context.Context, addr string) ([]events.Event, error)
		Erase(ctx context.Context, addr string) (int, error)
	}
	Queue interface {
		About(ctx context.Context, addr string) ([]queue.RecipientOf, error)
		Erase(ctx context.Context, addr string, spool *queue.Spool) (int, error)
	}
	// Eraser is a store that only holds text about an address (webhook
	// attempts, the audit log).
	Eraser interface {
		Erase(ctx context.Context, addr string) (int, error)
	}
	// Scrubber overwrites the database's free pages.
	Scrubber interface{ Scrub() (held int, err error) }
)

// Service answers privacy requests.
type Service struct {
	Suppressions Suppressions
	Events       Events
	Queue        Queue
	Spool        *queue.Spool
	// Others hold text about addresses: webhook attempts, the audit log.
	Others []Eraser
	// Dirs hold files of mail (captured mail, unread reports); a file
	// mentioning the address is exported by name and deleted on erasure,
	// with its sidecar (same name, another extension).
	Dirs []string
	DB   Scrubber
}

// Export is everything held about one address.
type Export struct {
	Address      string              `json:"address"`
	Suppressions []suppression.Entry `json:"suppressions"`
	// SoftBounces are the address's recent soft bounces, per tenant: the
	// count towards a suppression (docs/bounces.md).
	SoftBounces []suppression.History `json:"soft_bounces"`
	Events      []events.Event        `json:"events"`
	Messages    []queue.RecipientOf   `json:"messages"`
	Files       []string              `json:"files"`
}

// Erasure says what an erasure changed.
type Erasure struct {
	Address string `json:"address"`
	// Suppressions counts entries cleared and soft-bounce histories
	// deleted.
	Suppressions int `json:"suppressions"`
	Events       int `json:"events"`
	Recipients   int `json:"recipients"`
	Other        int `json:"other_records"`
	Files        int `json:"files"`
	// HeldPages counts database pages an open read transaction still held,
	// which the scrub of free pages could not reach: run the erasure again
	// later (after a long backup or export) to scrub them.
	HeldPages int `json:"held_pages,omitempty"`
}

// Normalize is the address as Heed stores it (suppression.Normalize).
func Normalize(addr string) (string, error) { return suppression.Normalize(addr) }

// Export returns everything held about addr, in every tenant.
func (s *Service) Export(ctx context.Context, addr string) (*Export, error) {
	norm, err := Normalize(addr)
	if err != nil {
		return nil, err
	}
	x := &Export{Address: norm}
	if x.Suppressions, err = s.Suppressions.Everywhere(ctx, norm); err != nil {
		return nil, err
	}
	if x.SoftBounces, err = s.Suppressions.SoftBouncesEverywhere(ctx, norm); err != nil {
		return nil, err
	}
	if x.Events, err = s.Events.About(ctx, norm); err != nil {
		return nil, err
	}
	if x.Messages, err = s.Queue.About(ctx, norm); err != nil {
		return nil, err
	}
	err = s.eachFile(norm, func(path string) error {
		x.Files = append(x.Files, path)
		return nil
	})
	// Lists, never null.
	x.Suppressions, x.Events, x.Messages, x.Files = nonNil(x.Suppressions), nonNil(x.Events), nonNil(x.Messages), nonNil(x.Files)
	x.SoftBounces = nonNil(x.SoftBounces)
	return x, err
}

// Of is the part of x that is tenant's: its suppression entries, soft
// bounces, events and messages. The files are the relay's (captured
// mail and unread reports are not kept by tenant), so they are left out.
func (x *Export) Of(tenant string) *Export {
	out := &Export{Address: x.Address, Suppressions: []suppression.Entry{}, SoftBounces: []suppression.History{},
		Events: []events.Event{}, Messages: []queue.RecipientOf{}, Files: []string{}}
	for _, e := range x.Suppressions {
		if e.Tenant == tenant {
			out.Suppressions = append(out.Suppressions, e)
		}
	}
	for _, h := range x.SoftBounces {
		if h.Tenant == tenant {
			out.SoftBounces = append(out.SoftBounces, h)
		}
	}
	for _, ev := range x.Events {
		if ev.Data.Tenant == tenant {
			out.Events = append(out.Events, ev)
		}
	}
	for _, m := range x.Messages {
		if m.Tenant == tenant {
			out.Messages = append(out.Messages, m)
		}
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Erase removes addr from everything Heed holds, keeping its suppression
// entries in force.
func (s *Service) Erase(ctx context.Context, addr string) (*Erasure, error) {
	norm, err := Normalize(addr)
	if err != nil {
		return nil, err
	}
	e := &Erasure{Address: norm}
	// Mail first: nothing more goes out to the address while the rest is
	// erased.
	if e.Recipients, err = s.Queue.Erase(ctx, norm, s.Spool); err != nil {
		return nil, err
	}
	if e.Suppressions, err = s.Suppressions.Erase(ctx, norm); err != nil {
		return nil, err
	}
	if e.Events, err = s.Events.Erase(ctx, norm); err != nil {
		return nil, err
	}
	for _, o := range s.Others {
		n, err := o.Erase(ctx, norm)
		if err != nil {
			return nil, err
		}
		e.Other += n
	}
	err = s.eachFile(norm, func(path string) error {
		stem := strings.TrimSuffix(path, filepath.Ext(path))
		siblings, _ := filepath.Glob(stem + ".*")
		for _, p := range append(siblings, path) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		e.Files++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.DB != nil {
		if e.HeldPages, err = s.DB.Scrub(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// eachFile calls fn with every file in s.Dirs whose content mentions addr.
func (s *Service) eachFile(addr string, fn func(path string) error) error {
	for _, dir := range s.Dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, de := range entries {
			if !de.Type().IsRegular() {
				continue
			}
			p := filepath.Join(dir, de.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // removed with its sibling
				}
				return err
			}
			if events.ContainsFold(b, addr) {
				if err := fn(p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
