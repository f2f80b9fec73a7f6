package outbound

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scripted is a remote mail server that answers from a script, for what
// go-smtp's server cannot be made to do: leave PIPELINING out of its EHLO
// reply, refuse the DATA command itself, or say 354 when it should not.
type scripted struct {
	// pipelining and smtputf8 put PIPELINING and SMTPUTF8 in the EHLO
	// reply.
	pipelining, smtputf8 bool
	// hold makes the server read MAIL, RCPT and DATA before it answers any
	// of them, as only a pipelining client lets it.
	hold bool
	// reply returns the reply to a command ("MAIL", "RCPT", "DATA", "RSET",
	// or "." for the end of the data) on connection conn (from 1); "" for
	// the usual one.
	reply func(conn int, cmd string) string
	// hangUp closes the connection right after a scripted reply. Any 421
	// closes it, as RFC 5321 section 3.8 has servers do, unless silent is
	// set: then the server keeps it open and answers nothing more.
	hangUp, silent bool
	// delay is how long the server thinks before each reply to MAIL, RCPT
	// and DATA, as one checking the sender and recipients does.
	delay time.Duration
	// goodbye, when set, ends each connection after its first message:
	// the server says goodbye ("" for nothing) and closes, as one that
	// times out an idle session does.
	goodbye *string

	addr string
	mu   sync.Mutex
	// seen is what each connection received, one entry per command (verb
	// only) or body ("body:" and the bytes before the final dot line).
	seen [][]string
	// unasked counts MAILs that arrived with more commands right behind
	// them, in the same read: commands the client did not wait to send.
	unasked int
	// mails are the MAIL commands received, parameters and all.
	mails []string
}

func startScripted(t *testing.T, s *scripted) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	s.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.seen = append(s.seen, nil)
			n := len(s.seen)
			s.mu.Unlock()
			go s.serve(c, n)
		}
	}()
	return s
}

// Addr is where the server listens.
func (s *scripted) Addr() string { return s.addr }

// onFirst scripts replies by command on the first connection only: the
// next message, on a new connection, goes through.
func onFirst(replies map[string]string) func(conn int, cmd string) string {
	return func(conn int, cmd string) string {
		if conn != 1 {
			return ""
		}
		return replies[cmd]
	}
}

// bothPaths runs f once with a server offering PIPELINING and once with
// one that does not (go-smtp's lock-step client).
func bothPaths(t *testing.T, f func(t *testing.T, pipelining bool)) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprint("pipelining=", pipelining), func(t *testing.T) { f(t, pipelining) })
	}
}

func (s *scripted) note(conn int, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[conn-1] = append(s.seen[conn-1], what)
}

func (s *scripted) transcript(conn int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen[conn-1]...)
}

func (s *scripted) mailCommands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.mails...)
}

func (s *scripted) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// answer returns the reply to cmd and whether to hang up after it.
func (s *scripted) answer(conn int, cmd, usual string) (string, bool) {
	r := usual
	scripted := false
	if s.reply != nil {
		if sr := s.reply(conn, cmd); sr != "" {
			r, scripted = sr, true
		}
	}
	return r, scripted && s.hangUp || strings.HasPrefix(r, "421")
}

