package consoleusers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"
)

// A session token is 256 random bits (OWASP asks for at least 64 bits of
// entropy); the cookie carries it, the database its SHA-256.
const tokenLen = 32

// touchEvery is how stale a session's SeenAt may be before a request
// writes it again: the idle timeout does not need the second, and a
// write per page view would cost a commit each.
const touchEvery = time.Minute

func newToken() (token string, id [SessionIDLen]byte) {
	b := make([]byte, tokenLen)
	if _, err := rand.Read(b); err != nil {
		panic("consoleusers: crypto/rand failed: " + err.Error())
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, sessionID(token)
}

func sessionID(token string) [SessionIDLen]byte { return sha256.Sum256([]byte(token)) }

// dummyHash is checked against when a username is unknown, so that the
// answer takes as long as for a known one and does not tell which
// usernames exist.
var dummyHash, _ = DefaultParams.hash("heed: no such user")

// SignIn checks username and password and opens a session that waits for
// the TOTP code (Verify). Every failure is ErrBadCredentials.
func (s *Service) SignIn(ctx context.Context, username, password string) (token string, sess Session, err error) {
	u, ok, err := s.User(ctx, username)
	if err != nil {
		return "", Session{}, err
	}
	hash := dummyHash
	if ok {
		hash = u.Password
	}
	match, err := checkPassword(hash, password)
	if err != nil {
		return "", Session{}, err
	}
	if !ok || !match {
		return "", Session{}, ErrBadCredentials
	}
	token, id := newToken()
	csrf, _ := newToken()
	now := s.now().UTC()
	sess = Session{ID: id, Username: u.Username, CSRF: csrf, CreatedAt: now, SeenAt: now}
	err = s.rows.Update(ctx, func(r Rows) error { return r.PutSession(sess) })
	return token, sess, err
}

// Verify checks the TOTP code of the pending session of token and, when
// it is right, replaces that session by a signed-in one with a new token
// (so a token seen before sign-in is worth nothing after it). A code is
// accepted once. Every failure is ErrBadCredentials or ErrNoSession.
func (s *Service) Verify(ctx context.Context, token, code string) (string, Session, error) {
	now := s.now().UTC()
	newTok, newID := newToken()
	csrf, _ := newToken()
	var out Session
	err := s.rows.Update(ctx, func(r Rows) error {
		sess, ok, err := r.Session(sessionID(token))
		if err != nil {
			return err
		}
		if !ok || sess.Verified || expired(sess, now) {
			return ErrNoSession
		}
		u, ok, err := r.User(sess.Username)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoSession
		}
		secret, err := s.openSecret(u.Username, u.TOTP)
		if err != nil {
			return err
		}
		step, ok := checkCode(secret, code, now, u.TOTPStep)
		if !ok {
			return ErrBadCredentials
		}
		u.TOTPStep = step
		if err := r.PutUser(u); err != nil {
			return err
		}
		if err := r.DeleteSession(sess.ID); err != nil {
			return err
		}
		out = Session{ID: newID, Username: u.Username, CSRF: csrf, Verified: true, CreatedAt: now, SeenAt: now}
		return r.PutSession(out)
	})
	if err != nil {
		return "", Session{}, err
	}
	return newTok, out, nil
}

// expired reports whether sess has outlived its idle or absolute time,
// or, before its code, the few minutes allowed for typing one.
func expired(sess Session, now time.Time) bool {
	limit := MaxAge
	if !sess.Verified {
		limit = pendingTimeout
	}
	return now.Sub(sess.CreatedAt) >= limit || now.Sub(sess.SeenAt) >= IdleTimeout
}

// Session returns the live session of token and its user, and records
// the use. An expired session is deleted; it, an unknown token and a
// deleted user are ErrNoSession. A pending session (not Verified) is
// returned too: the caller lets it do only the TOTP step.
func (s *Service) Session(ctx context.Context, token string) (Session, User, error) {
	id := sessionID(token)
	now := s.now().UTC()
	var sess Session
	var u User
	var live bool
	err := s.rows.View(ctx, func(r Rows) error {
		var ok bool
		var err error
		if sess, ok, err = r.Session(id); err != nil || !ok {
			return err
		}
		if expired(sess, now) {
			return nil
		}
		u, live, err = r.User(sess.Username)
		return err
	})
	if err != nil {
		return Session{}, User{}, err
	}
	if !live {
		if sess.Username != "" { // there, but expired or its user deleted
			err = s.rows.Update(ctx, func(r Rows) error { return r.DeleteSession(id) })
		}
		return Session{}, User{}, errors.Join(ErrNoSession, err)
	}
	if now.Sub(sess.SeenAt) >= touchEvery {
		sess.SeenAt = now
		err = s.rows.Update(ctx, func(r Rows) error {
			if _, ok, err := r.Session(id); err != nil || !ok {
				return err // signed out meanwhile: do not bring it back
			}
			return r.PutSession(sess)
		})
	}
	return sess, u, err
}

// purgeBatch is how many sessions one transaction of the purge reads.
const purgeBatch = 500

// PurgeSessions deletes the sessions that have expired and returns how
// many. Session deletes an expired session when it is next presented;
// one never presented again (a closed browser, a sign-in left at its
// password) would otherwise stay in the database for ever, its
// username with it. The relay runs it with its hourly retention job.
// Each session is checked again in the transaction that deletes it, so
// one used meanwhile is kept.
func (s *Service) PurgeSessions(ctx context.Context) (int, error) {
	var after [SessionIDLen]byte
	n := 0
	for {
		var page []Session
		if err := s.rows.View(ctx, func(r Rows) error {
			var err error
			page, err = r.Sessions(after, purgeBatch)
			return err
		}); err != nil {
			return n, err
		}
		now := s.now().UTC()
		var gone [][SessionIDLen]byte
		for _, sess := range page {
			if expired(sess, now) {
				gone = append(gone, sess.ID)
			}
		}
		if len(gone) > 0 {
			var deleted int
			err := s.rows.Update(ctx, func(r Rows) error {
				deleted = 0 // the function may run again
				for _, id := range gone {
					sess, ok, err := r.Session(id)
					if err != nil {
						return err
					}
					if !ok || !expired(sess, now) {
						continue
					}
					if err := r.DeleteSession(id); err != nil {
						return err
					}
					deleted++
				}
				return nil
			})
			if err != nil {
				return n, err
			}
			n += deleted
		}
		if len(page) < purgeBatch {
			return n, nil
		}
		after = page[len(page)-1].ID
	}
}

// Live reports whether the session of token is still signed in (its
// code entered, not expired, not signed out, its user not deleted),
// without recording a use: a long-lived answer such as the console's
// live tail asks it to end when the session does, and must not keep
// the session alive by asking.
func (s *Service) Live(ctx context.Context, token string) (bool, error) {
	id := sessionID(token)
	now := s.now().UTC()
	var live bool
	err := s.rows.View(ctx, func(r Rows) error {
		sess, ok, err := r.Session(id)
		if err != nil || !ok || !sess.Verified || expired(sess, now) {
			return err
		}
		_, live, err = r.User(sess.Username)
		return err
	})
	return live && err == nil, err
}

// SignOut ends the session of token.
func (s *Service) SignOut(ctx context.Context, token string) error {
	id := sessionID(token)
	return s.rows.Update(ctx, func(r Rows) error { return r.DeleteSession(id) })
}
