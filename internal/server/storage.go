package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/heedmail/heed/admin"
	"github.com/heedmail/heed/internal/audit"
	"github.com/heedmail/heed/internal/backend"
	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/backend/postgres"
	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/consoleusers"
	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/privacy"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/store"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

// storage is where a relay keeps its state, on the backend storage.driver
// names: the stores over one backend, the spool of message bodies, the
// server's secrets, and what only one backend can do (a bbolt backup, a
// PostgreSQL readiness check).
type storage struct {
	qs           *queue.Records
	events       *events.Log
	tenants      *tenant.DBStore
	suppressions func(hashKey []byte) *suppression.Service
	webhooks     *webhooks.Service
	audit        *audit.Log
	consoleUsers func(seal []byte) (*consoleusers.Service, error)
	// changes runs an admin change and its audit record in one
	// transaction of this backend.
	changes txn.Runner[admin.Tx]
	// reputation keeps the rates' counters and the guard's state.
	reputation txn.Runner[reputation.Tx]
	spool      *queue.Spool
	// serverKey MACs VERP addresses and derives the keys that hash
	// suppressed addresses and seal DKIM and webhook secrets; tokens are
	// the opt-out links' keys.
	serverKey []byte
	tokens    *suppression.Keyring
	// backup writes a consistent copy (nil on PostgreSQL: pg_dump, which
	// backupElsewhere says).
	backup          func(w io.Writer, size func(int64)) (int64, error)
	backupElsewhere string
	// scrub runs after a privacy erasure: bbolt's free pages are
	// overwritten, PostgreSQL's erased tables vacuumed.
	scrub privacy.Scrubber
	// ping reports whether the database answers (nil: it is a file), on
	// a connection outside the pool; the health probe calls it.
	ping  func(context.Context) error
	close func() error

	// What several nodes on one PostgreSQL share (cluster.go); nil on
	// bbolt, whose file one process has open: leases of the work one
	// node does for all, and cluster, which starts hearing the other
	// nodes' changes and telling them of this one's events.
	leases  *postgres.Leases
	cluster func(postgres.ClusterOptions)
}

// startTimeout bounds connecting to PostgreSQL, migrating and reading the
// secrets at start: a node that cannot reach its database says so rather
// than hang.
const startTimeout = time.Minute

// openStorage opens the backend cfg.Storage.Driver names.
func (r *Relay) openStorage() (*storage, error) {
	if r.cfg.Storage.Driver == config.DriverPostgres {
		return r.openPostgres()
	}
	return r.openBolt()
}

// openBolt opens data_dir/heed.db, the spool beside it, and the key files
// under data_dir/keys, bound to the database.
func (r *Relay) openBolt() (*storage, error) {
	cfg := r.cfg
	db, err := store.Open(filepath.Join(cfg.DataDir, "heed.db"), store.Options{})
	if err != nil {
		return nil, err
	}
	r.db = db
	st := &storage{close: db.Close, backup: db.Backup, scrub: db}
	fail := func(err error) (*storage, error) {
		db.Close()
		return nil, err
	}
	if st.spool, err = queue.OpenSpool(filepath.Join(cfg.DataDir, "spool")); err != nil {
		return fail(err)
	}
	st.qs = boltdb.Queue(db).WithSpool(st.spool)
	st.events = boltdb.Events(db)
	st.tenants = boltdb.Tenants(db)
	st.webhooks = boltdb.Webhooks(db)
	st.audit = boltdb.Audit(db)
	st.consoleUsers = func(seal []byte) (*consoleusers.Service, error) { return boltdb.ConsoleUsers(db, seal, time.Now) }
	st.changes = txn.Narrow(boltdb.New(db), func(t backend.Tx) admin.Tx { return t })
	st.reputation = boltdb.Reputation(db)
	st.suppressions = func(k []byte) *suppression.Service { return boltdb.Suppressions(db, k, time.Now) }
	// Bodies whose record never committed got no 250, and bodies of
	// finished messages a crash left behind are not needed: remove them.
	if n, err := st.spool.Sweep(st.qs.NeedsBody); err != nil {
		return fail(err)
	} else if n > 0 {
		r.log.Info("heed: removed unneeded spool files", "count", n)
	}
	keyPath := filepath.Join(cfg.DataDir, "keys", "server.key")
	if st.serverKey, err = r.boundSecret("server key", keyPath, func() ([]byte, error) { return loadOrCreateKey(keyPath) }); err != nil {
		return fail(err)
	}
	if st.tokens, err = r.tokenKeys(filepath.Join(cfg.DataDir, "keys", "unsubscribe")); err != nil {
		return fail(err)
	}
	return st, nil
}

