package smtpd

import "github.com/emersion/go-smtp"

// downReply is the answer to a new connection while the node's database
// is known to be down: 421 in place of the greeting (RFC 5321 section
// 3.8: a server that must not serve answers 421 and closes; section
// 4.2.3: 421 may answer anything, the opening included) with X.3.2,
// "system not accepting network messages" (RFC 3463 section 3.4). The client keeps its mail and retries
// later, perhaps on another node behind the same load balancer, where it
// would otherwise get a 451 for every transaction.
const downReply = "421 4.3.2 Heed cannot reach its database; no mail is accepted now, please try again later"

// refuseDown is the same refusal at HELO/EHLO, for the connections the
// listener could not refuse: an implicit-TLS client (RFC 8314) must get
// its answer inside TLS, after the handshake and the greeting. The
// connection closes after the reply.
func refuseDown(c *smtp.Conn, unavailable func() bool) error {
	if unavailable == nil || !unavailable() {
		return nil
	}
	if wc, _ := connOf(c); wc != nil {
		wc.closeAfter.Store(true)
	}
	return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: downReply[len("421 4.3.2 "):]}
}
