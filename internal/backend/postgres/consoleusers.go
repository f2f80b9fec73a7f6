package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/heedmail/heed/internal/consoleusers"
)

// consoleRows is consoleusers.Rows in PostgreSQL (tables console_users
// and console_sessions, migration 0006). Writes run in Update's
// SERIALIZABLE transaction: of two concurrent uses of one TOTP code
// (read the last step, write the new one), one fails to serialize, runs
// again and finds the code used.
type consoleRows struct{ t *Tx }

// ConsoleUsers implements backend.Tx.
func (t *Tx) ConsoleUsers() consoleusers.Rows { return consoleRows{t} }

const userCols = "username, operator, tenant, access, password, totp, totp_step, created_at"

func scanUser(row pgx.CollectableRow) (consoleusers.User, error) {
	var u consoleusers.User
	err := row.Scan(&u.Username, &u.Operator, &u.Tenant, &u.Access, &u.Password, &u.TOTP, &u.TOTPStep, &u.CreatedAt)
	u.CreatedAt = u.CreatedAt.UTC()
	return u, err
}

func (r consoleRows) User(username string) (consoleusers.User, bool, error) {
	rows, err := r.t.tx.Query(r.t.ctx, "SELECT "+userCols+" FROM console_users WHERE username = $1", username)
	if err != nil {
		return consoleusers.User{}, false, err
	}
	u, err := pgx.CollectExactlyOneRow(rows, scanUser)
	if errors.Is(err, pgx.ErrNoRows) {
		return consoleusers.User{}, false, nil
	}
	return u, err == nil, err
}

func (r consoleRows) PutUser(u consoleusers.User) error {
	_, err := r.t.tx.Exec(r.t.ctx, "INSERT INTO console_users ("+userCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "+
		"ON CONFLICT (username) DO UPDATE SET operator = $2, tenant = $3, access = $4, password = $5, totp = $6, totp_step = $7, created_at = $8",
		u.Username, u.Operator, u.Tenant, u.Access, u.Password, u.TOTP, u.TOTPStep, u.CreatedAt)
	return err
}

func (r consoleRows) Users() ([]consoleusers.User, error) {
	rows, err := r.t.tx.Query(r.t.ctx, "SELECT "+userCols+" FROM console_users ORDER BY username")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanUser)
}

func (r consoleRows) Session(id [consoleusers.SessionIDLen]byte) (consoleusers.Session, bool, error) {
	s := consoleusers.Session{ID: id}
	err := r.t.tx.QueryRow(r.t.ctx, "SELECT username, csrf, verified, created_at, seen_at FROM console_sessions WHERE id = $1", id[:]).
		Scan(&s.Username, &s.CSRF, &s.Verified, &s.CreatedAt, &s.SeenAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return consoleusers.Session{}, false, nil
	}
	s.CreatedAt, s.SeenAt = s.CreatedAt.UTC(), s.SeenAt.UTC()
	return s, err == nil, err
}

func (r consoleRows) PutSession(s consoleusers.Session) error {
	_, err := r.t.tx.Exec(r.t.ctx, "INSERT INTO console_sessions (id, username, csrf, verified, created_at, seen_at) VALUES ($1, $2, $3, $4, $5, $6) "+
		"ON CONFLICT (id) DO UPDATE SET username = $2, csrf = $3, verified = $4, created_at = $5, seen_at = $6",
		s.ID[:], s.Username, s.CSRF, s.Verified, s.CreatedAt, s.SeenAt)
	return err
}

func (r consoleRows) DeleteSession(id [consoleusers.SessionIDLen]byte) error {
	_, err := r.t.tx.Exec(r.t.ctx, "DELETE FROM console_sessions WHERE id = $1", id[:])
	return err
}

func (r consoleRows) Sessions(after [consoleusers.SessionIDLen]byte, limit int) ([]consoleusers.Session, error) {
	rows, err := r.t.tx.Query(r.t.ctx, "SELECT id, username, csrf, verified, created_at, seen_at FROM console_sessions "+
		"WHERE id > $1 ORDER BY id LIMIT $2", after[:], limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (consoleusers.Session, error) {
		var s consoleusers.Session
		var id []byte
		err := row.Scan(&id, &s.Username, &s.CSRF, &s.Verified, &s.CreatedAt, &s.SeenAt)
		copy(s.ID[:], id)
		s.CreatedAt, s.SeenAt = s.CreatedAt.UTC(), s.SeenAt.UTC()
		return s, err
	})
}
