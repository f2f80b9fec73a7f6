package consoleusers_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/heedmail/heed/internal/backend/backendtest"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	. "github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/testclock"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	sealKey = []byte("0123456789abcdef0123456789abcdef")
	start   = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	// cheap keeps the suite fast under the race detector; the hash
	// records its parameters, so checking follows them.
	cheap = Params{Memory: 64, Time: 1, Threads: 1}
)

type opener func(t *testing.T, now func() time.Time) *Service

// eachBackend runs fn on each backend, as subtests bbolt and postgres.
func eachBackend(t *testing.T, fn func(t *testing.T, open opener)) {
	for _, b := range []struct {
		name string
		open opener
	}{{"bbolt", openBolt}, {"postgres", openPostgres}} {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open) })
	}
}

// openBolt opens the service over a fresh bbolt file; at the end the
// file is reopened, which runs bbolt's consistency check.
func openBolt(t *testing.T, now func() time.Time) *Service {
	path := filepath.Join(t.TempDir(), "heed.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		db, err := store.Open(path, store.Options{})
		if err != nil {
			t.Errorf("reopen (consistency check): %v", err)
			return
		}
		db.Close()
	})
	s, err := boltdb.ConsoleUsers(db, sealKey, now)
	if err != nil {
		t.Fatal(err)
	}
	return s.WithParams(cheap)
}

func openPostgres(t *testing.T, now func() time.Time) *Service {
	db := backendtest.OpenPostgres(t, 0)
	s, err := postgres.ConsoleUsers(db.Backend(), sealKey, now)
	if err != nil {
		t.Fatal(err)
	}
	return s.WithParams(cheap)
}

func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signIn goes through both steps and returns the signed-in token.
func signIn(t *testing.T, s *Service, user, password, totpCode string) (string, error) {
	t.Helper()
	ctx := context.Background()
	tok, _, err := s.SignIn(ctx, user, password)
	if err != nil {
		return "", err
	}
	tok, _, err = s.Verify(ctx, tok, totpCode)
	return tok, err
}

// addOperator enrols the operator "ops" every test signs in as.
func addOperator(t *testing.T, s *Service) Enrolment {
	t.Helper()
	en, err := s.AddUser(context.Background(), NewUser{Username: "ops", Operator: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return en
}

func TestAccounts(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s := open(t, testclock.New(start).Now)
		en := addOperator(t, s)
		if len(en.Password) < 20 || en.TOTPSecret == "" || !strings.HasPrefix(en.TOTPURI, "otpauth://totp/Heed:ops?") {
			t.Errorf("enrolment %+v", en)
		}
		if _, err := s.AddUser(ctx, NewUser{Username: "ops", Operator: true}, nil); !errors.Is(err, ErrExists) {
			t.Errorf("a second ops: %v, want ErrExists", err)
		}
		noTenant := errors.New("no tenant")
		for _, nu := range []NewUser{
			{Username: "Bad Name", Operator: true},
			{Username: "pat", Operator: true, Tenant: "acme"},
			{Username: "pat", Tenant: "acme", Access: "admin"},
			{Username: "pat", Access: tenant.ReadOnly},
		} {
			if _, err := s.AddUser(ctx, nu, nil); !errors.Is(err, ErrInvalid) {
				t.Errorf("AddUser(%+v) = %v, want ErrInvalid", nu, err)
			}
		}
		if _, err := s.AddUser(ctx, NewUser{Username: "pat", Tenant: "gone", Access: tenant.ReadOnly}, func(string) error { return noTenant }); !errors.Is(err, noTenant) {
			t.Errorf("a user of a missing tenant: %v", err)
		}
		if _, err := s.AddUser(ctx, NewUser{Username: "pat@acme.example", Tenant: "acme", Access: tenant.ReadWrite}, func(string) error { return nil }); err != nil {
			t.Fatal(err)
		}
		us, err := s.Users(ctx)
		if err != nil || len(us) != 2 || us[0].Username != "ops" || us[1].Tenant != "acme" || us[1].Access != tenant.ReadWrite {
			t.Fatalf("Users = %+v, %v", us, err)
		}
		// Neither the password nor the TOTP secret is kept as given.
		if !strings.HasPrefix(us[0].Password, "$argon2id$v=19$m=64,t=1,p=1$") || strings.Contains(us[0].Password, en.Password) ||
			strings.Contains(string(us[0].TOTP), en.TOTPSecret) {
			t.Errorf("stored account %+v", us[0])
		}
	})
}

func TestSignIn(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := testclock.New(start)
		s := open(t, clock.Now)
		en := addOperator(t, s)
		for _, c := range [][2]string{{"ops", "wrong"}, {"nobody", en.Password}, {"ops", ""}} {
			if _, _, err := s.SignIn(ctx, c[0], c[1]); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("SignIn(%q, %q) = %v, want ErrBadCredentials", c[0], c[1], err)
			}
		}
		pending, _, err := s.SignIn(ctx, "ops", en.Password)
		if err != nil {
			t.Fatal(err)
		}
		if sess, _, err := s.Session(ctx, pending); err != nil || sess.Verified {
			t.Fatalf("the session before the code: %+v, %v", sess, err)
		}
		good := code(t, en.TOTPSecret, clock.Now())
		wrong := string('0'+(good[0]-'0'+1)%10) + good[1:]
		if _, _, err := s.Verify(ctx, pending, wrong); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("a wrong code: %v", err)
		}
		tok, sess, err := s.Verify(ctx, pending, good)
		if err != nil {
			t.Fatal(err)
		}
		if tok == pending || !sess.Verified || len(sess.CSRF) < 40 {
			t.Errorf("after the code: token renewed %v, session %+v", tok != pending, sess)
		}
		if _, _, err := s.Session(ctx, pending); !errors.Is(err, ErrNoSession) {
			t.Errorf("the token of before the code still works: %v", err)
		}
		got, u, err := s.Session(ctx, tok)
		if err != nil || !got.Verified || u.Username != "ops" || !u.Operator || got.CSRF != sess.CSRF {
			t.Errorf("Session = %+v %+v %v", got, u, err)
		}
		// A code is good once: seen over a shoulder, it signs no one in.
		if _, err := signIn(t, s, "ops", en.Password, good); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("the same code again: %v, want ErrBadCredentials", err)
		}
		clock.Add(30 * time.Second)
		if _, err := signIn(t, s, "ops", en.Password, code(t, en.TOTPSecret, clock.Now())); err != nil {
			t.Errorf("the next step's code: %v", err)
		}
		if err := s.SignOut(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Session(ctx, tok); !errors.Is(err, ErrNoSession) {
			t.Errorf("after signing out: %v", err)
		}
	})
}

