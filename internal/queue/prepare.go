package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/heedmail/heed/internal/compose"
	"github.com/heedmail/heed/internal/dkim"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// Tenants is what a delivery attempt needs from the tenant registry.
type Tenants interface {
	Tenant(ctx context.Context, id string) (tenant.Tenant, error)
	List(ctx context.Context, tenant, id string) (tenant.List, error)
	Domain(ctx context.Context, name string) (tenant.Domain, error)
	// SigningKeys returns the keys to sign mail from domain with; an
	// error when the domain has keys that cannot be used.
	SigningKeys(ctx context.Context, domain string) ([]dkim.Key, error)
}

// Tokens makes the unsubscribe addresses of one copy.
type Tokens interface {
	// Token is the opaque part of the one-click URL for t.
	Token(t suppression.Target) string
	// MailtoLocal is the local part of the mailto: unsubscribe address.
	MailtoLocal(messageID string, index int) string
}

// Unsubscribe configures the unsubscribe addresses put in list mail.
type Unsubscribe struct {
	// BaseURL is the public HTTP listener's external URL (http.public.base_url).
	BaseURL string
	// MailtoDomain is the domain of the mailto: address (unsubscribe.mailto_domain).
	MailtoDomain string
	Tokens       Tokens
}

// permanentError marks a reason a message can never be prepared; other
// preparation errors (a database hiccup, a key that cannot be read) are
// retried, because Heed never sends unsigned or unchecked mail.
type permanentError struct{ reply string }

func (e *permanentError) Error() string { return e.reply }

func permanent(format string, args ...any) error {
	return &permanentError{reply: fmt.Sprintf(format, args...)}
}

// suppressedError says the recipient must not be mailed.
type suppressedError struct{ entry suppression.Entry }

func (e *suppressedError) Error() string {
	return fmt.Sprintf("suppressed: %s (scope %s)", e.entry.Reason, e.entry.List)
}

// prepare checks suppression for one attempt and renders the copy for
// rcpt, signed, into buf. Its errors are *suppressedError, *permanentError, or
// temporary.
func (q *Queue) prepare(ctx context.Context, msg *Message, rcpt Recipient, body []byte, buf *bytes.Buffer) error {
	in := compose.Input{
		MessageID: msg.ID, Hostname: q.o.Hostname, ReceivedAt: msg.ReceivedAt,
		Helo: msg.Client.Helo, ClientAddr: msg.Client.Addr, TLS: msg.Client.TLS, Auth: msg.Client.Auth,
		Recipient: rcpt.Address,
	}
	if q.o.Tenants != nil {
		if err := q.personalize(ctx, &in, msg, rcpt); err != nil {
			return err
		}
	}
	buf.Grow(len(body) + 2048)
	err := compose.Render(buf, body, in)
	switch {
	case errors.Is(err, compose.ErrMalformed), errors.Is(err, dkim.ErrBadMessage):
		// The stored message itself is at fault: no retry will help.
		return permanent("554 5.6.0 the message could not be prepared for delivery: %v", err)
	case err != nil:
		return err
	}
	return nil
}

