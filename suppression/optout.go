package suppression

import (
	"context"
	"errors"

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
// same commit, and returns once it is on disk. It is idempotent: a repeat
// changes nothing and writes no event.
func (o *OptOut) Unsubscribe(ctx context.Context, token, channel string, all bool) (Link, error) {
	link, err := o.Resolve(ctx, token)
	if err != nil {
		return Link{}, err
	}
	scope := link.Target.List
	if all {
		scope = All
	}
	_, err = o.Store.Add(ctx, Entry{
		Tenant: link.Target.Tenant, Address: link.Target.Address, List: scope,
		Reason: Unsubscribe, Channel: channel,
	}, events.RecipientUnsubscribed)
	return link, err
}

// Resubscribe undoes the recipient's own opt-outs that stop the token's
// list (of that list and of all marketing), each with a
// recipient.resubscribed event. Bounces, complaints and the operator's
// blocks stay: they are not the recipient's to undo.
func (o *OptOut) Resubscribe(ctx context.Context, token, channel string) (Link, error) {
	link, err := o.Resolve(ctx, token)
	if err != nil {
		return Link{}, err
	}
	for _, scope := range []string{link.Target.List, All} {
		if _, err := o.Store.Remove(ctx, link.Target.Tenant, link.Target.Address, scope, Unsubscribe, events.RecipientResubscribed); err != nil {
			return Link{}, err
		}
	}
	return link, nil
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
