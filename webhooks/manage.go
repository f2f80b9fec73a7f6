package webhooks

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/txn"
)

// Sealer encrypts endpoint secrets at rest. Unlike a password, a secret
// must be read back to sign, so it is encrypted (AES-256-GCM under a key
// derived from the server key), bound to its tenant and endpoint.
type Sealer struct{ aead cipher.AEAD }

// NewSealer derives the sealing key from the server key.
func NewSealer(serverKey []byte) (*Sealer, error) {
	k, err := hkdf.Key(sha256.New, serverKey, nil, "heed webhook secrets at rest v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

func sealAD(tenant, id string) []byte { return []byte("webhook\x00" + tenant + "\x00" + id) }

func (s *Sealer) seal(tenant, id, secret string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, []byte(secret), sealAD(tenant, id)), nil
}

func (s *Sealer) open(tenant, id string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed secret too short")
	}
	secret, err := s.aead.Open(nil, sealed[:n], sealed[n:], sealAD(tenant, id))
	if err != nil {
		return nil, errors.New("sealed secret does not open under this server key")
	}
	return ParseSecret(string(secret))
}

// openAll returns the HMAC keys of an endpoint's secrets, current first.
func (s *Sealer) openAll(ep *Endpoint) ([]openKey, error) {
	var out []openKey
	for _, sec := range ep.Secrets {
		k, err := s.open(ep.Tenant, ep.ID, sec.Sealed)
		if err != nil {
			return nil, err
		}
		out = append(out, openKey{key: k, expires: sec.Expires})
	}
	return out, nil
}

// Limits of endpoint configuration.
const (
	// MaxEndpoints bounds a tenant's endpoints.
	MaxEndpoints = 20
	// DefaultGrace is how long a rotated-out secret keeps signing.
	DefaultGrace = 24 * time.Hour
	// MaxGrace bounds the grace a rotation may ask for.
	MaxGrace = 7 * 24 * time.Hour
	// MaxOldSecrets bounds the rotated-out secrets that still sign.
	MaxOldSecrets = 2
	// MaxReplay bounds the events one replay schedules.
	MaxReplay = 1_000_000
)

// DefaultEndpoint is the id of the endpoint `PUT .../webhook` manages.
const DefaultEndpoint = "default"

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Manager is what the admin API calls: endpoints, secrets, deliveries,
// resends and replays.
type Manager struct {
	Store        Store
	Events       events.Source
	Sealer       *Sealer
	AllowPrivate bool
	// Changed is told about every change of an endpoint (the dispatcher's
	// Changed); nil for none.
	Changed func()
	Now     func() time.Time
}

func (m *Manager) now() time.Time {
	if m.Now == nil {
		return time.Now().UTC()
	}
	return m.Now().UTC()
}

// changed tells the dispatcher of a change made with ctx, once it is
// committed: under a txn.Join, when the joined transaction ends, so that
// the dispatcher does not read the endpoints before the change is there.
func (m *Manager) changed(ctx context.Context) {
	if m.Changed != nil {
		txn.AfterCommit(ctx, m.Changed)
	}
}

// Input is an endpoint's configuration as a client gives it.
type Input struct {
	URL         string        `json:"url"`
	Types       []events.Type `json:"types"`
	Description string        `json:"description"`
}

func (m *Manager) check(in *Input) error {
	if _, err := CheckURL(in.URL, m.AllowPrivate); err != nil {
		return fmt.Errorf("%w: url: %v", ErrInvalid, err)
	}
	for _, t := range in.Types {
		if !slices.Contains(events.AllTypes, t) {
			return fmt.Errorf("%w: types: %q is not an event type (one of %v)", ErrInvalid, t, events.AllTypes)
		}
	}
	slices.Sort(in.Types)
	in.Types = slices.Compact(in.Types)
	if len(in.Description) > 256 {
		return fmt.Errorf("%w: description: at most 256 bytes", ErrInvalid)
	}
	return nil
}