func (s *scripted) serve(c net.Conn, conn int) {
	defer c.Close()
	br := bufio.NewReader(c)
	tr := textproto.NewReader(br)
	w := bufio.NewWriter(c)
	say := func(lines ...string) {
		for _, l := range lines {
			_, _ = w.WriteString(l + "\r\n")
		}
		_ = w.Flush()
	}
	say("220 scripted.test ESMTP")
	var pending []string // held commands
	var mailOK, rcptOK bool
	for {
		line, err := tr.ReadLine()
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		verb, _, _ = strings.Cut(verb, ":")
		switch verb {
		case "EHLO":
			ext := []string{"250-scripted.test", "250-8BITMIME", "250-SIZE 10000000"}
			if s.pipelining {
				ext = append(ext, "250-PIPELINING")
			}
			if s.smtputf8 {
				ext = append(ext, "250-SMTPUTF8")
			}
			say(append(ext, "250 ENHANCEDSTATUSCODES")...)
			continue
		case "QUIT":
			say("221 2.0.0 bye")
			return
		}
		s.note(conn, verb)
		if verb == "MAIL" {
			s.mu.Lock()
			s.mails = append(s.mails, line)
			if br.Buffered() > 0 {
				s.unasked++
			}
			s.mu.Unlock()
		}
		if s.hold && verb != "DATA" && verb != "RSET" {
			pending = append(pending, verb)
			continue
		}
		var out []string
		hangUp := false
		for _, v := range append(pending, verb) {
			var r string
			var bye bool
			if v == "MAIL" || v == "RCPT" || v == "DATA" {
				time.Sleep(s.delay) // a slow server, not synchronisation
			}
			switch v {
			case "MAIL":
				r, bye = s.answer(conn, v, "250 2.1.0 ok")
				mailOK = r[0] == '2'
			case "RCPT":
				usual := "503 5.5.1 MAIL first"
				if mailOK {
					usual = "250 2.1.5 ok"
				}
				r, bye = s.answer(conn, v, usual)
				rcptOK = rcptOK || r[0] == '2'
			case "DATA":
				usual := "554 5.5.1 no valid recipients"
				if rcptOK {
					usual = "354 go ahead"
				}
				r, bye = s.answer(conn, v, usual)
			case "RSET":
				r, bye = s.answer(conn, v, "250 2.0.0 ok")
				mailOK, rcptOK = false, false
			default:
				r = "500 5.5.1 unknown command"
			}
			out = append(out, r)
			if bye {
				hangUp = true
				break
			}
		}
		pending = nil
		say(out...)
		if hangUp && s.silent {
			_, _ = io.Copy(io.Discard, br)
			return
		}
		if hangUp {
			return
		}
		if verb != "DATA" || !strings.HasPrefix(out[len(out)-1], "354") {
			continue
		}
		var body bytes.Buffer
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if string(l) == ".\r\n" {
				break
			}
			body.Write(l)
		}
		s.note(conn, "body:"+body.String())
		r, bye := s.answer(conn, ".", "250 2.0.0 queued as 42")
		say(r)
		mailOK, rcptOK = false, false
		if bye {
			return
		}
		if s.goodbye != nil {
			if *s.goodbye != "" {
				say(*s.goodbye)
			}
			return
		}
	}
}

func TestPipelining(t *testing.T) {
	s := startScripted(t, &scripted{pipelining: true, hold: true})
	tr := newTransport(t, Options{Routes: routeTo(s)})
	for i := range 2 {
		r := tr.Deliver(t.Context(), env(i, "ann@example.org"), message)
		// A client that waited for each reply would wait for ever here: the
		// server answers MAIL only once RCPT and DATA are in.
		wantResult(t, r, 250, "2.0.0", "queued as 42")
	}
	want := []string{"MAIL", "RCPT", "DATA", "body:" + stuffed(message), "MAIL", "RCPT", "DATA", "body:" + stuffed(message)}
	if got := s.transcript(1); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("server saw %q,\nwant %q", got, want)
	}
	if s.connections() != 1 {
		t.Errorf("connections = %d, want 1", s.connections())
	}
}

// TestMailParameters checks what MAIL FROM says on both paths: the body
// type and size the server offers to hear, SMTPUTF8 for a non-ASCII
// address when it is offered, and a permanent 5.6.7 without sending
// anything when it is not.
func TestMailParameters(t *testing.T) {
	bothPaths(t, func(t *testing.T, pipelining bool) {
		s := startScripted(t, &scripted{pipelining: pipelining, smtputf8: true})
		tr := newTransport(t, Options{Routes: routeTo(s)})
		if r := tr.Deliver(t.Context(), env(1, "jörg@example.org"), message); !r.Delivered() {
			t.Fatalf("delivery: %q", r)
		}
		want := fmt.Sprintf("MAIL FROM:<bounce+1@heed.example> BODY=8BITMIME SIZE=%d SMTPUTF8", len(message))
		if got := s.mailCommands(); len(got) != 1 || got[0] != want {
			t.Errorf("MAIL commands %q, want %q", got, want)
		}

		old := startScripted(t, &scripted{pipelining: pipelining})
		tr = newTransport(t, Options{Routes: routeTo(old)})
		wantResult(t, tr.Deliver(t.Context(), env(2, "jörg@example.org"), message), 553, "5.6.7", "")
		if r := tr.Deliver(t.Context(), env(3, "ann@example.org"), message); !r.Delivered() {
			t.Fatalf("next message: %q", r)
		}
		if got := old.mailCommands(); len(got) != 1 || old.connections() != 1 {
			t.Errorf("MAIL commands %q over %d connections, want one for the ASCII message", got, old.connections())
		}
	})
}

