// Package outbound delivers one rendered message to one recipient's next hop,
// or captures it to disk instead. The queue's delivery workers call
// Transport.Deliver once per recipient and attempt, and turn the Result into
// delivered (2xx), retry later (4xx) or bounced (5xx).
//
// # Next hop
//
// A static route for the recipient's domain wins in every mode. Otherwise
// capture mode writes the message to a directory, smarthost mode relays to
// one configured host, and mx mode looks the domain up in DNS (RFC 5321
// section 5.1): MX records by preference, equal preferences shuffled, the
// domain itself as implicit MX when it has addresses but no MX, a null MX
// ("." alone, RFC 7505) and a domain that does not exist are permanent
// failures, a DNS failure is temporary. Each MX host's addresses are tried in
// order; a host that cannot be reached, greets with an error or fails the
// TLS or AUTH set-up makes Deliver move on to the next address, and when
// none is left the result is a temporary 4.4.1.
//
// # Session
//
// Deliver speaks SMTP (RFC 5321) with go-smtp's client: EHLO with the
// configured host name, STARTTLS when offered (RFC 3207), AUTH PLAIN to the
// smarthost only over TLS or loopback (RFC 4954), then MAIL, RCPT and DATA.
// TLS is opportunistic, as it is for MTAs (RFC 3207 section 4): when the
// handshake fails, Deliver reconnects once in plaintext and remembers the
// host as TLS-broken for an hour, so it is not asked again for every message.
// Replies are passed on with their code, enhanced status code (RFC 3463) and
// text; failures of the connection itself become 4.4.2 and the connection
// is thrown away.
//
// # Pipelining
//
// When the server offers PIPELINING (RFC 2920), as nearly every MTA does,
// the transaction is spoken by this package rather than go-smtp's client,
// which has no pipelining: MAIL, RCPT and DATA go out in one write, their
// three replies are read, each within the command timeout, and the body,
// dot-stuffed, goes out in writes of about 64 KiB (one for a typical
// message). A message then costs two round trips instead of four on a
// reused connection, which is most of a delivery's time to a distant
// server, and fewer system calls on both ends. All three replies are read
// whatever they say, so the session stays in step, except after a 421:
// the server is closing. A refused MAIL, RCPT or DATA is passed on like any
// reply, also when the server hangs up right after it (except a refused
// MAIL on a connection from the idle cache: like a 421 there, it counts as
// a connection the server dropped, see below); a server that answers 354
// to DATA after refusing the recipient is left waiting for a body that
// never comes, and that session is closed, not reused. Replies are read
// with net/textproto, at most 64 KiB each.
//
// # Connection reuse
//
// A connection that ends a transaction in a known state goes back to an idle
// cache keyed by next hop, bounded per hop and closed after IdleTimeout. A
// rejected transaction is reset with RSET first; after a completed DATA the
// server has already cleared its state (RFC 5321 section 4.1.1.4), so no RSET
// is sent: go-smtp re-sends EHLO after every RSET (the pipelined path does
// not), and saving those round trips per message is the point of the cache.
// A cached connection the server has meanwhile dropped shows up as an I/O
// error or a 421 at MAIL FROM; Deliver then retries once on a fresh
// connection.
//
// # Capture
//
// Capture mode (and nothing else) writes CaptureDir/<id>.eml and a JSON
// sidecar <id>.json, each through a temporary file, fsync and rename, so a
// reader never sees half a capture. ListCaptured and OpenCaptured read them
// back for tests and the operator.
//
// Transport is safe for concurrent use by many workers.
package outbound