// CheckID refuses an endpoint id the API may not use.
func CheckID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: endpoint id %q: 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit", ErrInvalid, id)
	}
	return nil
}

// Create adds an endpoint (a new id when id is empty) and returns it with
// its secret, which is shown this once.
func (m *Manager) Create(ctx context.Context, tenant, id string, in Input) (*Endpoint, string, error) {
	if id == "" {
		id = "ep_" + ids.New(m.now())
	}
	if err := CheckID(id); err != nil {
		return nil, "", err
	}
	if err := m.check(&in); err != nil {
		return nil, "", err
	}
	sealed, secret, err := m.newSecret(tenant, id)
	if err != nil {
		return nil, "", err
	}
	now := m.now()
	ep := &Endpoint{
		Tenant: tenant, ID: id, URL: in.URL, Types: in.Types, Description: in.Description,
		State: Active, CreatedAt: now, UpdatedAt: now,
		Secrets: []SealedSecret{sealed},
	}
	if err := m.Store.CreateEndpoint(ctx, ep); err != nil {
		return nil, "", err
	}
	m.changed(ctx)
	return ep, secret, nil
}

// newSecret makes a secret for the endpoint id of tenant and returns it
// sealed, to store, and in clear, to show this once.
func (m *Manager) newSecret(tenant, id string) (SealedSecret, string, error) {
	secret, err := NewSecret()
	if err != nil {
		return SealedSecret{}, "", err
	}
	sealed, err := m.Sealer.seal(tenant, id, secret)
	if err != nil {
		return SealedSecret{}, "", err
	}
	return SealedSecret{Sealed: sealed, Prefix: secret[:len(SecretPrefix)+4]}, secret, nil
}

// Patch is a change of an endpoint; nil fields stay.
type Patch struct {
	URL         *string        `json:"url"`
	Types       *[]events.Type `json:"types"`
	Description *string        `json:"description"`
	// State may be Active (enable, resume) or Disabled.
	State *State `json:"state"`
}