func TestSessionLifetimes(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := testclock.New(start)
		s := open(t, clock.Now)
		en := addOperator(t, s)
		step := func() string { clock.Add(30 * time.Second); return code(t, en.TOTPSecret, clock.Now()) }

		// Idle: 30 minutes without a request end the session.
		tok, err := signIn(t, s, "ops", en.Password, step())
		if err != nil {
			t.Fatal(err)
		}
		clock.Add(IdleTimeout - time.Minute)
		if _, _, err := s.Session(ctx, tok); err != nil {
			t.Fatalf("29 minutes idle: %v", err)
		}
		clock.Add(IdleTimeout)
		if _, _, err := s.Session(ctx, tok); !errors.Is(err, ErrNoSession) {
			t.Errorf("30 minutes idle: %v, want ErrNoSession", err)
		}

		// Absolute: in use all along, it still ends after 12 hours.
		tok, err = signIn(t, s, "ops", en.Password, step())
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < int(MaxAge/(20*time.Minute))-1; i++ {
			clock.Add(20 * time.Minute)
			if _, _, err := s.Session(ctx, tok); err != nil {
				t.Fatalf("in use after %d minutes: %v", (i+1)*20, err)
			}
		}
		clock.Add(20 * time.Minute)
		if _, _, err := s.Session(ctx, tok); !errors.Is(err, ErrNoSession) {
			t.Errorf("after 12 hours: %v, want ErrNoSession", err)
		}

		// A password without its code does not wait for ever.
		pending, _, err := s.SignIn(ctx, "ops", en.Password)
		if err != nil {
			t.Fatal(err)
		}
		clock.Add(6 * time.Minute)
		if _, _, err := s.Verify(ctx, pending, code(t, en.TOTPSecret, clock.Now())); !errors.Is(err, ErrNoSession) {
			t.Errorf("a code 6 minutes after the password: %v, want ErrNoSession", err)
		}
	})
}

// TestPurgeSessions: the purge deletes from the store the sessions that
// have expired and were never presented again (a password without its
// code, a browser left idle), and keeps the live ones, across more than
// one batch.
func TestPurgeSessions(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := testclock.New(start)
		s := open(t, clock.Now)
		en := addOperator(t, s)
		idle, err := signIn(t, s, "ops", en.Password, code(t, en.TOTPSecret, clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		// Pending sessions, more than a batch of the purge.
		for range 520 {
			if _, _, err := s.SignIn(ctx, "ops", en.Password); err != nil {
				t.Fatal(err)
			}
		}
		clock.Add(6 * time.Minute)
		live, err := signIn(t, s, "ops", en.Password, code(t, en.TOTPSecret, clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.PurgeSessions(ctx); err != nil || n != 520 {
			t.Fatalf("purge after 6 minutes: %d %v, want the 520 pending sessions", n, err)
		}
		clock.Add(IdleTimeout - 5*time.Minute) // idle is 31 minutes old, live 25
		if n, err := s.PurgeSessions(ctx); err != nil || n != 1 {
			t.Fatalf("purge after 31 minutes: %d %v, want the idle session", n, err)
		}
		if n, err := s.PurgeSessions(ctx); err != nil || n != 0 {
			t.Errorf("a purge again: %d %v, want nothing", n, err)
		}
		if _, _, err := s.Session(ctx, live); err != nil {
			t.Errorf("the live session after the purges: %v", err)
		}
		if _, _, err := s.Session(ctx, idle); !errors.Is(err, ErrNoSession) {
			t.Errorf("the idle session: %v", err)
		}
	})
}

// TestLiveDoesNotTouch: Live says whether a session is signed in without
// counting as a use, so a page that keeps asking (the console's live
// tail) does not keep an idle session alive.
func TestLiveDoesNotTouch(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clock := testclock.New(start)
		s := open(t, clock.Now)
		en := addOperator(t, s)
		tok, err := signIn(t, s, "ops", en.Password, code(t, en.TOTPSecret, clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			clock.Add(9 * time.Minute)
			if live, err := s.Live(ctx, tok); err != nil || !live {
				t.Fatalf("Live after %v: %v %v", clock.Now().Sub(start), live, err)
			}
		}
		clock.Add(4 * time.Minute) // 31 minutes since the last use
		if live, err := s.Live(ctx, tok); err != nil || live {
			t.Errorf("Live of an idle session: %v %v, want false", live, err)
		}
		pending, _, err := s.SignIn(ctx, "ops", en.Password)
		if err != nil {
			t.Fatal(err)
		}
		if live, err := s.Live(ctx, pending); err != nil || live {
			t.Errorf("Live of a session without its code: %v %v, want false", live, err)
		}
	})
}
