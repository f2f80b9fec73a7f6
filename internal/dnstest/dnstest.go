// Package dnstest is a real DNS server on loopback for tests: it serves,
// over UDP and TCP, the records a test writes in zone-file syntax, and
// answers NXDOMAIN for names it has none of (NOERROR with no answer when
// the name has records of other types), as an authoritative server does.
// Tests point a readiness.NewResolver (or any net.Resolver with PreferGo)
// at Server.Addr; nothing touches the internet.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server serves the records of a test.
type Server struct {
	// Addr is host:port, the same port for UDP and TCP.
	Addr string

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case absolute name
	broken  map[string]bool     // names answered SERVFAIL
}

// Start starts a server on 127.0.0.1 holding records (zone-file lines
// such as "example.test. TXT \"v=spf1 -all\""); it stops with the test.
func Start(t testing.TB, records ...string) *Server {
	t.Helper()
	s := &Server{records: map[string][]dns.RR{}, broken: map[string]bool{}}
	s.Set(t, records...)
	var udp net.PacketConn
	var tcp net.Listener
	for range 20 { // the free UDP port may be taken for TCP
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", u.LocalAddr().String())
		if err == nil {
			udp, tcp = u, l
			break
		}
		u.Close()
	}
	if udp == nil {
		t.Fatal("dnstest: no port free for both UDP and TCP")
	}
	s.Addr = udp.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	servers := []*dns.Server{{PacketConn: udp, Handler: h}, {Listener: tcp, Handler: h}}
	var started sync.WaitGroup
	for _, srv := range servers {
		started.Add(1)
		srv.NotifyStartedFunc = started.Done
		go srv.ActivateAndServe()
	}
	started.Wait()
	t.Cleanup(func() {
		for _, srv := range servers {
			srv.Shutdown()
		}
	})
	return s
}

// Set adds records, in zone-file syntax with absolute names.
func (s *Server) Set(t testing.TB, records ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range records {
		rr, err := dns.NewRR(line)
		if err != nil || rr == nil {
			t.Fatalf("dnstest: record %q: %v", line, err)
		}
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
}

// Remove deletes every record of type typ ("TXT", "MX", ...) at name.
func (s *Server) Remove(name, typ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.ToLower(dns.Fqdn(name))
	want := dns.StringToType[typ]
	var keep []dns.RR
	for _, rr := range s.records[name] {
		if rr.Header().Rrtype != want {
			keep = append(keep, rr)
		}
	}
	if len(keep) == 0 {
		delete(s.records, name)
		return
	}
	s.records[name] = keep
}

// Break makes the server answer SERVFAIL for name, as a broken or
// unreachable authoritative server makes a recursive resolver answer.
func (s *Server) Break(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken[strings.ToLower(dns.Fqdn(name))] = true
}

// PTR is the name of ip's PTR record, for Set: "10.2.0.192.in-addr.arpa.".
func PTR(ip string) string {
	name, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	return name
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative, m.RecursionAvailable = true, true
	s.mu.Lock()
	for _, q := range req.Question {
		if s.broken[strings.ToLower(q.Name)] {
			m.Rcode = dns.RcodeServerFailure
			continue
		}
		rrs, ok := s.records[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
	}
	s.mu.Unlock()
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = int(opt.UDPSize())
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		m.Truncate(size)
	}
	w.WriteMsg(m)
}
