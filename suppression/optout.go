package suppression

import (
	"context"
	"errors"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/tenant"
)

// Registry is what the opt-out service needs to know about tenants.
type Registry interface {
	Tenant(ctx context.Context, id string) (tenant.Tenant, error)
	List(ctx context.Context, tenant, id string) (tenant.List, error)
	Lists(ctx context.Context, tenant string) ([]tenant.List, error)
}

// ErrUnknownLink is returned for a token that does not name a live
// recipient, list and tenant: forged, damaged, made under a key that is
// gone, or for a tenant or list deleted since. Callers answer every such
// case the same way, so nothing tells which.
var ErrUnknownLink = errors.New("unknown opt-out link")

// OptOut turns opt-out links into suppressions. It knows nothing of HTTP:
// the public listener calls it for RFC 8058 one-click POSTs and for the
// landing page.
type OptOut struct {
	Store    Store
	Keys     *Keyring
	Registry Registry
}

// Link is what a valid token names, with the names a page shows.
type Link struct {
	Target Target
	Tenant tenant.Tenant
	List   tenant.List
}

// Resolve opens a token and checks that its tenant and list still exist.
func (o *OptOut) Resolve(ctx context.Context, token string) (Link, error) {
	t, err := o.Keys.Parse(token)
	if err != nil {
		return Link{}, ErrUnknownLink
	}
	tn, err := o.Registry.Tenant(ctx, t.Tenant)
	if errors.Is(err, tenant.ErrNotFound) {
		return Link{}, ErrUnknownLink
	}
	if err != nil {
		return Link{}, err
	}
	l, err := o.Registry.List(ctx, t.Tenant, t.List)
	if errors.Is(err, tenant.ErrNotFound) {
		return Link{}, ErrUnknownLink
	}
	if err != nil {
		return Link{}, err
	}
	return Link{Target: t, Tenant: tn, List: l}, nil
}

// Unsubscribe records the opt-out a token names — from its list, or with
// all from every marketing list of the tenant (scope All, which never
// stops transactional mail) — with a recipient.unsubscribed event in the
// same commit, and returns once it is on disk. The entry names the link
// (Entry.Link), the only one that can undo it.
//
// It is idempotent, and a repeat is a read: when the recipient's opt-out
// of that scope is there already, made by this link or without a link, it
// reports created == false without a write transaction, so a flood of
// POSTs to one link costs no commits and writes no events. When it is
// there made through another link, the Add goes through: it creates
// nothing, but clears that link's mark (see Store.Add), so that the other
// link's undo cannot lift this opt-out too. That write happens once; the
// entry then has no mark and later repeats are reads.
func (o *OptOut) Unsubscribe(ctx context.Context, token, channel string, all bool) (link Link, created bool, err error) {
	link, err = o.Resolve(ctx, token)
	if err != nil {
		return Link{}, false, err
	}
	t := link.Target
	scope := t.List
	if all {
		scope = All
	}
	entries, err := o.Store.Lookup(ctx, t.Tenant, t.Address)
	if err != nil {
		return Link{}, false, err
	}
	for _, e := range entries {
		if e.List == scope && e.Reason == Unsubscribe && (e.Link == "" || e.Link == t.List) {
			return link, false, nil
		}
	}
	created, err = o.Store.Add(ctx, Entry{
		Tenant: t.Tenant, Address: t.Address, List: scope,
		Reason: Unsubscribe, Channel: channel, Link: t.List,
	}, events.RecipientUnsubscribed)
	return link, created, err
}

// ErrNotUndoable is returned by Resubscribe when the link's list is still
// stopped after the undo: by an opt-out this link did not make (through
// the API, by mail, by import, through another link), by one it made
// before the undo window, or by a bounce, complaint or block, none of
// which a link can lift. The recipient has to ask the business.
var ErrNotUndoable = errors.New("the opt-out cannot be undone through this link")

// Resubscribe undoes the opt-outs that stop the link's list (of that list
// and of all marketing) that this same link made at or after since, each
// with a recipient.resubscribed event, and returns the scopes it undid
// (the list's id and/or All), none when there was nothing to undo.
// Whatever else stops the list stays, and then it fails with
// ErrNotUndoable: whoever holds a link (a forwarded email is enough) can
// take back the clicks made through it, shortly after, and nothing more.
//
// Both can happen at once: the link's "all marketing" is undone (every
// other marketing list the recipient did not leave resumes) while an
// older opt-out of the link's own list stays. Then undone is not empty
// and err is ErrNotUndoable, and the caller must say both: what was undone
// and that this list stays stopped. Undoing the "all" is what the
// recipient asked for; refusing it because of the older opt-out would
// keep every other list stopped against their wish.
//
// When there is nothing to undo it does not open a write transaction.
func (o *OptOut) Resubscribe(ctx context.Context, link Link, since time.Time) (undone []string, err error) {
	t := link.Target
	entries, err := o.Store.Lookup(ctx, t.Tenant, t.Address)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Reason != Unsubscribe || e.Link != t.List || e.Time.Before(since) || e.List != t.List && e.List != All {
			continue
		}
		removed, err := o.Store.Undo(ctx, t.Tenant, t.Address, e.List, t.List, since, events.RecipientResubscribed)
		if err != nil {
			return undone, err
		}
		if removed {
			undone = append(undone, e.List)
		}
	}
	_, stopped, err := Check(ctx, o.Store, t.Tenant, t.List, link.List.Kind, t.Address)
	if err != nil {
		return undone, err
	}
	if stopped {
		return undone, ErrNotUndoable
	}
	return undone, nil
}

// ListState is one marketing list of the tenant and whether the link's
// recipient gets it, for a preference centre.
type ListState struct {
	List       tenant.List
	Suppressed bool
}

// Preferences returns the tenant's marketing lists (and the link's own
// list whatever its kind) with the recipient's state on each.
func (o *OptOut) Preferences(ctx context.Context, link Link) ([]ListState, error) {
	lists, err := o.Registry.Lists(ctx, link.Target.Tenant)
	if err != nil {
		return nil, err
	}
	entries, err := o.Store.Lookup(ctx, link.Target.Tenant, link.Target.Address)
	if err != nil {
		return nil, err
	}
	var out []ListState
	for _, l := range lists {
		if l.Kind != tenant.Marketing && l.ID != link.List.ID {
			continue
		}
		st := ListState{List: l}
		for _, e := range entries {
			st.Suppressed = st.Suppressed || Applies(e, l.ID, l.Kind)
		}
		out = append(out, st)
	}
	return out, nil
}