// Update applies p.
func (m *Manager) Update(ctx context.Context, tenant, id string, p Patch) (*Endpoint, error) {
	if p.State != nil && *p.State != Active && *p.State != Disabled {
		return nil, fmt.Errorf("%w: state: %q or %q", ErrInvalid, Active, Disabled)
	}
	var resumed, disabled bool
	ep, err := m.Store.UpdateEndpoint(ctx, tenant, id, func(ep *Endpoint) error {
		in := Input{URL: ep.URL, Types: ep.Types, Description: ep.Description}
		if p.URL != nil {
			in.URL = *p.URL
		}
		if p.Types != nil {
			in.Types = *p.Types
		}
		if p.Description != nil {
			in.Description = *p.Description
		}
		if err := m.check(&in); err != nil {
			return err
		}
		ep.URL, ep.Types, ep.Description = in.URL, in.Types, in.Description
		resumed, disabled = false, false
		if p.State != nil && *p.State != ep.State {
			resumed, disabled = *p.State == Active, *p.State == Disabled
			ep.State, ep.Reason = *p.State, ""
			if disabled {
				ep.Reason = "disabled through the API"
			}
		}
		ep.UpdatedAt = m.now()
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case resumed:
		err = m.Store.Reschedule(ctx, tenant, id, m.now())
	case disabled:
		err = m.Store.Reschedule(ctx, tenant, id, Hold)
	}
	m.changed(ctx)
	return ep, err
}

// Put creates the endpoint id with in, or changes its URL, types and
// description; the secret is returned only when it was created.
func (m *Manager) Put(ctx context.Context, tenant, id string, in Input) (ep *Endpoint, secret string, created bool, err error) {
	for range 2 {
		ep, err = m.Update(ctx, tenant, id, Patch{URL: &in.URL, Types: &in.Types, Description: &in.Description})
		if !errors.Is(err, ErrNotFound) {
			return ep, "", false, err
		}
		ep, secret, err = m.Create(ctx, tenant, id, in)
		if !errors.Is(err, ErrExists) { // else created meanwhile: update it
			return ep, secret, err == nil, err
		}
	}
	return nil, "", false, err
}

// Rotate gives an endpoint a new secret, shown this once; the old one
// keeps signing alongside for grace (DefaultGrace when 0).
func (m *Manager) Rotate(ctx context.Context, tenant, id string, grace time.Duration) (*Endpoint, string, error) {
	if grace == 0 {
		grace = DefaultGrace
	}
	if grace < 0 || grace > MaxGrace {
		return nil, "", fmt.Errorf("%w: grace: between 0 and %s", ErrInvalid, MaxGrace)
	}
	sealed, secret, err := m.newSecret(tenant, id)
	if err != nil {
		return nil, "", err
	}
	now := m.now()
	ep, err := m.Store.UpdateEndpoint(ctx, tenant, id, func(ep *Endpoint) error {
		keep := []SealedSecret{sealed}
		for _, s := range ep.Secrets {
			if s.Expires.IsZero() {
				s.Expires = now.Add(grace)
			}
			// The newest old secrets, at most MaxOldSecrets: each signs
			// every request, and receivers limit header sizes.
			if s.Expires.After(now) && len(keep) <= MaxOldSecrets {
				keep = append(keep, s)
			}
		}
		ep.Secrets, ep.UpdatedAt = keep, now
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	m.changed(ctx)
	return ep, secret, nil
}

// Delete removes an endpoint with its deliveries.
func (m *Manager) Delete(ctx context.Context, tenant, id string) error {
	err := m.Store.DeleteEndpoint(ctx, tenant, id)
	m.changed(ctx)
	return err
}

// DeleteTenant removes every endpoint of a tenant.
func (m *Manager) DeleteTenant(ctx context.Context, tenant string) error {
	err := m.Store.DeleteTenant(ctx, tenant)
	m.changed(ctx)
	return err
}

// Delivery returns the delivery of one event to an endpoint: ref is the
// event's id (the webhook-id) or its sequence number.
func (m *Manager) Delivery(ctx context.Context, tenant, id, ref string) (*Delivery, error) {
	if _, err := m.Store.Endpoint(ctx, tenant, id); err != nil {
		return nil, err
	}
	ev, err := m.findEvent(ctx, tenant, ref)
	if err != nil {
		return nil, err
	}
	return m.Store.Delivery(ctx, tenant, id, ev.Seq)
}

// Resend sends one event to an endpoint again, with its id: ref is the
// event's id (the webhook-id) or its sequence number. Any event of the
// tenant may be resent, also one the endpoint never got.
func (m *Manager) Resend(ctx context.Context, tenant, id, ref string) (*Delivery, error) {
	ep, err := m.Store.Endpoint(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	ev, err := m.findEvent(ctx, tenant, ref)
	if err != nil {
		return nil, err
	}
	if _, err := m.Store.Schedule(ctx, tenant, id, []events.Event{ev}, dueFor(ep, m.now()), m.now()); err != nil {
		return nil, err
	}
	m.changed(ctx)
	return m.Store.Delivery(ctx, tenant, id, ev.Seq)
}

// dueFor is when a resend to ep is due: now, or Hold while it is paused
// or disabled (it goes out when the endpoint recovers).
func dueFor(ep *Endpoint, now time.Time) time.Time {
	if ep.State != Active {
		return Hold
	}
	return now
}

// findEvent looks an event of tenant up by sequence number, or by id:
// an id tells when the event happened, so only the events of that moment
// are read.
func (m *Manager) findEvent(ctx context.Context, tenant, eventID string) (events.Event, error) {
	if seq, err := strconv.ParseUint(eventID, 10, 64); err == nil {
		ev, err := m.Events.Event(ctx, tenant, seq)
		if errors.Is(err, events.ErrNotFound) {
			return ev, fmt.Errorf("%w: event %d", ErrNotFound, seq)
		}
		return ev, err
	}
	raw, isEvent := strings.CutPrefix(eventID, "evt_")
	at, ok := ids.Time(raw)
	if !isEvent || !ok {
		return events.Event{}, fmt.Errorf("%w: event %q", ErrNotFound, eventID)
	}
	var found events.Event
	err := m.scan(ctx, tenant, at, at.Add(time.Millisecond), func(ev events.Event) bool {
		if ev.ID == eventID {
			found = ev
			return false
		}
		return true
	})
	if err == nil && found.ID == "" {
		err = fmt.Errorf("%w: event %q", ErrNotFound, eventID)
	}
	return found, err
}

// scan calls fn with the tenant's events that happened in [since, until),
// oldest first, until fn returns false.
func (m *Manager) scan(ctx context.Context, tenant string, since, until time.Time, fn func(events.Event) bool) error {
	after, err := m.Events.Since(ctx, since)
	if err != nil {
		return err
	}
	for {
		evs, err := m.Events.Events(ctx, tenant, after, 1000)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Time.After(until.Add(events.TimeSlack)) {
				return nil // later events are later still
			}
			if !ev.Time.Before(since) && ev.Time.Before(until) && !fn(ev) {
				return nil
			}
		}
		if len(evs) < 1000 {
			return nil
		}
		after = evs[len(evs)-1].Seq
	}
}

// Replay sends again every event of the tenant that happened in [since,
// until) and the endpoint takes, and returns how many were scheduled. A
// range of more than MaxReplay events is refused before anything is
// scheduled.
func (m *Manager) Replay(ctx context.Context, tenant, id string, since, until time.Time) (int, error) {
	ep, err := m.Store.Endpoint(ctx, tenant, id)
	if err != nil {
		return 0, err
	}
	if !until.After(since) {
		return 0, fmt.Errorf("%w: until must be after since", ErrInvalid)
	}
	n := 0
	err = m.scan(ctx, tenant, since, until, func(ev events.Event) bool {
		if ep.Wants(ev.Type) {
			n++
		}
		return n <= MaxReplay
	})
	if err != nil {
		return 0, err
	}
	if n > MaxReplay {
		return 0, fmt.Errorf("%w: the range holds more than %d events; replay it in parts", ErrInvalid, MaxReplay)
	}
	at := dueFor(ep, m.now())
	total := 0
	var batch []events.Event
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		k, err := m.Store.Schedule(ctx, tenant, id, batch, at, m.now())
		total += k
		batch = batch[:0]
		m.changed(ctx)
		return err
	}
	err = m.scan(ctx, tenant, since, until, func(ev events.Event) bool {
		if ep.Wants(ev.Type) {
			batch = append(batch, ev)
		}
		if len(batch) == 1000 {
			err = flush()
		}
		return err == nil
	})
	if err != nil {
		return total, err
	}
	return total, flush()
}

// maxBacklogCount bounds the events Backlog counts per endpoint, so a
// metrics scrape stays quick whatever the backlog.
const maxBacklogCount = 1_000_000

// Backlog counts the events waiting to go out: those after each
// endpoint's cursor that it takes or may take (at most a million an
// endpoint; the cursor trails the deliveries in flight a little), and the
// deliveries scheduled again.
func (m *Manager) Backlog(ctx context.Context) (int, error) {
	eps, err := m.Store.Endpoints(ctx, "")
	if err != nil {
		return 0, err
	}
	total := 0
	for i := range eps {
		n, err := m.Waiting(ctx, &eps[i], maxBacklogCount)
		if err != nil {
			return 0, err
		}
		total += n
	}
	n, err := m.Store.Scheduled(ctx)
	return total + n, err
}

// Waiting counts the tenant's events the dispatcher has not yet handed
// off to ep (those after its cursor), stopping at max: an endpoint's
// share of the backlog, without its scheduled retries.
func (m *Manager) Waiting(ctx context.Context, ep *Endpoint, max int) (int, error) {
	return m.Events.CountAfter(ctx, ep.Tenant, ep.Cursor, max)
}
