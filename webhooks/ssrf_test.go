package webhooks

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// blockedAddrs holds at least one address of every range CheckAddr refuses,
// with a word the error must contain.
var blockedAddrs = []struct {
	addr string
	kind string
}{
	{"0.0.0.0", "unspecified"},
	{"0.1.2.3", "unspecified"},
	{"127.0.0.1", "loopback"},
	{"127.255.255.254", "loopback"},
	{"10.0.0.1", "private"},
	{"172.16.0.1", "private"},
	{"172.31.255.255", "private"},
	{"192.168.1.1", "private"},
	{"169.254.0.1", "link-local"},
	{"169.254.169.254", "link-local"}, // AWS, GCP, Azure metadata
	{"100.64.0.1", "CGNAT"},
	{"100.100.100.200", "CGNAT"}, // Alibaba Cloud metadata
	{"100.127.255.255", "CGNAT"},
	{"224.0.0.1", "multicast"},
	{"239.255.255.250", "multicast"},
	{"255.255.255.255", "broadcast"},
	{"192.0.0.8", "IETF"},
	{"192.0.0.170", "IETF"},
	{"198.18.0.1", "benchmarking"},
	{"198.19.255.255", "benchmarking"},
	{"240.0.0.1", "reserved"},
	{"192.0.2.1", "documentation"},
	{"198.51.100.7", "documentation"},
	{"203.0.113.9", "documentation"},
	{"192.88.99.1", "6to4 relay"},

	{"::", "unspecified"},
	{"::1", "loopback"},
	{"fe80::1", "link-local"},
	{"fe80::1%eth0", "link-local"},
	{"febf:ffff::1", "link-local"},
	{"fc00::1", "unique-local"},
	{"fd00:ec2::254", "unique-local"}, // AWS metadata over IPv6
	{"fec0::1", "site-local"},
	{"ff02::1", "multicast"},
	{"ff05::1:3", "multicast"},
	{"2001:db8::1", "documentation"},
	{"3fff::1", "documentation"},
	{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
	{"100::1", "discard-only"},
	{"64:ff9b:1::a00:1", "NAT64"},
	{"4000::1", "reserved"},

	{"::ffff:127.0.0.1", "IPv4-mapped 127.0.0.1 (loopback)"},
	{"::ffff:169.254.169.254", "link-local"},
	{"::ffff:10.1.2.3", "private"},
	{"::ffff:0.0.0.0", "unspecified"},
	{"::127.0.0.1", "IPv4-compatible 127.0.0.1 (loopback)"},
	{"::192.168.0.1", "private"},
	{"64:ff9b::127.0.0.1", "NAT64 for 127.0.0.1 (loopback)"},
	{"64:ff9b::a9fe:a9fe", "link-local"},
	{"64:ff9b::10.0.0.1", "private"},
	{"2002:7f00:1::1", "6to4 for 127.0.0.1 (loopback)"},
	{"2002:a9fe:a9fe::", "link-local"},
	{"2002:c0a8:101::1", "private"},
}

var publicAddrs = []string{
	"93.184.216.34",
	"1.1.1.1",
	"8.8.8.8",
	"100.63.255.255", // just below CGNAT
	"100.128.0.0",    // just above CGNAT
	"172.15.255.255", // just below 172.16/12
	"172.32.0.0",     // just above 172.16/12
	"198.17.255.255",
	"223.255.255.255",
	"2606:2800:220:1:248:1893:25c8:1946",
	"2a00:1450:4001:82b::200e",
	"::ffff:93.184.216.34",
	"64:ff9b::8.8.8.8",
	"2002:5db8:d822::1",
}

func TestCheckAddrBlocked(t *testing.T) {
	for _, tt := range blockedAddrs {
		t.Run(tt.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			err := CheckAddr(a)
			if !errors.Is(err, ErrBlockedAddress) {
				t.Fatalf("CheckAddr(%s) = %v, want ErrBlockedAddress", tt.addr, err)
			}
			if !strings.Contains(err.Error(), a.String()) || !strings.Contains(err.Error(), tt.kind) {
				t.Fatalf("CheckAddr(%s) = %q, want it to name the address and %q", tt.addr, err, tt.kind)
			}
		})
	}
	if err := CheckAddr(netip.Addr{}); !errors.Is(err, ErrBlockedAddress) {
		t.Fatalf("CheckAddr(zero Addr) = %v, want ErrBlockedAddress", err)
	}
}

func TestCheckAddrPublic(t *testing.T) {
	for _, s := range publicAddrs {
		if err := CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("CheckAddr(%s) = %v, want nil", s, err)
		}
	}
}

// mapResolver answers from a map and counts the lookups of each host.
type mapResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	lookups map[string]int
}