// openPostgres connects, applies the migrations the database lacks (under
// the backend's advisory lock; a schema newer than this binary is
// refused) and reads the shared secrets, making them on a new database.
func (r *Relay) openPostgres() (*storage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	db, err := openPostgresDB(ctx, r.cfg, r)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	serverKey, tokens, err := postgresSecrets(ctx, db, true)
	if err != nil {
		db.Close()
		return nil, err
	}
	b := db.Backend()
	check := db.HealthCheck()
	leases := db.Leases()
	var node *postgres.Cluster
	st := &storage{
		// Bodies are stored with their records: no spool directory, so
		// the node keeps no state of its own.
		spool: queue.DatabaseSpool(),
		qs:    postgres.Queue(b),
		backupElsewhere: "storage.driver is postgres: Heed's state is in PostgreSQL, so back it up with PostgreSQL's tools: " +
			"pg_dump (a consistent logical copy while Heed serves) or base backups with WAL archiving " +
			"(pg_basebackup, point-in-time recovery); docs/postgresql.md says how",
		events:       postgres.Events(b),
		tenants:      postgres.Tenants(b),
		webhooks:     postgres.Webhooks(b),
		audit:        postgres.Audit(b),
		consoleUsers: func(seal []byte) (*consoleusers.Service, error) { return postgres.ConsoleUsers(b, seal, time.Now) },
		changes:      txn.Narrow(b, func(t backend.Tx) admin.Tx { return t }),
		reputation:   postgres.Reputation(b),
		suppressions: func(k []byte) *suppression.Service { return postgres.Suppressions(b, k, time.Now) },
		serverKey:    serverKey,
		tokens:       tokens,
		scrub:        vacuum{db},
		ping:         check.Check,
		leases:       leases,
		cluster:      func(o postgres.ClusterOptions) { node = b.Cluster(o) },
		close: func() error {
			if node != nil {
				node.Close()
			}
			leases.Close()
			check.Close()
			db.Close()
			return nil
		},
	}
	st.qs = st.qs.WithSpool(st.spool)
	if err := r.leaseDelivery(ctx, st); err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

// leaseDelivery makes the queue claim the recipients it attempts with a
// lease, as several nodes may share the database (docs/postgresql.md,
// "Delivery leases"), under this node's name; the leases a previous life
// of this node held (it crashed, nothing of it runs) are ended at once.
func (r *Relay) leaseDelivery(ctx context.Context, st *storage) error {
	name, release, err := nodeIdentity(r.cfg.DataDir, r.cfg.Node)
	if err != nil {
		return fmt.Errorf("this node's name (data_dir/%s): %w", nodeIDFile, err)
	}
	closeDB := st.close
	st.close = func() error { err := closeDB(); release(); return err }
	st.qs.Leases(name, r.cfg.Storage.Postgres.DeliveryLease, r.cfg.Delivery.DomainConcurrency)
	n, err := st.qs.EndOwnLeases(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		r.log.Info("heed: ended the delivery leases of this node's previous run", "node", name, "count", n)
	}
	return nil
}

// openPostgresDB opens cfg's PostgreSQL database; r (nil offline) gives
// the logger.
func openPostgresDB(ctx context.Context, cfg *config.Config, r *Relay) (*postgres.DB, error) {
	pc := postgres.Config{DSN: cfg.Storage.Postgres.DSN, MaxConns: int32(cfg.Storage.Postgres.MaxConns)}
	if r != nil {
		pc.Logger = r.log
	}
	return postgres.Open(ctx, pc)
}

// The names of the secrets in PostgreSQL's server_secrets table.
const (
	secretServerKey = "server key"
	secretTokenKey  = "unsubscribe token key " // + the key's id, 1 to 255
)

// postgresSecrets reads the server key and the opt-out token keys from
// the database. With create (heed serve), a new database gets a fresh
// key of each, once; an offline command never makes them.
func postgresSecrets(ctx context.Context, db *postgres.DB, create bool) ([]byte, *suppression.Keyring, error) {
	gen := func(name string) func() (map[string][]byte, error) {
		return func() (map[string][]byte, error) {
			if !create {
				return nil, errors.New("the database has no server secrets yet: start heed serve on it once")
			}
			k := make([]byte, suppression.KeySize) // the server key's size too
			rand.Read(k)
			return map[string][]byte{name: k}, nil
		}
	}
	keys, err := db.Secrets(ctx, secretServerKey, gen(secretServerKey))
	if err != nil {
		return nil, nil, err
	}
	serverKey := keys[secretServerKey]
	if len(serverKey) < 32 {
		return nil, nil, errors.New("postgres: the server key in server_secrets is shorter than 32 bytes")
	}
	toks, err := db.Secrets(ctx, secretTokenKey, gen(secretTokenKey+"1"))
	if err != nil {
		return nil, nil, err
	}
	ring := map[byte][]byte{}
	for name, v := range toks {
		id, err := strconv.ParseUint(strings.TrimPrefix(name, secretTokenKey), 10, 8)
		if err != nil || id == 0 {
			return nil, nil, fmt.Errorf("postgres: server_secrets: %q is not %q and an id from 1 to 255", name, secretTokenKey)
		}
		ring[byte(id)] = v
	}
	// The newest key signs new links; the others still open old ones.
	tokens, err := suppression.KeyringOf(ring)
	if err != nil {
		err = fmt.Errorf("postgres: server_secrets: %w", err)
	}
	return serverKey, tokens, err
}

// vacuum is the Scrubber of a PostgreSQL database: VACUUM of the tables
// an erasure rewrote, on the pool after its transactions.
type vacuum struct{ db *postgres.DB }

func (v vacuum) Scrub() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return 0, v.db.Vacuum(ctx)
}

