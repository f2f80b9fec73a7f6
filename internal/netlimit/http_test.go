package netlimit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveDeadlines serves h through Deadlines(h, read, read) on a loopback
// listener and returns its address.
func serveDeadlines(t *testing.T, read time.Duration, h http.HandlerFunc) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: Deadlines(h, read, read), ReadHeaderTimeout: read, IdleTimeout: read}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l.Addr().String()
}

// stream writes a line at a time, paced, until the stream has lasted
// longer than span, then "end"; it stops early, without "end", if the
// request's context is cancelled, and says so on cancelled.
func stream(w http.ResponseWriter, r *http.Request, span time.Duration, cancelled chan<- error) {
	start := time.Now()
	tick := time.NewTicker(span / 20)
	defer tick.Stop()
	rc := http.NewResponseController(w)
	for i := 0; time.Since(start) < span; i++ {
		fmt.Fprintf(w, "line %d\n", i)
		rc.Flush()
		select {
		case <-r.Context().Done():
			cancelled <- fmt.Errorf("the request's context was cancelled after %v (line %d): %w",
				time.Since(start).Round(time.Millisecond), i, r.Context().Err())
			return
		case <-tick.C:
		}
	}
	io.WriteString(w, "end\n")
	cancelled <- nil
}

// TestDeadlinesLongAnswer: an answer that keeps moving outlasts the read
// period, whether the request had no body (an export, an erasure) or had
// one that the handler read to its end, once more after it, and then
// answered at length. The client reads steadily and gets all of it.
func TestDeadlinesLongAnswer(t *testing.T) {
	const read = 100 * time.Millisecond
	cancelled := make(chan error, 1)
	addr := serveDeadlines(t, read, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if b, err := io.ReadAll(r.Body); err != nil || string(b) != "hello" {
				cancelled <- fmt.Errorf("the body: %q, %v", b, err)
				return
			}
			if n, err := r.Body.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				cancelled <- fmt.Errorf("a read after the end: %d, %v", n, err)
				return
			}
		}
		stream(w, r, 5*read, cancelled)
	})
	for _, req := range []string{
		"GET /export HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /erase HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /import HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /import HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		what, _, _ := strings.Cut(req, "\r\n")
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * read))
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		body, err := io.ReadAll(resp.Body)
		c.Close()
		if err != nil || !strings.HasSuffix(string(body), "end\n") {
			t.Errorf("%s: the answer was cut off after %d bytes (%v)", what, len(body), err)
		}
		if err := <-cancelled; err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
}

// TestDeadlinesSlowBodyCut: a body that stops coming still fails the
// handler's read after one read period, and the client is disconnected.
func TestDeadlinesSlowBodyCut(t *testing.T) {
	const read = 100 * time.Millisecond
	readErr := make(chan error, 1)
	addr := serveDeadlines(t, read, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * read))
	io.WriteString(c, "POST /import HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
	if err := <-readErr; err == nil {
		t.Error("the handler read a body that never ended to its end")
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("the client that stopped sending is still connected: %v", err)
	}
}
