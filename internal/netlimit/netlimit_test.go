package netlimit

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestTotalCap: past Max connections in all, a newcomer from any address
// is refused (here with RefuseHTTP's 503) and never reaches the server;
// a slot is free again once its connection is closed.
func TestTotalCap(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, 1, 5, RefuseHTTP(5*time.Second))
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	first := dial("127.0.0.1")
	held := <-accepted
	if total, client := l.Open(first.LocalAddr()); total != 1 || client != 1 {
		t.Errorf("Open = %d, %d, want 1, 1", total, client)
	}
	second := dial("127.0.0.2")
	io.WriteString(second, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(second), nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("over the total cap: %v %v", resp, err)
	}
	select {
	case c := <-accepted:
		t.Fatalf("a refused connection reached the server: %v", c.RemoteAddr())
	default:
	}
	held.Close()
	held.Close() // twice: the slot is given back once
	if total, _ := l.Open(first.LocalAddr()); total != 0 {
		t.Errorf("after the close: %d open", total)
	}
	dial("127.0.0.2")
	<-accepted
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:25":               "192.0.2.7",
		"[::ffff:192.0.2.7]:25":      "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::",
		"[2001:db8:1:2::9%eth0]:443": "2001:db8:1:2::",
		"[2001:db8:1:3::9]:443":      "2001:db8:1:3::",
	} {
		ap, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := ClientOf(ap).String(); got != want {
			t.Errorf("ClientOf(%s) = %s, want %s", in, got, want)
		}
		if got := ClientOfString(in).String(); got != want {
			t.Errorf("ClientOfString(%s) = %s, want %s", in, got, want)
		}
	}
	if got := ClientOfString("not an address"); got.IsValid() {
		t.Errorf("ClientOfString of no address = %s, want the zero Addr", got)
	}
}