// stuffed is msg as DATA carries it: a dot doubled at the start of a line.
func stuffed(msg []byte) string {
	return strings.ReplaceAll("\n"+string(msg), "\n.", "\n..")[1:]
}

func TestNoPipeliningWithoutTheExtension(t *testing.T) {
	s := startScripted(t, &scripted{})
	tr := newTransport(t, Options{Routes: routeTo(s)})
	for i := range 2 {
		if r := tr.Deliver(t.Context(), env(i, "ann@example.org"), message); !r.Delivered() {
			t.Fatalf("delivery %d: %q", i, r)
		}
	}
	s.mu.Lock()
	unasked := s.unasked
	s.mu.Unlock()
	if unasked != 0 {
		t.Errorf("%d MAIL commands came with more behind them, to a server without PIPELINING", unasked)
	}
	if got := s.transcript(1); len(got) != 8 || got[3] != "body:"+stuffed(message) {
		t.Errorf("server saw %q", got)
	}
}

// TestScriptedRefusals checks each way a server can refuse a transaction,
// with and without pipelining: the Result, whether the session was reset,
// and whether the next message went over the same connection.
func TestScriptedRefusals(t *testing.T) {
	tests := []struct {
		name     string
		cmd      string // the command refused on the first connection
		reply    string
		code     int
		enhanced string
		text     string
		rset     bool // the client must send RSET after the refusal
		reused   bool // the next message goes over the same connection
		hangUp   bool // the server closes the connection after refusing
	}{
		{"MAIL refused", "MAIL", "553 5.7.1 sender refused", 553, "5.7.1", "sender refused", false, true, false},
		{"RCPT refused", "RCPT", "550-5.1.1 no such\r\n550 5.1.1 user", 550, "5.1.1", "no such user", true, true, false},
		{"RCPT greylisted", "RCPT", "451 4.7.1 later", 451, "4.7.1", "later", true, true, false},
		{"DATA refused", "DATA", "554 5.5.1 no valid recipients", 554, "5.5.1", "no valid recipients", true, true, false},
		{"end of data refused", ".", "552 5.3.4 too big", 552, "5.3.4", "too big", false, true, false},
		{"server closing", "RCPT", "421 4.3.2 shutting down", 421, "4.3.2", "shutting down", false, false, false},
		{"reply out of place", "MAIL", "354 what", 451, "4.5.0", "", false, false, false},
		{"server closing at MAIL", "MAIL", "421 4.3.2 shutting down", 421, "4.3.2", "shutting down", false, false, false},
		// Exim's "drop": the refusal, then the connection closed. The
		// refusal is the outcome, not the lost connection.
		{"MAIL refused, then hang-up", "MAIL", "550 5.7.1 go away", 550, "5.7.1", "go away", false, false, true},
		{"RCPT refused, then hang-up", "RCPT", "550 5.1.1 no such user", 550, "5.1.1", "no such user", false, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bothPaths(t, func(t *testing.T, pipelining bool) {
				var refusedOnce atomic.Bool
				s := startScripted(t, &scripted{pipelining: pipelining, hangUp: tc.hangUp, reply: func(conn int, cmd string) string {
					if cmd == tc.cmd && refusedOnce.CompareAndSwap(false, true) {
						return tc.reply
					}
					return ""
				}})
				tr := newTransport(t, Options{Routes: routeTo(s)})
				r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message)
				wantResult(t, r, tc.code, tc.enhanced, tc.text)
				if r := tr.Deliver(t.Context(), env(2, "ann@example.org"), message); !r.Delivered() {
					t.Fatalf("next message: %q", r)
				}
				got := s.transcript(1)
				if rset := strings.Contains(fmt.Sprint(got), "RSET"); rset != tc.rset {
					t.Errorf("RSET sent = %v, want %v (server saw %q)", rset, tc.rset, got)
				}
				if reused := s.connections() == 1; reused != tc.reused {
					t.Errorf("same connection = %v, want %v (%d connections)", reused, tc.reused, s.connections())
				}
			})
		})
	}
}