func newMapResolver(answers map[string][]netip.Addr) *mapResolver {
	return &mapResolver{answers: answers, lookups: map[string]int{}}
}

func (r *mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups[host]++
	addrs, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return addrs, nil
}

// rebindingResolver answers a public address to its first lookup, as a
// name would when it is checked, and a private one to every later lookup.
type rebindingResolver struct {
	mu      sync.Mutex
	first   netip.Addr
	later   netip.Addr
	lookups int
}

func (r *rebindingResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	if r.lookups == 1 {
		return []netip.Addr{r.first}, nil
	}
	return []netip.Addr{r.later}, nil
}

// failResolver fails the test when it is asked anything.
type failResolver struct{ t *testing.T }

func (r failResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.t.Errorf("unexpected lookup of %q", host)
	return nil, errors.New("unexpected lookup")
}

func TestDialContextRefusesBlocked(t *testing.T) {
	ipv6 := haveIPv6()
	for _, tt := range blockedAddrs {
		a := netip.MustParseAddr(tt.addr)
		if a.Zone() != "" {
			continue // zones name local interfaces, which differ per machine
		}
		if a.Is6() && !a.Is4In6() && !ipv6 {
			continue // no IPv6 socket, so the dialer stops before Control
		}
		t.Run(tt.addr, func(t *testing.T) {
			r := newMapResolver(map[string][]netip.Addr{"evil.example": {a}})
			dial := DialContext(r, false, time.Second)
			conn, err := dial(context.Background(), "tcp", "evil.example:443")
			if err == nil {
				conn.Close()
				t.Fatalf("dial to %s succeeded", a)
			}
			if !errors.Is(err, ErrBlockedAddress) {
				t.Fatalf("dial to %s = %v, want ErrBlockedAddress", a, err)
			}
		})
	}
}

// TestDialContextNoTraffic proves the refusal happens before connect: the
// listener the name points at never sees a connection.
func TestDialContextNoTraffic(t *testing.T) {
	ln, port := listen(t)
	r := newMapResolver(map[string][]netip.Addr{
		"rebind.example": {netip.MustParseAddr("127.0.0.1")},
		"both.example":   {netip.MustParseAddr("10.255.255.1"), netip.MustParseAddr("127.0.0.1")},
	})

	for _, target := range []string{"rebind.example", "both.example"} {
		dial := DialContext(r, false, time.Second)
		conn, err := dial(context.Background(), "tcp", net.JoinHostPort(target, port))
		if err == nil {
			conn.Close()
			t.Fatalf("dial %s succeeded", target)
		}
		if !errors.Is(err, ErrBlockedAddress) {
			t.Fatalf("dial %s = %v, want ErrBlockedAddress", target, err)
		}
	}
	// A literal IP is checked the same way and needs no lookup.
	dial := DialContext(failResolver{t}, false, time.Second)
	if conn, err := dial(context.Background(), "tcp", net.JoinHostPort("127.0.0.1", port)); !errors.Is(err, ErrBlockedAddress) {
		if conn != nil {
			conn.Close()
		}
		t.Fatalf("dial literal 127.0.0.1 = %v, want ErrBlockedAddress", err)
	}
	expectNoAccept(t, ln)

	// With private addresses allowed, the same name connects.
	dial = DialContext(r, true, time.Second)
	conn, err := dial(context.Background(), "tcp", net.JoinHostPort("rebind.example", port))
	if err != nil {
		t.Fatalf("dial with allowPrivate = %v", err)
	}
	defer conn.Close()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	srv, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept after allowed dial: %v", err)
	}
	srv.Close()
}

// TestDialContextRebinding: a name that was public when looked up first
// (say, when the endpoint was configured) and private at delivery time is
// still refused, because the check runs on the address being connected.
func TestDialContextRebinding(t *testing.T) {
	ln, port := listen(t)
	r := &rebindingResolver{
		first: netip.MustParseAddr("93.184.216.34"),
		later: netip.MustParseAddr("127.0.0.1"),
	}
	checked, err := r.LookupNetIP(context.Background(), "ip", "rebind.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckAddr(checked[0]); err != nil {
		t.Fatalf("first answer %s should look public: %v", checked[0], err)
	}

	dial := DialContext(r, false, time.Second)
	conn, err := dial(context.Background(), "tcp", net.JoinHostPort("rebind.example", port))
	if err == nil {
		conn.Close()
		t.Fatal("dial after rebinding succeeded")
	}
	if !errors.Is(err, ErrBlockedAddress) {
		t.Fatalf("dial after rebinding = %v, want ErrBlockedAddress", err)
	}
	if r.lookups != 2 {
		t.Fatalf("resolver asked %d times, want 2", r.lookups)
	}
	expectNoAccept(t, ln)
}

