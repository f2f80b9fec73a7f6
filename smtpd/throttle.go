package smtpd

import (
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
// A username's own limit, higher than the address's, stops a guesser
// spread over many addresses. It would also let anyone who knows a
// username lock its owner out, so it does not apply to the client address
// that last authenticated as that user: the app that really holds the
// password keeps working from where it runs. A success never clears
// failures, or a tenant holding its own password could interleave
// successes with guesses at another's.
//
// State is in memory; a restart forgets it.
type authLimiter struct {
	perClient, perUser int
	window             time.Duration
	now                func() time.Time

	mu       sync.Mutex
	clients  map[netip.Addr]*failures
	users    map[string]*failures
	lastGood map[string]netip.Addr
	swept    time.Time  // see sweep
	finished *sync.Cond // on mu: a check in progress has finished
}

// failures is one key's failures within the window, oldest first, and how
// many of its checks are in progress.
type failures struct {
	at      []time.Time
	pending int
}

// maxTracked bounds each table: past it, and with nothing expired to drop,
// new keys are refused rather than left unlimited (see allow).
const maxTracked = 100000

// maxUsername is as much of a username as is kept: real ones are short
// ids, and a guesser should not choose how much memory a failure takes.
const maxUsername = 128

func newAuthLimiter(perClient, perUser int, window time.Duration, now func() time.Time) *authLimiter {
	l := &authLimiter{
		perClient: perClient, perUser: perUser, window: window, now: now,
		clients:  make(map[netip.Addr]*failures),
		users:    make(map[string]*failures),
		lastGood: make(map[string]netip.Addr),
	}
	l.finished = sync.NewCond(&l.mu)
	return l
}

// lockout says why AUTH is refused.
type lockout int

const (
	notLocked lockout = iota
	clientLocked
	userLocked
)

// blocked reports whether client is locked out now, for refusing AUTH
// before the client has sent a password.
func (l *authLimiter) blocked(client netip.Addr) (lockout, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if f := l.clients[netlimit.Client(client)]; f != nil {
		if wait := f.wait(now, l.window, l.perClient); wait > 0 {
			return clientLocked, wait
		}
	}
	return notLocked, 0
}

// allow reports whether the password of user may be checked for client.
// When it may, done must be called with the outcome, exactly once.
func (l *authLimiter) allow(client netip.Addr, user string) (lockout, time.Duration) {
	client, user = netlimit.Client(client), truncate(user)
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		now := l.now()
		l.sweep(now)
		cf, ok := entry(l.clients, client)
		if !ok {
			return clientLocked, l.window
		}
		if wait := cf.wait(now, l.window, l.perClient); wait > 0 {
			return clientLocked, wait
		}
		uf, ok := entry(l.users, user)
		if !ok {
			return clientLocked, l.window
		}
		userLimit := l.perUser
		if good, known := l.lastGood[user]; known && good == client {
			userLimit = 0
		}
		if userLimit > 0 {
			if wait := uf.wait(now, l.window, userLimit); wait > 0 {
				return userLocked, wait
			}
		}
		if cf.undecided(l.perClient) || userLimit > 0 && uf.undecided(userLimit) {
			l.finished.Wait()
			continue
		}
		cf.pending++
		uf.pending++
		return notLocked, 0
	}
}

// done records the outcome of a check allow let through. An internal
// error is neither: the check is simply no longer in progress.
func (l *authLimiter) done(client netip.Addr, user string, failed, succeeded bool) {
	client, user = netlimit.Client(client), truncate(user)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, f := range []*failures{l.clients[client], l.users[user]} {
		if f == nil {
			continue // cannot happen: allow made both
		}
		f.pending--
		if failed {
			f.at = append(f.at, now)
		}
	}
	if succeeded {
		l.lastGood[user] = client
	}
	l.finished.Broadcast()
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

// sweep drops idle keys when a table is full, at most once a second: a
// sweep is a pass over the whole table under the lock.
func (l *authLimiter) sweep(now time.Time) {
	if len(l.clients) < maxTracked && len(l.users) < maxTracked || now.Sub(l.swept) < time.Second {
		return
	}
	l.swept = now
	prune(l.clients, now, l.window)
	prune(l.users, now, l.window)
}

func prune[K comparable](m map[K]*failures, now time.Time, window time.Duration) {
	for k, f := range m {
		if f.idle(now, window) {
			delete(m, k)
		}
	}
}

// entry returns key's failures, making them if need be; false when the
// table is full. Refusing then keeps a guesser with more addresses (or
// usernames) than the table holds from guessing unlimited; an address
// with no failures of its own never reaches here unless it is checking a
// password.
func entry[K comparable](m map[K]*failures, key K) (*failures, bool) {
	if f := m[key]; f != nil {
		return f, true
	}
	if len(m) >= maxTracked {
		return nil, false
	}
	f := &failures{}
	m[key] = f
	return f, true
}

func truncate(user string) string {
	if len(user) > maxUsername {
		return user[:maxUsername]
	}
	return user
}