// A server that says 354 to DATA although it refused the recipient waits
// for a body: the client sends none, and does not use that session again.
func TestPipelinedDataAcceptedAfterRefusal(t *testing.T) {
	s := startScripted(t, &scripted{pipelining: true, reply: onFirst(map[string]string{
		"RCPT": "550 5.1.1 no such user",
		"DATA": "354 go ahead",
	})})
	refusedThenFresh(t, s, 550, "5.1.1", "no such user")
	if got := s.transcript(1); fmt.Sprint(got) != "[MAIL RCPT DATA]" {
		t.Errorf("first connection saw %q, want no body", got)
	}
}

// refusedThenFresh delivers two messages through s: the first must come
// back as the refusal given, the second be delivered over a new connection
// (the first session was not trusted again).
func refusedThenFresh(t *testing.T, s *scripted, code int, enhanced, text string) {
	t.Helper()
	tr := newTransport(t, Options{Routes: routeTo(s)})
	wantResult(t, tr.Deliver(t.Context(), env(1, "ann@example.org"), message), code, enhanced, text)
	if r := tr.Deliver(t.Context(), env(2, "ann@example.org"), message); !r.Delivered() {
		t.Fatalf("next message: %q", r)
	}
	if s.connections() != 2 {
		t.Errorf("connections = %d, want 2", s.connections())
	}
}

// A cached connection the server has closed while it sat idle, with a 421
// first or without a word, is replaced by a fresh one for the next message.
func TestServerClosedIdleConnection(t *testing.T) {
	for _, bye := range []string{"", "421 4.4.2 idle too long"} {
		t.Run(fmt.Sprintf("%q", bye), func(t *testing.T) {
			bothPaths(t, func(t *testing.T, pipelining bool) {
				s := startScripted(t, &scripted{pipelining: pipelining, goodbye: &bye})
				tr := newTransport(t, Options{Routes: routeTo(s)})
				for i := range 2 {
					if r := tr.Deliver(t.Context(), env(i, "ann@example.org"), message); !r.Delivered() {
						t.Fatalf("delivery %d: %q", i, r)
					}
				}
				if s.connections() != 2 {
					t.Errorf("connections = %d, want 2", s.connections())
				}
			})
		})
	}
}

// After a 421 the client reads no further replies: a server that says it
// is closing but leaves the connection open does not hold the worker for a
// command timeout per reply it will never send.
func TestPipelinedStopsReadingAfter421(t *testing.T) {
	s := startScripted(t, &scripted{pipelining: true, silent: true, reply: onFirst(map[string]string{"MAIL": "421 4.3.2 shutting down"})})
	// A command timeout far beyond the wait below: a client that waited
	// for the replies to RCPT and DATA would still be waiting.
	tr := newTransport(t, Options{Routes: routeTo(s), CommandTimeout: time.Hour})
	done := make(chan Result, 1)
	go func() { done <- tr.Deliver(t.Context(), env(1, "ann@example.org"), message) }()
	select {
	case r := <-done:
		wantResult(t, r, 421, "4.3.2", "shutting down")
	case <-time.After(waitFor):
		t.Fatal("still waiting for replies after the server said 421")
	}
}

// Each of the three pipelined replies gets a command's time: a server that
// thinks before each answer is not cut off because the three together take
// longer than one command timeout.
func TestPipelinedRepliesEachGetTheCommandTimeout(t *testing.T) {
	s := startScripted(t, &scripted{pipelining: true, delay: 300 * time.Millisecond})
	tr := newTransport(t, Options{Routes: routeTo(s), CommandTimeout: 800 * time.Millisecond})
	if r := tr.Deliver(t.Context(), env(1, "ann@example.org"), message); !r.Delivered() {
		t.Fatalf("delivery: %q", r)
	}
}