// personalize fills in the list treatment, the unsubscribe addresses and
// the signer, after checking the recipient against the suppression list:
// the check runs at every attempt, so an opt-out recorded while a message
// waits for a retry stops it.
func (q *Queue) personalize(ctx context.Context, in *compose.Input, msg *Message, rcpt Recipient) error {
	l, err := q.o.Tenants.List(ctx, msg.Tenant, msg.List)
	if errors.Is(err, tenant.ErrNotFound) {
		return permanent("550 5.7.1 list %q of tenant %q no longer exists", msg.List, msg.Tenant)
	}
	if err != nil {
		return fmt.Errorf("looking up list %s: %w", msg.List, err)
	}
	if q.o.Suppressions != nil {
		e, hit, err := suppression.Check(ctx, q.o.Suppressions, msg.Tenant, l.ID, l.Kind, rcpt.Address)
		if errors.Is(err, suppression.ErrInvalid) {
			return permanent("553 5.1.3 recipient address %q cannot be checked against the suppression list: %v", rcpt.Address, err)
		}
		if err != nil {
			return fmt.Errorf("checking suppression: %w", err)
		}
		if hit {
			return &suppressedError{entry: e}
		}
	}
	t, err := q.o.Tenants.Tenant(ctx, msg.Tenant)
	if errors.Is(err, tenant.ErrNotFound) {
		return permanent("550 5.7.1 tenant %q no longer exists", msg.Tenant)
	}
	if err != nil {
		return fmt.Errorf("looking up tenant %s: %w", msg.Tenant, err)
	}
	if l.Kind == tenant.Marketing && t.PostalAddress == "" {
		return permanent("550 5.7.1 marketing mail needs the sender's postal address (CAN-SPAM) and tenant %q has none", t.ID)
	}
	in.Tenant, in.List, in.ListName, in.Kind = t.ID, l.ID, l.Name, l.Kind
	in.PostalAddress = t.PostalAddress
	in.Unsubscribe = l.Kind == tenant.Marketing || l.Unsubscribe
	if in.Unsubscribe {
		u := q.o.Unsubscribe
		addr, err := suppression.Normalize(rcpt.Address)
		if err != nil {
			return permanent("553 5.1.3 recipient address %q cannot be normalised: %v", rcpt.Address, err)
		}
		if u.Tokens == nil || u.BaseURL == "" {
			return errors.New("no unsubscribe base URL or token keys configured")
		}
		tok := u.Tokens.Token(suppression.Target{Tenant: t.ID, List: l.ID, Address: addr})
		in.UnsubscribeURL, err = url.JoinPath(u.BaseURL, "u", tok)
		if err != nil {
			return permanent("554 5.3.5 http.public.base_url %q is not a URL: %v", u.BaseURL, err)
		}
		if u.MailtoDomain != "" {
			in.UnsubscribeMailto = u.Tokens.MailtoLocal(msg.ID, rcpt.Index) + "@" + u.MailtoDomain
		}
	}
	return q.signer(ctx, in, msg)
}

// signer picks the keys of the From: domain (d= aligned with From, as
// DMARC and the Gmail and Yahoo sender rules want).
func (q *Queue) signer(ctx context.Context, in *compose.Input, msg *Message) error {
	name := strings.ToLower(domainOf(msg.HeaderFrom))
	d, err := q.o.Tenants.Domain(ctx, name)
	if errors.Is(err, tenant.ErrNotFound) || err == nil && d.Tenant != msg.Tenant {
		return permanent("550 5.7.1 the From: domain %s is no longer registered to tenant %q", name, msg.Tenant)
	}
	if err != nil {
		return fmt.Errorf("looking up domain %s: %w", name, err)
	}
	keys, err := q.o.Tenants.SigningKeys(ctx, d.Name)
	if err != nil {
		return fmt.Errorf("DKIM keys of %s: %w", d.Name, err)
	}
	switch {
	case len(keys) == 0:
	case in.Unsubscribe:
		// Each copy carries its own unsubscribe token: nothing to share.
		in.Signer = dkimSigner(keys)
	default:
		// The copies of a transactional message differ only in the
		// unsigned Received field: one signature serves every copy of
		// the attempt (dkim.Reuse checks that the signed part is the same).
		in.Signer = reusedSigner{keys, q.sigs}
	}
	return nil
}

// dkimSigner adapts the domain's keys to compose.
type dkimSigner []dkim.Key

func (s dkimSigner) Sign(msg []byte) (string, error) { return dkim.Sign(msg, s) }

// reusedSigner signs through the queue's dkim.Reuse.
type reusedSigner struct {
	keys  []dkim.Key
	reuse *dkim.Reuse
}

func (s reusedSigner) Sign(msg []byte) (string, error) { return s.reuse.Sign(msg, s.keys) }