// dataDirExists makes data_dir: captured mail, unread reports and a
// generated TLS certificate are kept there on either backend.
func dataDirExists(cfg *config.Config) error { return os.MkdirAll(cfg.DataDir, 0o700) }

// CopySecretsToPostgres writes a bbolt relay's secrets from dataDir/keys
// (the server key and the opt-out token keys) into db's server_secrets,
// for heed storage copy: the copied rows were hashed, sealed and signed
// under them, and the links in mail already sent carry their key ids. A
// secret already there must be the same. It returns how many it wrote.
func CopySecretsToPostgres(ctx context.Context, db *postgres.DB, dataDir string) (int, error) {
	dir := filepath.Join(dataDir, "keys")
	key, err := os.ReadFile(filepath.Join(dir, "server.key"))
	if err != nil {
		return 0, err
	}
	if err := db.PutSecret(ctx, secretServerKey, key); err != nil {
		return 0, err
	}
	n := 1
	tokenDir := filepath.Join(dir, "unsubscribe")
	entries, err := os.ReadDir(tokenDir)
	if errors.Is(err, fs.ErrNotExist) {
		// A relay that never started made no opt-out link: a fresh key,
		// as bbolt would have made at start.
		k := make([]byte, suppression.KeySize)
		rand.Read(k)
		return n + 1, db.PutSecret(ctx, secretTokenKey+"1", k)
	}
	if err != nil {
		return n, err
	}
	for _, e := range entries {
		stem, ok := strings.CutSuffix(e.Name(), ".key")
		id, perr := strconv.ParseUint(stem, 10, 8)
		if !ok || perr != nil || id == 0 {
			continue // LoadKeyring refuses such names at start; not ours to judge here
		}
		v, err := os.ReadFile(filepath.Join(tokenDir, e.Name()))
		if err != nil {
			return n, err
		}
		if err := db.PutSecret(ctx, secretTokenKey+stem, v); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// PostgresSecrets reads the server key and the opt-out token keys a
// PostgreSQL relay uses, making none.
func PostgresSecrets(ctx context.Context, db *postgres.DB) ([]byte, *suppression.Keyring, error) {
	return postgresSecrets(ctx, db, false)
}
