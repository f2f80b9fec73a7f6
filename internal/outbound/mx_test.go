package outbound

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/testsink"
)

// fakeResolver answers from maps; a name it does not know does not exist.
type fakeResolver struct {
	mx    map[string][]*net.MX
	ip    map[string][]string
	mxErr map[string]error
	ipErr map[string]error
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (f *fakeResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if err := f.mxErr[name]; err != nil {
		return nil, err
	}
	if mx, ok := f.mx[name]; ok {
		return mx, nil
	}
	return nil, notFound(name)
}

func (f *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if err := f.ipErr[host]; err != nil {
		return nil, err
	}
	ips, ok := f.ip[host]
	if !ok {
		return nil, notFound(host)
	}
	out := make([]net.IPAddr, len(ips))
	for i, s := range ips {
		out[i] = net.IPAddr{IP: net.ParseIP(s)}
	}
	return out, nil
}

func mxTransport(t *testing.T, s *testsink.Sink, r *fakeResolver) *Transport {
	return newTransport(t, Options{Mode: ModeMX, Resolver: r, MXPort: s.Port()})
}

func TestMXDelivery(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	tr := mxTransport(t, s, &fakeResolver{
		mx: map[string][]*net.MX{"example.org": {{Host: "mx1.example.org.", Pref: 10}}},
		ip: map[string][]string{"mx1.example.org": {"127.0.0.1"}},
	})
	r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message)
	if want := "mx1.example.org:" + strconv.Itoa(s.Port()); !r.Delivered() || r.Host != want {
		t.Fatalf("result = %q via %q, want delivered via %q", r, r.Host, want)
	}
	s.Wait(t, 1, waitFor)
}

func TestMXPreferenceOrder(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	// Listed out of order; the preferred MX resolves to an address where
	// nothing listens (the sink is on 127.0.0.1 only), so it refuses and
	// the backup gets the message.
	tr := mxTransport(t, s, &fakeResolver{
		mx: map[string][]*net.MX{"example.org": {
			{Host: "backup.example.org.", Pref: 20},
			{Host: "primary.example.org.", Pref: 10},
		}},
		ip: map[string][]string{
			"primary.example.org": {"::1"},
			"backup.example.org":  {"127.0.0.1"},
		},
	})
	r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message)
	if !r.Delivered() || !strings.HasPrefix(r.Host, "backup.example.org:") {
		t.Fatalf("result = %q via %q, want delivered via the backup", r, r.Host)
	}
	s.Wait(t, 1, waitFor)
}

func TestMXPreferenceIsTriedFirst(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	tr := mxTransport(t, s, &fakeResolver{
		mx: map[string][]*net.MX{"example.org": {
			{Host: "backup.example.org.", Pref: 20},
			{Host: "primary.example.org.", Pref: 10},
		}},
		ip: map[string][]string{
			"primary.example.org": {"127.0.0.1"},
			"backup.example.org":  {"127.0.0.1"},
		},
	})
	for i := range 5 {
		if r := tr.Deliver(t.Context(), env(i, "ann@example.org"), message); !strings.HasPrefix(r.Host, "primary.") {
			t.Fatalf("result = %q via %q, want the primary", r, r.Host)
		}
	}
}

func TestImplicitMX(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	tr := mxTransport(t, s, &fakeResolver{ip: map[string][]string{"example.org": {"127.0.0.1"}}})
	r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message)
	if !r.Delivered() || !strings.HasPrefix(r.Host, "example.org:") {
		t.Fatalf("result = %q via %q", r, r.Host)
	}
	s.Wait(t, 1, waitFor)
}

func TestDNSFailures(t *testing.T) {
	s := testsink.Start(t, testsink.Options{})
	tests := []struct {
		name     string
		res      *fakeResolver
		code     int
		enhanced string
	}{
		{"null MX", &fakeResolver{mx: map[string][]*net.MX{"example.org": {{Host: ".", Pref: 0}}}}, 556, "5.1.10"},
		{"NXDOMAIN", &fakeResolver{}, 550, "5.1.2"},
		{"MX lookup fails", &fakeResolver{mxErr: map[string]error{"example.org": &net.DNSError{Err: "server misbehaving", Name: "example.org", IsTemporary: true}}}, 451, "4.4.3"},
		{"A lookup fails", &fakeResolver{ipErr: map[string]error{"example.org": &net.DNSError{Err: "i/o timeout", Name: "example.org", IsTimeout: true}}}, 451, "4.4.3"},
		{"MX host does not resolve", &fakeResolver{mx: map[string][]*net.MX{"example.org": {{Host: "gone.example.org.", Pref: 10}}}}, 451, "4.4.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := mxTransport(t, s, tc.res)
			r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message)
			wantResult(t, r, tc.code, tc.enhanced, "")
		})
	}
	if s.Connections() != 0 {
		t.Errorf("sink got %d connections", s.Connections())
	}
}
