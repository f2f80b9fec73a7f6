// Package admin is Heed's admin REST API: JSON over HTTP on the admin
// listener, for operators to manage tenants, their credentials, sending
// domains and lists, and to read events, message status and captured mail.
//
// Requests under /api/v1 carry `Authorization: Bearer <token>`; operator
// tokens are kept as SHA-256 digests and compared in constant time. Every
// error, including unknown routes and malformed bodies, is an RFC 9457
// `application/problem+json` document.
//
// echo stays at the edge (style.md): this package is the only one that sees
// echo types. Handlers call the domain packages (tenant, events, queue)
// through their plain Go interfaces and map their sentinel errors to HTTP
// statuses in one place, problem.go. All routes are in one table, routes.go,
// each with the permission it needs.
package admin

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/privacy"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
	"github.com/labstack/echo/v4"
)

// Captures reads the capture directory (outbound.ListCaptured and
// outbound.OpenCaptured over it). Open returns an error satisfying
// errors.Is(err, fs.ErrNotExist) for an unknown id.
type Captures interface {
	List() ([]outbound.Captured, error)
	Open(id string) (io.ReadCloser, error)
}

// MessageReader returns one message with its per-recipient status, and
// deletes a deleted tenant's messages; queue.Records satisfies it.
type MessageReader interface {
	Message(ctx context.Context, id string) (*queue.Message, error)
	DeleteTenant(ctx context.Context, tenant string) error
}

// Options configure the admin API. Tenants is required; the other sources
// may be nil, and their endpoints then answer 404.
type Options struct {
	Tenants *tenant.Registry
	Events  events.Reader
	// Suppressions is the suppression list.
	Suppressions suppression.Store
	Messages     MessageReader
	// Webhooks manages the tenants' webhook endpoints.
	Webhooks *webhooks.Manager
	// Audit keeps a record of every change made through the API.
	Audit AuditLog
	// Changes runs the admin API's transactions on the backend that keeps
	// Audit and every store above: a change and its audit record commit
	// together (change.go). nil: the record is appended after the change.
	Changes txn.Runner[Tx]
	// Privacy answers export and erasure requests (nil: 404).
	Privacy *privacy.Service
	// Backup writes a consistent copy of the database (nil: 404).
	Backup func(w io.Writer, size func(int64)) (int64, error)
	// BackupElsewhere, when Backup is nil, says how this storage is
	// backed up instead (PostgreSQL: its own tools); the route then
	// answers 501 with it rather than 404.
	BackupElsewhere string
	// Metrics serves /metrics (nil: 404).
	Metrics http.Handler
	// Captures is nil when not in capture mode: /api/v1/captured answers 404.
	Captures Captures
	// Unread is reports/unread (nil: /api/v1/reports/unread answers 404).
	Unread UnreadReports
	// OperatorTokens may do everything. With none, every /api/v1 request
	// is refused.
	OperatorTokens []string
	// Ready reports readiness for /readyz (nil: always ready).
	Ready func() error
	// Unavailable, when set, reports that the database is known to be
	// down (package health): the API then answers 503 at once (see
	// refuseWhileDown).
	Unavailable func() bool
	// Hostname is the relay's host name, named in the SPF advice for
	// sending domains.
	Hostname string
	// LookupTXT resolves TXT records for the DNS check of a domain and
	// before a key is activated; nil skips both checks.
	LookupTXT func(ctx context.Context, name string) ([]string, error)
	// Readiness makes the sender readiness reports of domains (nil: 404).
	Readiness *readiness.Checker
	// Rates and Guard are the reputation rates and guard (nil: 404).
	Rates  *reputation.Rates
	Guard  *reputation.Guard
	Logger *slog.Logger
	Now    func() time.Time
}

// server holds the handlers' dependencies.
type server struct {
	Options
	operators [][sha256.Size]byte

	// refusals counts, per tenant, the ip credentials refused since the
	// start because their network overlaps another tenant's.
	refusalsMu sync.Mutex
	refusals   map[string]int
}

// New returns the admin API handler: an *echo.Echo with every route of
// routes.go and errors written as problem+json.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &server{Options: o}
	for _, t := range o.OperatorTokens {
		if t != "" {
			s.operators = append(s.operators, sha256.Sum256([]byte(t)))
		}
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	e.Use(s.recoverPanic, limitBody, s.refuseWhileDown)
	s.register(e)
	return e
}

// now is the clock in UTC.
func (s *server) now() time.Time { return s.Now().UTC() }
