// Package store opens Heed's embedded bbolt database: it creates the
// buckets, checks the schema version and the file's consistency at start,
// and commits concurrent writers together (group commit) so that durable
// writes do not cost one fsync each.
//
// It is the lower half of the bbolt storage backend: internal/backend/boltdb
// runs its transactions for the stores moved onto the backend (events,
// suppressions), and the bbolt code of the stores not moved yet (files
// named bolt*.go in their packages) still uses it directly, until they
// move too (docs/storage.md), when it becomes part of that package.
package store

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names. They are the whole on-disk layout; a change that needs a
// migration bumps SchemaVersion.
var (
	BucketMeta         = []byte("meta")
	BucketTenants      = []byte("tenants")
	BucketCredentials  = []byte("credentials")
	BucketUsernames    = []byte("credential_usernames")
	BucketDomains      = []byte("domains")
	BucketLists        = []byte("lists")
	BucketSchedule     = []byte("schedule")
	BucketEvents       = []byte("events")
	BucketTenantEvents = []byte("tenant_events")
	// BucketSuppressions holds suppression entries (package suppression).
	BucketSuppressions = []byte("suppressions")
	// BucketSoftBounces holds each address's recent soft bounces, the
	// evidence that escalates to a suppression (package suppression).
	BucketSoftBounces = []byte("soft_bounces")
	// BucketDKIMKeys holds the DKIM keys of sending domains.
	BucketDKIMKeys = []byte("dkim_keys")
	// BucketWebhookEndpoints, BucketWebhookDeliveries, BucketWebhookSchedule
	// and BucketWebhookDead hold the webhooks' endpoints, the attempts per
	// endpoint and event, the retries due and the dead letters (package
	// webhooks).
	BucketWebhookEndpoints  = []byte("webhook_endpoints")
	BucketWebhookDeliveries = []byte("webhook_deliveries")
	BucketWebhookSchedule   = []byte("webhook_schedule")
	BucketWebhookDead       = []byte("webhook_dead")
	// BucketAudit holds the admin API's audit log (package admin).
	BucketAudit = []byte("audit")
	// BucketConsoleUsers and BucketConsoleSessions hold the console's
	// accounts and sessions (package consoleusers).
	BucketConsoleUsers    = []byte("console_users")
	BucketConsoleSessions = []byte("console_sessions")
	// BucketReputationRates holds the hourly counters of the bounce and
	// complaint rates, BucketReputationState the guard's state of each
	// tenant (package reputation).
	BucketReputationRates = []byte("reputation_rates")
	BucketReputationState = []byte("reputation_state")
)

var allBuckets = [][]byte{
	BucketMeta, BucketTenants, BucketCredentials, BucketUsernames, BucketDomains,
	BucketLists, BucketQueue, BucketQueueBodies, BucketSchedule, BucketEvents,
	BucketTenantEvents, BucketSuppressions, BucketDKIMKeys,
	BucketWebhookEndpoints, BucketWebhookDeliveries, BucketWebhookSchedule, BucketWebhookDead,
	BucketAudit, BucketSoftBounces,
	BucketConsoleUsers, BucketConsoleSessions,
	BucketReputationRates, BucketReputationState,
}

// SchemaVersion is the layout this code reads and writes. 2: suppression
// keys carry the reason and addresses are NFC-normalised (a database of
// version 1 is refused: Heed had no releases then, so there is no
// migration). 3: the soft_bounces bucket, and suppression entries that
// may be written in their second encoding (with evidence); a version 2
// database is upgraded in place at open, since version 3 only adds, and
// a build that knows only version 2 then refuses the file instead of
// misreading an entry. 4: the console_users and console_sessions
// buckets; versions 2 and 3 are upgraded in place, as 4 only adds. 5:
// the reputation_rates and reputation_state buckets; versions 2, 3 and 4
// are upgraded in place, as 5 only adds. 6: the messages, deliveries and
// bodies buckets replaced by queue and queue_bodies (queuelayout.go), so
// that a group commit writes fewer pages; versions 2 to 5 are upgraded in
// place, their rows moved by upgradeQueue.
const SchemaVersion = 6

// upgradable are the older versions Open upgrades in place: each differs
// from SchemaVersion by what initSchema creates and by the queue's rows,
// which upgradeQueue moves.
var upgradable = map[byte]bool{2: true, 3: true, 4: true, 5: true}

var keySchema = []byte("schema_version")

// DB is the opened database with its group committer.
type DB struct {
	bolt   *bolt.DB
	reqs   chan *request
	closed chan struct{}
	done   chan struct{}

	mu       sync.RWMutex
	isClosed bool

	shared sync.Map // Shared's values
}

// ErrLocked is returned by Open when another process has the file open.
var ErrLocked = errors.New("the database is locked by another process")

