package netlimit

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Deadlines wraps h so that each read of a request body must complete
// within read and each write of the response within write, every read and
// write granting a fresh period. A client that stops sending its body or
// reading the answer is cut off after one period, while a large CSV import
// or a backup download that keeps moving may take as long as it needs
// (http.Server's ReadTimeout and WriteTimeout bound the whole exchange
// instead, which would cut those off). The request headers are bounded by
// http.Server's ReadHeaderTimeout, the wait between requests by its
// IdleTimeout.
//
// Only a request with a body gets a read deadline, and only until the
// body's end. Once there is nothing more to read, net/http reads the
// connection in the background to notice a client that goes away, with
// no deadline; a deadline set then would expire under that read, which
// net/http takes for the client gone and cancels the request's context:
// a long export would be cut off mid-stream, an erasure stopped half done.
// A body's end starts that background read, and net/http clears the
// deadline itself.
func Deadlines(h http.Handler, read, write time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// Set at once: a handler that writes nothing for a while is
		// bounded too.
		rc.SetWriteDeadline(time.Now().Add(write))
		if r.Body != nil && r.Body != http.NoBody {
			// Set at once too, so a handler that waits for a body
			// that never comes is bounded.
			rc.SetReadDeadline(time.Now().Add(read))
			// On a copy: net/http inspects the original's body after the
			// handler to decide whether to drain it or close the
			// connection, and must find its own there.
			r2 := new(http.Request)
			*r2 = *r
			r2.Body = &progressReader{ReadCloser: r.Body, rc: rc, d: read}
			r = r2
		}
		h.ServeHTTP(&progressWriter{ResponseWriter: w, rc: rc, d: write}, r)
	})
}

// progressReader extends the read deadline before each read of the body,
// until the body has ended: from then on the connection is net/http's
// background read's (see Deadlines), and a read after the end, which
// returns at once, must not set a deadline under it.
type progressReader struct {
	io.ReadCloser
	rc  *http.ResponseController
	d   time.Duration
	end bool
}

func (p *progressReader) Read(b []byte) (int, error) {
	if p.end {
		return 0, io.EOF
	}
	p.rc.SetReadDeadline(time.Now().Add(p.d))
	n, err := p.ReadCloser.Read(b)
	if err == io.EOF {
		p.end = true
	}
	return n, err
}

// progressWriter extends the write deadline before each write. Flush and
// the rest reach the connection through Unwrap (http.ResponseController).
type progressWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.rc.SetWriteDeadline(time.Now().Add(p.d))
	return p.ResponseWriter.Write(b)
}

func (p *progressWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// Flush lets handlers that assert http.Flusher (echo's Response does
// through a ResponseController) stream through the wrapper.
func (p *progressWriter) Flush() {
	p.rc.SetWriteDeadline(time.Now().Add(p.d))
	http.NewResponseController(p.ResponseWriter).Flush()
}

// RefuseHTTP returns a Listener's refuse function for an HTTP listener:
// it answers 503 with an RFC 9457 problem document and Retry-After, then
// closes the connection, waiting at most timeout on the client in all. It
// does not parse the request: a client over its cap gets no work done on
// its behalf. What the client had sent is drained before the close, or
// the kernel would answer it with a reset that can destroy the 503 before
// the client reads it (RFC 9112 section 9.6).
func RefuseHTTP(timeout time.Duration) func(net.Conn) {
	const body = `{"type":"about:blank","title":"Service Unavailable","status":503,` +
		`"detail":"too many connections from your address, or in all; close idle ones and try again"}`
	resp := "HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/problem+json\r\n" +
		"Retry-After: 1\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	return func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
}