// A session whose RSET is refused is not trusted with another message.
func TestRefusedRSETDropsTheSession(t *testing.T) {
	bothPaths(t, func(t *testing.T, pipelining bool) {
		s := startScripted(t, &scripted{pipelining: pipelining, reply: onFirst(map[string]string{
			"RCPT": "450 4.2.1 try later",
			"RSET": "502 5.5.1 no RSET here",
		})})
		refusedThenFresh(t, s, 450, "4.2.1", "try later")
	})
}

func TestDotStuffing(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a", "a\r\n.\r\n"},
		{".a\r\n.\r\n..\r\n", "..a\r\n..\r\n...\r\n.\r\n"},
		{"a\nb\n", "a\r\nb\r\n.\r\n"},
		{"a\r", "a\r\n.\r\n"},
		{"a\rb", "a\rb\r\n.\r\n"},
		{"a\r.b\r\n", "a\r.b\r\n.\r\n"},
	} {
		if got := string(appendDotStuffed(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzDotStuffing holds appendDotStuffed to what net/textproto's DotWriter
// writes for the same message.
func FuzzDotStuffing(f *testing.F) {
	f.Add([]byte(message), uint8(7))
	f.Add([]byte(".\r\n\r\r\n\n.\r.\n\r\r\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, msg []byte, chunk uint8) {
		var want bytes.Buffer
		bw := bufio.NewWriter(&want)
		dw := textproto.NewWriter(bw).DotWriter()
		_, _ = dw.Write(msg)
		_ = dw.Close()
		if got := appendDotStuffed(nil, msg); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%q: got %q, DotWriter writes %q", msg, got, want.Bytes())
		}
		// Sent in parts cut after LFs, the bytes are the same.
		var w writes
		if _, err := writeData(&w, nil, msg, int(chunk)+1, time.Minute); err != nil {
			t.Fatal(err)
		}
		if got := bytes.Join(w.parts, nil); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%q in parts of %d: got %q, DotWriter writes %q", msg, int(chunk)+1, got, want.Bytes())
		}
	})
}

// writes is a connection that keeps what is written to it, a write apiece.
type writes struct {
	net.Conn
	parts [][]byte
}

func (w *writes) Write(p []byte) (int, error) {
	w.parts = append(w.parts, bytes.Clone(p))
	return len(p), nil
}

func (w *writes) SetDeadline(time.Time) error { return nil }

// FuzzReplies feeds a server's replies to the reader pipelined uses: no
// input may make it panic, and every reply it accepts becomes a Result with
// a code that the queue can act on.
func FuzzReplies(f *testing.F) {
	f.Add([]byte("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n250 2.0.0 queued\r\n"))
	f.Add([]byte("550-5.1.1 no such\r\n550 5.1.1 user\r\n503 5.5.1 RCPT first\r\n"))
	f.Add([]byte("421 4.3.2 bye\r\n"))
	f.Add([]byte("25"))
	f.Add([]byte("250-a\r\n251 b\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		rr := newReplyReader(bytes.NewReader(in))
		for range 4 {
			rep, err := rr.read()
			if err != nil {
				return
			}
			r, _ := refused("mx.test:25", "RCPT TO", rep)
			// A refusal passes on as it came; anything else is a server
			// out of step, a temporary 4.5.0.
			refusal := rep.code >= 400 && rep.code <= 599
			if refusal && r.Code != rep.code || !refusal && (r.Code != 451 || r.Enhanced != "4.5.0") {
				t.Fatalf("reply %d %q became %q", rep.code, rep.text, r)
			}
			if r.Enhanced != "" && !isEnhancedCode(r.Enhanced) || strings.ContainsAny(r.Text, "\r\n") {
				t.Fatalf("reply %d %q became %q", rep.code, rep.text, r)
			}
			if rep.code >= 200 && rep.code < 300 {
				_ = fromText(rep.code, rep.text, "mx.test:25").String()
			}
		}
	})
}
