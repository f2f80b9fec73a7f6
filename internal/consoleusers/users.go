// Package consoleusers keeps the people who sign in to the console
// (docs/console.md): their accounts, with a password hashed by argon2id
// (RFC 9106) and a TOTP second factor (RFC 6238), and their sessions.
//
// It is a domain package over the storage backend (docs/storage.md): Rows
// is its face inside a transaction, kept by internal/backend/boltdb and
// internal/backend/postgres; the rules (hashing, sealing the TOTP secret,
// session expiry, one use of each TOTP code) are here.
package consoleusers

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
)

// User is one console account: an operator, or a user of one tenant with
// read-only or read-write access.
type User struct {
	Username string `json:"username"`
	Operator bool   `json:"operator,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
	Access   string `json:"access,omitempty"` // tenant.ReadOnly or tenant.ReadWrite
	// Password is the argon2id hash in the PHC string format, its
	// parameters and salt with it: "$argon2id$v=19$m=...,t=...,p=...$salt$hash".
	Password string `json:"password"`
	// TOTP is the TOTP secret sealed with the service's key (AES-GCM).
	TOTP []byte `json:"totp"`
	// TOTPStep is the time step of the last code accepted: a code is
	// accepted once (RFC 6238 section 5.2).
	TOTPStep  int64     `json:"totp_step,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// SessionIDLen is the length of a session's id, the SHA-256 of its token.
const SessionIDLen = 32

// Session is a signed-in browser. The cookie carries a random token; only
// its SHA-256 is kept, so a copy of the database signs no one in.
type Session struct {
	ID       [SessionIDLen]byte `json:"-"`
	Username string             `json:"username"`
	// CSRF is the synchroniser token every form of the session carries.
	CSRF string `json:"csrf"`
	// Verified is set once the TOTP step passed; before it, the session
	// only lets its holder enter a code.
	Verified  bool      `json:"verified,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	SeenAt    time.Time `json:"seen_at"`
}

// Rows is the console users' face inside a transaction.
type Rows interface {
	// User returns the account of username, false when there is none.
	User(username string) (User, bool, error)
	// PutUser stores u, replacing an account of the same username.
	PutUser(u User) error
	// Users returns every account, by username.
	Users() ([]User, error)
	// Session returns the session of id, false when there is none.
	Session(id [SessionIDLen]byte) (Session, bool, error)
	// PutSession stores s, replacing a session of the same id.
	PutSession(s Session) error
	// DeleteSession removes the session of id, if any.
	DeleteSession(id [SessionIDLen]byte) error
	// Sessions returns up to limit sessions with an id above after, in
	// id order (the purge of expired sessions pages through them).
	Sessions(after [SessionIDLen]byte, limit int) ([]Session, error)
}

// Errors of the service.
var (
	// ErrBadCredentials is a wrong username, password or code, in one
	// error so that the answer does not say which.
	ErrBadCredentials = errors.New("wrong username, password or code")
	// ErrNoSession is a token that names no live session.
	ErrNoSession = errors.New("no session")
	// ErrExists is an account that is already there.
	ErrExists = errors.New("a console user of that name exists")
	// ErrInvalid is an account that cannot be made as asked.
	ErrInvalid = errors.New("invalid console user")
)

// Session lifetimes: idle and absolute, as OWASP's session management
// cheat sheet suggests for an administrative interface.
const (
	IdleTimeout = 30 * time.Minute
	MaxAge      = 12 * time.Hour
	// pendingTimeout bounds the time between the password and the code.
	pendingTimeout = 5 * time.Minute
)

// Service keeps the accounts and sessions.
type Service struct {
	rows   txn.Runner[Rows]
	seal   []byte
	now    func() time.Time
	params Params
}

// New returns the service over r. sealKey (32 bytes) seals the TOTP
// secrets; it must stay the same for the life of the database.
func New(r txn.Runner[Rows], sealKey []byte, now func() time.Time) (*Service, error) {
	if len(sealKey) != 32 {
		return nil, fmt.Errorf("consoleusers: the seal key must be 32 bytes, not %d", len(sealKey))
	}
	if now == nil {
		now = time.Now
	}
	return &Service{rows: r, seal: sealKey, now: now, params: DefaultParams}, nil
}

// WithParams makes new passwords with p (tests use cheap ones); a
// password keeps the parameters it was hashed with.
func (s *Service) WithParams(p Params) *Service {
	s.params = p
	return s
}

var validUsername = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// NewUser is what AddUser makes.
type NewUser struct {
	Username string
	Operator bool
	Tenant   string
	Access   string
}

// Enrolment is what AddUser shows once: the generated password and the
// TOTP secret, bare (for typing into an app) and as an otpauth:// URI
// (for a QR code).
type Enrolment struct {
	Password   string
	TOTPSecret string
	TOTPURI    string
}

// AddUser creates an account with a generated password and TOTP secret.
// A tenant user's tenant must exist: tenantExists says so (nil skips the
// check).
func (s *Service) AddUser(ctx context.Context, nu NewUser, tenantExists func(string) error) (Enrolment, error) {
	if !validUsername.MatchString(nu.Username) {
		return Enrolment{}, fmt.Errorf("%w: the username must be 1 to 64 of a-z 0-9 . _ @ -, starting with a letter or digit (got %q)", ErrInvalid, nu.Username)
	}
	switch {
	case nu.Operator && (nu.Tenant != "" || nu.Access != ""):
		return Enrolment{}, fmt.Errorf("%w: an operator has no tenant", ErrInvalid)
	case !nu.Operator && tenant.ValidID(nu.Tenant) != nil:
		return Enrolment{}, fmt.Errorf("%w: a tenant user needs a tenant id (got %q)", ErrInvalid, nu.Tenant)
	case !nu.Operator && nu.Access != tenant.ReadOnly && nu.Access != tenant.ReadWrite:
		return Enrolment{}, fmt.Errorf("%w: access must be %q or %q (got %q)", ErrInvalid, tenant.ReadOnly, tenant.ReadWrite, nu.Access)
	}
	if !nu.Operator && tenantExists != nil {
		if err := tenantExists(nu.Tenant); err != nil {
			return Enrolment{}, err
		}
	}
	password := newPassword()
	hash, err := s.params.hash(password)
	if err != nil {
		return Enrolment{}, err
	}
	key, err := newTOTP(nu.Username)
	if err != nil {
		return Enrolment{}, err
	}
	sealed, err := s.sealSecret(nu.Username, key.Secret())
	if err != nil {
		return Enrolment{}, err
	}
	u := User{
		Username: nu.Username, Operator: nu.Operator, Tenant: nu.Tenant, Access: nu.Access,
		Password: hash, TOTP: sealed, CreatedAt: s.now().UTC(),
	}
	err = s.rows.Update(ctx, func(r Rows) error {
		if _, ok, err := r.User(u.Username); err != nil || ok {
			if err == nil {
				err = fmt.Errorf("%w: %q", ErrExists, u.Username)
			}
			return err
		}
		return r.PutUser(u)
	})
	if err != nil {
		return Enrolment{}, err
	}
	return Enrolment{Password: password, TOTPSecret: key.Secret(), TOTPURI: key.URL()}, nil
}

// User returns the account of username.
func (s *Service) User(ctx context.Context, username string) (User, bool, error) {
	var u User
	var ok bool
	err := s.rows.View(ctx, func(r Rows) (err error) {
		u, ok, err = r.User(username)
		return err
	})
	return u, ok, err
}

// Users returns every account, by username.
func (s *Service) Users(ctx context.Context) ([]User, error) {
	var us []User
	err := s.rows.View(ctx, func(r Rows) (err error) {
		us, err = r.Users()
		return err
	})
	return us, err
}
