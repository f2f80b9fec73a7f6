package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heedmail/heed/internal/config"
	"github.com/heedmail/heed/internal/testsink"
)

// wait is how long a test waits for what must happen far sooner; only a
// broken limit makes a test wait this long.
const wait = 5 * time.Second

// adminRelay starts a relay whose admin listener has short timeouts and
// a per-client cap of perClient.
func adminRelay(t *testing.T, perClient int) *relayEnv {
	return startRelayWith(t, testsink.Options{}, func(c *config.Config) {
		a := &c.HTTP.Admin
		a.ReadTimeout, a.WriteTimeout, a.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
		a.MaxConnections, a.MaxConnectionsPerClient = 100, perClient
	})
}

// dialFrom connects to the admin listener from local address from
// ("" for any).
func (e *relayEnv) dialFrom(t *testing.T, from string) net.Conn {
	t.Helper()
	return dialFromTo(t, from, e.r.AdminAddr())
}

// dialFromTo connects to addr from local address from ("" for any).
func dialFromTo(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: wait}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(wait))
	return c
}

// closedByServer reads c until the server closes it, and fails the test
// if it does not within the connection's deadline.
func closedByServer(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_, err := io.Copy(io.Discard, c)
	if err != nil {
		t.Fatalf("%s: the connection is still open (%v)", what, err)
	}
}

// get sends one keep-alive request on c and reads its answer.
func get(t *testing.T, c net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: admin\r\n\r\n", path)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestAdminIdleConnectionClosed: a keep-alive connection that sends no
// further request is closed after http.admin.idle_timeout.
func TestAdminIdleConnectionClosed(t *testing.T) {
	e := adminRelay(t, 10)
	c := e.dialFrom(t, "")
	br := bufio.NewReader(c)
	if resp := get(t, c, br, "/healthz"); resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("/healthz: %d, close %v", resp.StatusCode, resp.Close)
	}
	closedByServer(t, br2conn{br, c}, "idle keep-alive connection")
}

// br2conn reads through the buffered reader that may hold bytes already.
type br2conn struct {
	*bufio.Reader
	net.Conn
}

func (b br2conn) Read(p []byte) (int, error) { return b.Reader.Read(p) }

// TestAdminSlowClientsCut: request headers that never end are cut after
// http.admin.read_timeout, and so is a body that stops coming.
func TestAdminSlowClientsCut(t *testing.T) {
	e := adminRelay(t, 10)
	c := e.dialFrom(t, "")
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Slow: 1\r\n") // and never the blank line
	closedByServer(t, c, "unfinished request headers")

	c = e.dialFrom(t, "")
	fmt.Fprintf(c, "PUT /api/v1/tenants/acme/suppressions/pat@example.net HTTP/1.1\r\nHost: admin\r\n"+
		"Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"list\":", e.token)
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("a body that stopped: the connection is still open (%v)", err)
	}
}

// TestAdminBodyLimits: a JSON body declared over the limit is refused with
// 413 problem+json before it is sent; a CSV import larger than that limit
// still goes through. (A body of unknown length that grows past the limit
// is cut by each handler's own reader, decodeJSON's and the import's,
// whose 413s the admin package's tests hold.)
func TestAdminBodyLimits(t *testing.T) {
	e := adminRelay(t, 10)
	e.api("POST", "/api/v1/tenants", map[string]string{"id": "acme", "name": "Acme"}, http.StatusCreated, nil)
	c := e.dialFrom(t, "")
	fmt.Fprintf(c, "PUT /api/v1/tenants/acme/suppressions/pat@example.net HTTP/1.1\r\nHost: admin\r\n"+
		"Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", e.token, 2<<20)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a body declared over the limit, not sent: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("a body declared over the limit: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	var csv strings.Builder
	csv.WriteString("address,list,reason\n")
	rows := 0
	for csv.Len() < 3<<20 {
		fmt.Fprintf(&csv, "reader-%07d@example.net,*,manual\n", rows)
		rows++
	}
	req, _ := http.NewRequest("POST", "http://"+e.r.AdminAddr()+"/api/v1/tenants/acme/suppressions/import", strings.NewReader(csv.String()))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "text/csv")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), fmt.Sprintf(`"added":%d`, rows)) {
		t.Errorf("a %d-byte import of %d rows: %d %s", csv.Len(), rows, resp.StatusCode, body)
	}
}

// TestAdminConnectionCap: a client holding http.admin.max_connections_per_client
// connections gets 503 problem+json for one more, and is served again once
// it closes one; another client address is served meanwhile.
func TestAdminConnectionCap(t *testing.T) {
	e := startRelayWith(t, testsink.Options{}, func(c *config.Config) {
		c.HTTP.Admin.MaxConnections, c.HTTP.Admin.MaxConnectionsPerClient = 100, 2
	})
	holdConnectionCap(t, e.r.AdminAddr(), "/healthz")
}

