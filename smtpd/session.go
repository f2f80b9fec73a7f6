package smtpd

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/heedmail/heed/internal/address"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/suppression"
)

// session is one client's conversation, from EHLO (or STARTTLS) to QUIT.
type session struct {
	s   *Submission
	c   *smtp.Conn
	log *slog.Logger
	raw *conn // nil when the listener did not wrap the connection

	addr     netip.Addr
	loopback bool
	tls      bool

	// cred is who is sending: from AUTH, or from an ip credential naming
	// the client's network.
	cred      *tenant.Credential
	authed    bool
	authFails int

	// The transaction.
	from     address.Address
	rcpts    []address.Address
	bareBase int64
}

var (
	codeAuth   = smtp.EnhancedCode{5, 7, 8}
	codePolicy = smtp.EnhancedCode{5, 7, 1}
)

func (ss *session) AuthMechanisms() []string {
	if !ss.tls && !ss.loopback {
		return nil // not advertised; Auth refuses too
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if !ss.tls && !ss.loopback {
		return nil, reply(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required: issue STARTTLS before AUTH")
	}
	// Nothing is refused here, before the username is known: a username
	// that last authenticated from this client is not held to the
	// client's failures (see authLimiter).
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return reply(535, codeAuth, "Authorization identity must be empty or the username")
			}
			return ss.authenticate(username, password)
		}), nil
	case sasl.Login:
		return newLoginServer(ss.lockedUser, ss.authenticate), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// lockedUser refuses AUTH LOGIN once the username is known, before the
// client sends a password it would be refused anyway.
func (ss *session) lockedUser(username string) error {
	if wait := ss.s.auth.locked(ss.addr, username); wait > 0 {
		return ss.lockedOut(wait)
	}
	return nil
}

// authenticate checks a password only if the limiter allows it: whether
// it does depends on past failures, never on this password, so neither
// the reply nor its timing says anything about the guess.
func (ss *session) authenticate(username, password string) error {
	chk, wait := ss.s.auth.allow(ss.addr, username)
	if chk == nil {
		return ss.lockedOut(wait)
	}
	// Deferred so that a check that panics (go-smtp answers 421) still
	// ends: other checks of the same address or username may wait for it.
	finished := false
	defer func() {
		if !finished {
			ss.s.auth.done(chk, checkErred)
		}
	}()
	cred, err := ss.s.o.Tenants.Authenticate(context.Background(), username, password)
	finished = true
	if err == nil {
		ss.s.auth.done(chk, succeeded)
		ss.cred, ss.authed = &cred, true
		if ss.raw != nil {
			ss.raw.trust()
		}
		ss.log.Info("smtp: authenticated", "tenant", cred.Tenant, "credential", cred.ID, "client", ss.addr)
		return nil
	}
	if !errors.Is(err, tenant.ErrBadCredentials) {
		ss.s.auth.done(chk, checkErred)
		return internalError(ss.log, "checking credentials", err)
	}
	go ss.accountFailure(chk, username)
	ss.log.Warn("smtp: authentication failed", "client", ss.addr, "failures", ss.authFails+1)
	if err := ss.countFailure(); err != nil {
		return err
	}
	return reply(535, codeAuth, "Authentication credentials invalid")
}

// accountFailure records a failed check once it has learnt whether the
// username has a credential, which decides whether its failures may be
// evicted (see authLimiter). Authenticate answers the same for an unknown
// username and a wrong password; the lookup that tells them apart runs
// beside the reply rather than before it, so the reply's timing does not
// tell them apart either. Until it is done the check counts as in
// progress.
func (ss *session) accountFailure(chk *check, username string) {
	o := failedUnknown
	if _, err := ss.s.o.Tenants.CredentialByUsername(context.Background(), username); err == nil {
		o = failedKnown
	}
	ss.s.auth.done(chk, o)
}

// lockedOut answers AUTH from a locked-out client or for a locked-out
// username: 454, temporary, as RFC 4954 section 6 has it for a
// temporary authentication failure. One wording for every limit, so the
// answer does not say which limit a username is under.
func (ss *session) lockedOut(wait time.Duration) error {
	ss.log.Warn("smtp: authentication refused, too many failures", "client", ss.addr)
	if err := ss.countFailure(); err != nil {
		return err
	}
	mins := plural(int((wait+time.Minute-1)/time.Minute), "minute", "minutes")
	return reply(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentications from your address or for this username, try again in %s", mins)
}

// countFailure counts a refused AUTH against this connection; the last
// one allowed closes it, so a client cannot keep a slot while it guesses.
func (ss *session) countFailure() error {
	ss.authFails++
	if ss.authFails >= ss.s.o.MaxAuthFailures && ss.raw != nil {
		ss.raw.closeAfter.Store(true)
		return reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many failed authentication attempts, closing connection")
	}
	return nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.cred == nil {
		return reply(530, smtp.EnhancedCode{5, 7, 0},
			"Authentication required: AUTH with a credential from the admin API, or send from a network registered as an ip credential")
	}
	if from == "" {
		return reply(550, codePolicy, "A null sender is not accepted for submission: send from an address at one of your domains")
	}
	a, err := address.Parse(from)
	if err != nil {
		return reply(553, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax: %v", err)
	}
	if err := ss.checkDomain(a.Domain, "Envelope sender"); err != nil {
		return err
	}
	if err := ss.pausePolicy(false); err != nil {
		return err // paused for all its mail: no message to send
	}
	ss.from = a
	ss.rcpts = ss.rcpts[:0]
	return nil
}

// checkDomain refuses a domain that is not one of the sending tenant's.
// The reply is the same whether the domain is unknown or another
// tenant's, so it reveals nothing about other tenants.
func (ss *session) checkDomain(domain, what string) error {
	d, err := ss.s.o.Tenants.Domain(context.Background(), domain)
	if err == nil && d.Tenant == ss.cred.Tenant {
		return nil
	}
	if err != nil && !errors.Is(err, tenant.ErrNotFound) {
		return internalError(ss.log, "looking up a domain", err)
	}
	return reply(550, codePolicy, "%s domain %s is not a sending domain of this account: add it with the admin API", what, domain)
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	a, err := address.Parse(to)
	if err != nil {
		return reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: %v", err)
	}
	// Every recipient must have a form the suppression list can hold, or
	// its opt-out could not be recorded or checked.
	if _, err := suppression.Normalize(a.String()); err != nil {
		return reply(553, smtp.EnhancedCode{5, 1, 3}, "Recipient address refused: %v", err)
	}
	for _, r := range ss.rcpts {
		if r == a {
			return nil // one copy per recipient, like Postfix's duplicate filter
		}
	}
	ss.rcpts = append(ss.rcpts, a)
	return nil
}

func (ss *session) Reset() {
	ss.from = address.Address{}
	ss.rcpts = nil
}

func (ss *session) Logout() error {
	ss.s.active.Add(-1)
	return nil
}