// Options tune Open.
type Options struct {
	// SkipCheck skips the consistency check (tests of huge databases).
	SkipCheck bool
	// LockTimeout is how long Open waits for another process to release
	// the file (default 2 s).
	LockTimeout time.Duration
}

// Open opens (creating if needed) the database file at path, checks its
// consistency and schema version and starts the group committer.
func Open(path string, o Options) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 2 * time.Second
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      o.LockTimeout,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w (is heed already running?)", path, ErrLocked)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !o.SkipCheck {
		if err := Check(b); err != nil {
			b.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := b.Update(initSchema); err != nil {
		b.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := upgradeQueue(b); err != nil {
		b.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	db := &DB{bolt: b, reqs: make(chan *request, 1024), closed: make(chan struct{}), done: make(chan struct{})}
	go db.commitLoop()
	return db, nil
}

func initSchema(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(BucketMeta)
	v := meta.Get(keySchema)
	switch {
	case v == nil:
		return meta.Put(keySchema, []byte{SchemaVersion})
	case len(v) != 1 || v[0] > SchemaVersion:
		return fmt.Errorf("database schema version %v is newer than this heed understands (%d)", v, SchemaVersion)
	case upgradable[v[0]]:
		return meta.Put(keySchema, []byte{SchemaVersion})
	case v[0] < SchemaVersion:
		return fmt.Errorf("database schema version %d was written by a development build of heed and cannot be read by this one (%d); "+
			"move the data directory aside and start afresh", v[0], SchemaVersion)
	}
	return nil
}

// Check runs bbolt's page-level consistency check and returns every problem
// found, joined.
func Check(b *bolt.DB) error {
	return b.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
			if len(errs) == 10 {
				break
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("consistency check failed: %w", errors.Join(errs...))
		}
		return nil
	})
}

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(*bolt.Tx) error) error { return db.bolt.View(fn) }

// Close stops the committer, waiting for writes in flight, and closes the
// file.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.isClosed {
		db.mu.Unlock()
		return nil
	}
	db.isClosed = true
	db.mu.Unlock()
	close(db.closed)
	<-db.done
	return db.bolt.Close()
}

// Backup writes a consistent copy of the database to w, from one read
// transaction (writers go on meanwhile), and returns its size; size is
// called first with it, for a Content-Length.
func (db *DB) Backup(w io.Writer, size func(int64)) (int64, error) {
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Shared returns the value kept on db under key, made by init on first
// use: state that every store over this database must share, such as the
// generation a read cache is invalidated by (two stores of one package over
// one file must see each other's writes). key is a package's own
// unexported type, as with context values. Callers racing on the first
// use may each run init, and all but one value are dropped: init must be
// cheap and have no effects.
func (db *DB) Shared(key any, init func() any) any {
	if v, ok := db.shared.Load(key); ok {
		return v
	}
	v, _ := db.shared.LoadOrStore(key, init())
	return v
}

// Path is the database file's path.
func (db *DB) Path() string { return db.bolt.Path() }

// Bolt exposes the handle to the bbolt implementations in other packages
// and to backups; nothing else may use it.
func (db *DB) Bolt() *bolt.DB { return db.bolt }

// ErrSecretMismatch is returned by BindSecret for a secret that is not the
// one the database was first used with.
var ErrSecretMismatch = errors.New("not the secret this database was written with")

// BindSecret ties a secret kept outside the database (a key file) to it:
// the first call for name stores fingerprint; later calls fail with
// ErrSecretMismatch when the fingerprint differs. Data encrypted or keyed
// under a secret (sealed DKIM keys, hashed suppressed addresses) is
// unreadable or silently unmatched under another one, so a replaced key
// file must stop the start rather than be discovered later. fingerprint
// must not reveal the secret (an HMAC of a fixed label under it).
func (db *DB) BindSecret(name string, fingerprint []byte) error {
	k := []byte("secret:" + name)
	return db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(BucketMeta)
		switch v := meta.Get(k); {
		case v == nil:
			return meta.Put(k, fingerprint)
		case !hmac.Equal(v, fingerprint):
			return ErrSecretMismatch
		}
		return nil
	})
}

// BoundSecret reports whether BindSecret was called for name before.
func (db *DB) BoundSecret(name string) (bool, error) {
	found := false
	err := db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(BucketMeta).Get([]byte("secret:"+name)) != nil
		return nil
	})
	return found, err
}

// Fresh reports whether the database holds no tenant and no suppression
// yet: nothing a lost key could have protected.
func (db *DB) Fresh() (bool, error) {
	fresh := true
	err := db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{BucketTenants, BucketSuppressions} {
			if k, _ := tx.Bucket(b).Cursor().First(); k != nil {
				fresh = false
			}
		}
		return nil
	})
	return fresh, err
}