// TestPublicConnectionCap: the public listener faces the internet, so one
// client address cannot hold every connection either.
func TestPublicConnectionCap(t *testing.T) {
	e := startRelayWith(t, testsink.Options{}, func(c *config.Config) {
		c.HTTP.Public.MaxConnections, c.HTTP.Public.MaxConnectionsPerClient = 100, 2
	})
	holdConnectionCap(t, e.r.PublicAddr(), "/u/not-a-token")
}

// holdConnectionCap holds two connections from 127.0.0.1 to the listener
// at addr, whose per-client cap is 2, and checks that a third is refused
// with 503 while 127.0.0.2 is served, and served again once one closes.
// A connection counts as served when its answer to path is anything but
// the listener's 503.
func holdConnectionCap(t *testing.T, addr, path string) {
	t.Helper()
	var held []net.Conn
	for range 2 {
		c := dialFromTo(t, "127.0.0.1", addr)
		if resp := get(t, c, bufio.NewReader(c), path); resp.StatusCode == http.StatusServiceUnavailable {
			t.Fatalf("connection %d: %d", len(held), resp.StatusCode)
		}
		held = append(held, c)
	}
	over := func() *http.Response {
		c := dialFromTo(t, "127.0.0.1", addr)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: heed\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("a connection over the cap: %v", err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := over(); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("a third connection from 127.0.0.1: %d %q, want 503 problem+json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	other := dialFromTo(t, "127.0.0.2", addr)
	if resp := get(t, other, bufio.NewReader(other), path); resp.StatusCode == http.StatusServiceUnavailable {
		t.Errorf("127.0.0.2 while 127.0.0.1 is at its cap: %d", resp.StatusCode)
	}
	held[0].Close()
	deadline := time.Now().Add(wait)
	for over().StatusCode == http.StatusServiceUnavailable { // the server sees the close when it reads
		if time.Now().After(deadline) {
			t.Fatal("127.0.0.1 still refused after closing a connection")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestAdminLongExport: a suppression export that lasts longer than
// http.admin.read_timeout, to a client that pauses and then reads on,
// arrives in full. (The read deadline set for a request without a body
// once expired under net/http's background read, which cancelled the
// request and cut the download short.)
func TestAdminLongExport(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	e := startRelayWith(t, testsink.Options{}, func(c *config.Config) {
		a := &c.HTTP.Admin
		a.ReadTimeout, a.WriteTimeout, a.IdleTimeout = readTimeout, wait, readTimeout
	})
	e.api("POST", "/api/v1/tenants", map[string]string{"id": "acme", "name": "Acme"}, http.StatusCreated, nil)
	// More than the kernel can buffer on the relay's side (the send
	// buffer's maximum; each row exported takes over 60 bytes), so that
	// the relay is still exporting when the client pauses.
	rows := (sendBufferMax() + 2<<20) / 60
	var csv strings.Builder
	csv.WriteString("address,list,reason\n")
	for i := range rows {
		fmt.Fprintf(&csv, "reader-%07d@example.net,*,manual\n", i)
	}
	req, _ := http.NewRequest("POST", "http://"+e.r.AdminAddr()+"/api/v1/tenants/acme/suppressions/import", strings.NewReader(csv.String()))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	c := e.dialFrom(t, "")
	// A small window, so the relay cannot hand the whole export to the
	// kernel and be done before the pause.
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(c, "GET /api/v1/tenants/acme/suppressions/export HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer %s\r\n\r\n", e.token)
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %v %v", resp, err)
	}
	// The client pauses for longer than the read timeout (a slow
	// reader, well within the write timeout), then reads on.
	<-time.After(3 * readTimeout)
	c.(*net.TCPConn).SetReadBuffer(1 << 20)
	body, err := io.ReadAll(resp.Body)
	if lines := strings.Count(string(body), "\n"); err != nil || lines != rows+1 {
		t.Errorf("export of %d rows: %d lines, %d bytes (%v)", rows, lines, len(body), err)
	}
}

// sendBufferMax is the most a TCP socket's send buffer may grow to: on
// Linux the last of net.ipv4.tcp_wmem, elsewhere its default, 4 MiB.
func sendBufferMax() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	if f := strings.Fields(string(b)); err == nil && len(f) == 3 {
		if n, err := strconv.Atoi(f[2]); err == nil {
			return n
		}
	}
	return 4 << 20
}
