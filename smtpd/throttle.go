package smtpd

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/netlimit"
)

// authLimiter bounds password guessing. It is asked before a password is
// checked, not after: once a client address (or a username, from any
// address) has failed limit times within the window, further AUTH is
// refused at once without looking at the password, so the answer, and the
// time it takes, is the same whether the guess was right or wrong. An
// earlier design delayed only wrong answers; a client that gave up after a
// fraction of a second learnt that its guess was wrong without waiting,
// and each delayed answer held a connection slot while the server slept.
//
// The window slides: a key may have at most limit failures in any window,
// and a refused key learns when its oldest failure will have aged out.
// Parallel connections cannot race past the limit: a check starts only if
// the limit would hold were every check in progress to fail; otherwise it
// waits for them to finish, which takes a hash and a database read, not a
// policy's delay.
//
// Failures count against the client (netlimit.Client: an IPv4 address or
// an IPv6 /64), against the client's IPv6 /48 with perNet, so that one
// holder of a /48 cannot multiply its guesses by the 65,536 /64s in it,
// and against the username, whose own limit stops a guesser spread over
// many networks.
//
// Those limits would let one client lock others out: anyone who knows a
// username could lock its owner out, and one tenant's app retrying a stale
// password would lock out every tenant behind the same NAT. So a username
// that last authenticated from a client is held, from that client, only
// to its own failures there (perClient of them), not to the client's, the
// network's or the username's: getting that exemption took the password,
// so it gives a guesser nothing. A success never clears failures, or a
// tenant holding its own password could interleave successes with guesses
// at another's.
//
// Memory is bounded without refusing anyone for want of room. Usernames
// that have a credential are always tracked: there are only as many as
// credentials, and an attacker cannot evict them. The other tables
// (clients, networks, usernames without a credential) hold maxTracked
// entries each and, when full, drop the one used least recently; a client
// whose failures are dropped may guess again, but only after as many
// other clients (or networks, with their own limit) have failed in
// between. An earlier design refused every key not yet in a full table,
// which let anyone with a third of a /48 lock every tenant out of AUTH.
// Whether a username has a credential is learnt from the same lookup that
// checks the password, and only after the answer (see done): unknown and
// known usernames are limited alike and answered alike.
//
// State is in memory; a restart forgets it.
type authLimiter struct {
	perClient, perNet, perUser int
	window                     time.Duration
	now                        func() time.Time

	mu        sync.Mutex
	clients   *lru[netip.Addr] // by netlimit.Client
	nets      *lru[netip.Addr] // by IPv6 /48
	strangers *lru[string]     // usernames not known to have a credential
	users     map[string]*failures
	lastGood  map[string]*goodPair
	finished  *sync.Cond // on mu: a check in progress has finished
}

// goodPair is where a username last authenticated, and its failures from
// there.
type goodPair struct {
	client netip.Addr
	failures
}

// failures is one key's failures within the window, oldest first, and how
// many of its checks are in progress.
type failures struct {
	at      []time.Time
	pending int
}

// maxTracked bounds each of the evicting tables.
const maxTracked = 100000

// maxUsername is as much of a username as is kept: real ones are short
// ids, and a guesser should not choose how much memory a failure takes.
const maxUsername = 128

// netFactor is how many clients' worth of failures one IPv6 /48 may make.
const netFactor = 4

func newAuthLimiter(perClient, perUser int, window time.Duration, now func() time.Time) *authLimiter {
	l := &authLimiter{
		perClient: perClient, perNet: netFactor * perClient, perUser: perUser, window: window, now: now,
		clients:   newLRU[netip.Addr](maxTracked),
		nets:      newLRU[netip.Addr](maxTracked),
		strangers: newLRU[string](maxTracked),
		users:     make(map[string]*failures),
		lastGood:  make(map[string]*goodPair),
	}
	l.finished = sync.NewCond(&l.mu)
	return l
}

// check is one password check the limiter let through: done must be
// called with it exactly once.
type check struct {
	client netip.Addr
	user   string
	counts []*failures // what a failure counts against
}

// limited is one limit a check must be within.
type limited struct {
	f     *failures
	limit int
}

// gate finds what a check of user's password from addr counts against and
// must be within, making the records it lacks.
func (l *authLimiter) gate(addr netip.Addr, user string) (client netip.Addr, counts []*failures, limits []limited) {
	client = netlimit.Client(addr)
	cf := l.clients.get(client)
	uf := l.users[user]
	if uf == nil {
		uf = l.strangers.get(user)
	}
	counts = []*failures{cf, uf}
	var nf *failures
	if client.Is6() {
		nf = l.nets.get(netip.PrefixFrom(client, 48).Masked().Addr())
		counts = append(counts, nf)
	}
	if g := l.lastGood[user]; g != nil && g.client == client {
		return client, append(counts, &g.failures), []limited{{&g.failures, l.perClient}}
	}
	limits = []limited{{cf, l.perClient}, {uf, l.perUser}}
	if nf != nil {
		limits = append(limits, limited{nf, l.perNet})
	}
	return client, counts, limits
}