func TestDialContextErrors(t *testing.T) {
	r := newMapResolver(map[string][]netip.Addr{"empty.example": {}})
	dial := DialContext(r, false, time.Second)
	for _, tt := range []struct{ network, addr, errHas string }{
		{"udp", "127.0.0.1:53", "unsupported network"},
		{"unix", "/tmp/sock", "unsupported network"},
		{"tcp", "no-port.example", "missing port"},
		{"tcp", "missing.example:443", "no such host"},
		{"tcp", "empty.example:443", "no addresses"},
	} {
		conn, err := dial(context.Background(), tt.network, tt.addr)
		if err == nil {
			conn.Close()
			t.Fatalf("dial %s %s succeeded", tt.network, tt.addr)
		}
		if !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("dial %s %s = %q, want it to mention %q", tt.network, tt.addr, err, tt.errHas)
		}
	}
}

func TestCheckURL(t *testing.T) {
	long := "https://example.com/" + strings.Repeat("a", 2048)
	tests := []struct {
		raw          string
		allowPrivate bool
		errHas       string // "": accepted
	}{
		{"https://hooks.example.com/heed?x=1", false, ""},
		{"https://hooks.example.com:8443/heed", false, ""},
		{"https://93.184.216.34/hook", false, ""},
		{"https://[2606:2800:220:1:248:1893:25c8:1946]/hook", false, ""},
		{"HTTPS://Hooks.Example.com/", false, ""},
		{"http://hooks.example.com/", false, "must use https"},
		{"http://hooks.example.com/", true, ""},
		{"http://127.0.0.1:8080/hook", true, ""},
		{"https://localhost/", true, ""},
		{"https://127.0.0.1/", false, "loopback"},
		{"https://[::1]/", false, "loopback"},
		{"https://[::ffff:127.0.0.1]/", false, "loopback"},
		{"https://169.254.169.254/latest/meta-data/", false, "link-local"},
		{"https://10.0.0.1/", false, "private"},
		{"https://[fe80::1%25eth0]/", false, "link-local"},
		{"https://localhost/", false, "localhost"},
		{"https://api.localhost./", false, "localhost"},
		{"https://2130706433/", false, "non-standard"},
		{"https://0x7f000001/", false, "non-standard"},
		{"https://127.1/", false, "non-standard"},
		{"https://user:pass@hooks.example.com/", false, "user name or password"},
		{"https://user@hooks.example.com/", false, "user name or password"},
		{"https://hooks.example.com/#frag", false, "fragment"},
		{"https://hooks.example.com/#", false, "fragment"},
		{"/relative/path", false, "absolute"},
		{"hooks.example.com/path", false, "absolute"},
		{"https:opaque", false, "absolute"},
		{"https:///path-only", false, "host"},
		{"ftp://hooks.example.com/", false, "not supported"},
		{"https://hooks.example.com/%zz", false, "cannot be parsed"},
		{"", false, "absolute"},
		{long, false, "limit is 2048"},
	}
	for _, tt := range tests {
		u, err := CheckURL(tt.raw, tt.allowPrivate)
		if tt.errHas == "" {
			if err != nil {
				t.Errorf("CheckURL(%q, %v) = %v, want nil", tt.raw, tt.allowPrivate, err)
			} else if u == nil || u.Host == "" {
				t.Errorf("CheckURL(%q, %v) returned URL %v", tt.raw, tt.allowPrivate, u)
			}
			continue
		}
		if err == nil {
			t.Errorf("CheckURL(%q, %v) = nil, want error mentioning %q", tt.raw, tt.allowPrivate, tt.errHas)
			continue
		}
		if !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("CheckURL(%q, %v) = %q, want it to mention %q", tt.raw, tt.allowPrivate, err, tt.errHas)
		}
	}
}

// listen starts a TCP listener on 127.0.0.1 and returns it with its port.
func listen(t *testing.T) (*net.TCPListener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return ln.(*net.TCPListener), port
}

// expectNoAccept fails the test if a connection is waiting on ln. A
// connection that reached the kernel would be queued in the backlog, so
// Accept would return it at once; a short deadline means nothing came.
func expectNoAccept(t *testing.T, ln *net.TCPListener) {
	t.Helper()
	if err := ln.SetDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	conn, err := ln.Accept()
	if err == nil {
		conn.Close()
		t.Fatalf("listener accepted a connection from %s", conn.RemoteAddr())
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("accept = %v, want deadline exceeded", err)
	}
}

// haveIPv6 reports whether this machine can open IPv6 sockets.
func haveIPv6() bool {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
