package boltdb

import (
	"bytes"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/store"
)

// consoleRows is consoleusers.Rows in bbolt.
//
// Layout: store.BucketConsoleUsers, key the username, value the JSON of
// consoleusers.User; store.BucketConsoleSessions, key the session's id
// (the SHA-256 of its token, 32 bytes), value the JSON of
// consoleusers.Session (without the id).
type consoleRows struct{ tx *bolt.Tx }

func (r consoleRows) users() *bolt.Bucket    { return r.tx.Bucket(store.BucketConsoleUsers) }
func (r consoleRows) sessions() *bolt.Bucket { return r.tx.Bucket(store.BucketConsoleSessions) }

func (r consoleRows) User(username string) (consoleusers.User, bool, error) {
	var u consoleusers.User
	v := r.users().Get([]byte(username))
	if v == nil {
		return u, false, nil
	}
	if err := json.Unmarshal(v, &u); err != nil {
		return u, false, fmt.Errorf("console user %q: %w", username, err)
	}
	return u, true, nil
}

func (r consoleRows) PutUser(u consoleusers.User) error {
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return r.users().Put([]byte(u.Username), v)
}

func (r consoleRows) Users() ([]consoleusers.User, error) {
	var us []consoleusers.User
	err := r.users().ForEach(func(k, v []byte) error {
		var u consoleusers.User
		if err := json.Unmarshal(v, &u); err != nil {
			return fmt.Errorf("console user %q: %w", k, err)
		}
		us = append(us, u)
		return nil
	})
	return us, err
}

func (r consoleRows) Session(id [consoleusers.SessionIDLen]byte) (consoleusers.Session, bool, error) {
	var s consoleusers.Session
	v := r.sessions().Get(id[:])
	if v == nil {
		return s, false, nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return s, false, fmt.Errorf("console session: %w", err)
	}
	s.ID = id
	return s, true, nil
}

func (r consoleRows) PutSession(s consoleusers.Session) error {
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return r.sessions().Put(s.ID[:], v)
}

func (r consoleRows) DeleteSession(id [consoleusers.SessionIDLen]byte) error {
	return r.sessions().Delete(id[:])
}

func (r consoleRows) Sessions(after [consoleusers.SessionIDLen]byte, limit int) ([]consoleusers.Session, error) {
	var out []consoleusers.Session
	c := r.sessions().Cursor()
	for k, v := c.Seek(after[:]); k != nil && len(out) < limit; k, v = c.Next() {
		if bytes.Equal(k, after[:]) || len(k) != consoleusers.SessionIDLen {
			continue
		}
		var s consoleusers.Session
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("console session: %w", err)
		}
		copy(s.ID[:], k)
		out = append(out, s)
	}
	return out, nil
}