// locked reports how long until user may try from addr; 0 if it may now.
// It is asked when the username is known and the password not yet sent
// (AUTH LOGIN), so a locked-out client is not asked for a password.
func (l *authLimiter) locked(addr netip.Addr, user string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _, limits := l.gate(addr, truncate(user))
	return l.wait(l.now(), limits)
}

// wait is the longest wait of limits.
func (l *authLimiter) wait(now time.Time, limits []limited) time.Duration {
	var longest time.Duration
	for _, c := range limits {
		longest = max(longest, c.f.wait(now, l.window, c.limit))
	}
	return longest
}

// allow returns a check of user's password from addr, or nil and how long
// until one may be made.
func (l *authLimiter) allow(addr netip.Addr, user string) (*check, time.Duration) {
	user = truncate(user)
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		client, counts, limits := l.gate(addr, user)
		if wait := l.wait(l.now(), limits); wait > 0 {
			return nil, wait
		}
		undecided := false
		for _, c := range limits {
			undecided = undecided || c.f.undecided(c.limit)
		}
		if undecided {
			l.finished.Wait()
			continue
		}
		for _, f := range counts {
			f.pending++
		}
		return &check{client: client, user: user, counts: counts}, 0
	}
}

// outcome is what a check found.
type outcome int

const (
	// checkErred: an internal error; the check is simply no longer in
	// progress.
	checkErred outcome = iota
	succeeded
	failedKnown   // a wrong password for a username with a credential
	failedUnknown // a username without one
)

// done records the outcome of c.
func (l *authLimiter) done(c *check, o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, f := range c.counts {
		f.pending--
		if o == failedKnown || o == failedUnknown {
			f.at = append(f.at, now)
		}
	}
	switch o {
	case succeeded:
		if g := l.lastGood[c.user]; g == nil || g.client != c.client {
			l.lastGood[c.user] = &goodPair{client: c.client}
		}
		fallthrough
	case failedKnown:
		l.keep(c.user, now)
	case failedUnknown:
		// A credential deleted since: its username may be evicted now.
		if f := l.users[c.user]; f != nil {
			delete(l.users, c.user)
			delete(l.lastGood, c.user)
			l.strangers.put(c.user, f)
		}
	}
	l.finished.Broadcast()
}

// keep moves user's record to the table nothing is evicted from, or drops
// it when there is nothing in it to keep (it is made again on the next
// check).
func (l *authLimiter) keep(user string, now time.Time) {
	f := l.users[user]
	if f == nil {
		if f = l.strangers.remove(user); f == nil {
			return // evicted while the check was in progress
		}
	}
	if f.idle(now, l.window) {
		delete(l.users, user)
		return
	}
	l.users[user] = f
}

// wait is how long until f has fewer than limit failures within the
// window; 0 if it has now. Failures that have aged out are dropped on the
// way.
func (f *failures) wait(now time.Time, window time.Duration, limit int) time.Duration {
	f.expire(now, window)
	if len(f.at) < limit {
		return 0
	}
	// The first to age out of the failures that make up the limit.
	return f.at[len(f.at)-limit].Add(window).Sub(now)
}

// undecided reports whether the checks in progress could, by failing,
// bring f to limit.
func (f *failures) undecided(limit int) bool {
	return f.pending > 0 && len(f.at)+f.pending >= limit
}

func (f *failures) expire(now time.Time, window time.Duration) {
	i := 0
	for i < len(f.at) && now.Sub(f.at[i]) >= window {
		i++
	}
	f.at = f.at[i:]
}

func (f *failures) idle(now time.Time, window time.Duration) bool {
	f.expire(now, window)
	return len(f.at) == 0 && f.pending == 0
}

func truncate(user string) string {
	if len(user) > maxUsername {
		return user[:maxUsername]
	}
	return user
}

// lru is a table of failures of at most size keys that, when full, gives
// the place of the key used least recently to a newcomer. A check in
// progress holds its records by pointer, so one evicted meanwhile is
// finished on a record nobody sees any more.
type lru[K comparable] struct {
	size  int
	items map[K]*list.Element // of *lruItem[K]
	order list.List           // most recently used at the front
}

type lruItem[K comparable] struct {
	key K
	f   *failures
}

func newLRU[K comparable](size int) *lru[K] {
	return &lru[K]{size: size, items: make(map[K]*list.Element)}
}

// get returns key's record, made if need be, and marks it used.
func (t *lru[K]) get(key K) *failures {
	if e, ok := t.items[key]; ok {
		t.order.MoveToFront(e)
		return e.Value.(*lruItem[K]).f
	}
	f := &failures{}
	t.put(key, f)
	return f
}

// put adds key's record, evicting the least recently used one if full.
func (t *lru[K]) put(key K, f *failures) {
	t.remove(key)
	if len(t.items) >= t.size {
		e := t.order.Back()
		delete(t.items, e.Value.(*lruItem[K]).key)
		t.order.Remove(e)
	}
	t.items[key] = t.order.PushFront(&lruItem[K]{key: key, f: f})
}

// remove takes key's record out of the table; nil if it is not there.
func (t *lru[K]) remove(key K) *failures {
	e, ok := t.items[key]
	if !ok {
		return nil
	}
	delete(t.items, key)
	t.order.Remove(e)
	return e.Value.(*lruItem[K]).f
}

func (t *lru[K]) len() int { return len(t.items) }
