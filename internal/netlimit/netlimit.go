// Package netlimit keeps one client from holding a listener: Listener caps
// the connections open at once, in total and per client address, and
// Deadlines makes an HTTP exchange progress or end, a read or a write at a
// time, without capping how long a large body may take in all.
//
// A client address is the peer's IP address; an IPv6 peer's /64, since one
// host is commonly given a whole /64 (RFC 7421) and could otherwise take
// a slot per address.
package netlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Listener accepts at most Max connections at once, and PerClient from one
// client address. A connection over either cap is handed to refuse (which
// may write a reply and must close it) on its own goroutine, so Accept
// never waits on a client, and is not returned: the server never sees it.
// Beyond Max refusals in flight, further ones are closed at once.
type Listener struct {
	net.Listener
	max, perClient int
	refuse         func(net.Conn)

	refusing atomic.Int64

	mu     sync.Mutex
	active int
	byAddr map[netip.Addr]int
}

// New wraps l. refuse nil closes refused connections without a word.
func New(l net.Listener, max, perClient int, refuse func(net.Conn)) *Listener {
	if refuse == nil {
		refuse = func(c net.Conn) { c.Close() }
	}
	return &Listener{Listener: l, max: max, perClient: perClient, refuse: refuse, byAddr: map[netip.Addr]int{}}
}

// Accept returns the next connection within the caps.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := ClientOf(c.RemoteAddr())
		if !l.take(key) {
			// Refusals in flight are capped too, or a flood of them would
			// hold the descriptors the cap is there to save.
			if l.refusing.Add(1) > int64(l.max) {
				l.refusing.Add(-1)
				c.Close()
				continue
			}
			go func() {
				defer l.refusing.Add(-1)
				l.refuse(c)
			}()
			continue
		}
		return &conn{Conn: c, release: sync.OnceFunc(func() { l.give(key) })}, nil
	}
}

// Open is how many connections are open now, in total and from the
// client address of addr.
func (l *Listener) Open(addr net.Addr) (total, client int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active, l.byAddr[ClientOf(addr)]
}

func (l *Listener) take(key netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active >= l.max || l.byAddr[key] >= l.perClient {
		return false
	}
	l.active++
	l.byAddr[key]++
	return true
}

func (l *Listener) give(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active--
	// Deleted at zero, so the map holds only the clients connected now.
	if l.byAddr[key]--; l.byAddr[key] <= 0 {
		delete(l.byAddr, key)
	}
}

// conn gives its slot back when closed, once however often it is closed.
type conn struct {
	net.Conn
	release func()
}

func (c *conn) Close() error {
	c.release()
	return c.Conn.Close()
}

// Client is what every per-client limit in Heed counts by (connection
// caps, rate limits, AUTH failures): an IPv4 address, or an IPv6
// address's /64 (its first address), since one host is commonly given a
// whole /64 and can pick any address in it. IPv4-mapped addresses count
// as the IPv4 address.
func Client(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// ClientOf is Client of a peer's address: a connection's RemoteAddr, or
// an http.Request's RemoteAddr through ClientOfString. An address with no
// IP (a test's pipe) gives the zero Addr, which then counts as one client.
func ClientOf(addr net.Addr) netip.Addr {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return Client(ta.AddrPort().Addr())
	}
	return ClientOfString(addr.String())
}

// ClientOfString is Client of a "host:port" string.
func ClientOfString(hostport string) netip.Addr {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.Addr{}
	}
	return Client(ap.Addr())
}
