package report

import (
	"regexp"
	"strconv"
	"strings"
)

// How a reason is decided. The rules come from RFC 3463 (what each
// enhanced status code means), RFC 5321 (what each reply code and each
// command means) and from reading the evidence in real reports: a status
// code alone misleads, because many servers answer 5.1.1 for every refusal
// and 5.2.1 for an unknown user, and the text beside it is what says why.
// In order, first match wins:
//
//  1. Text that names a passing state of the mailbox or a refusal of the
//     sender or the message (full, disabled, blocked, spam, rate limits,
//     SPF/DKIM/DMARC, relaying, size): a soft reason, whatever the code.
//     It comes first because it is the more specific evidence: "550 5.1.1
//     ... has sent to too many recipients this hour" is a rate limit.
//  2. X.2.2 (mailbox full) and X.2.3 (too big): the mailbox exists.
//  3. Text that says the address or domain does not exist in words that
//     no other failure uses ("host or domain name not found", "doesn't
//     have a ... account").
//  4. A plain "user unknown" (or "unknown user", "no such user"): servers
//     and filters say it both for a missing mailbox and to refuse a
//     message, so it counts only with a status that is about the address
//     (X.1.x, X.2.1, X.3.0) or when the report shows it answered RCPT TO.
//     Answered to DATA it is Filtered (RFC 5321 section 3.3: mailboxes are
//     refused at RCPT).
//  5. The enhanced status code (RFC 3463 section 3), by subject and
//     detail.
//  6. Otherwise Undetermined.
type evidence struct {
	code   int    // SMTP reply code, 0 if none
	status string // enhanced status code, "" if none
	text   string // diagnostic and any other text about this recipient
}

// textRule maps words in a report to a reason.
type textRule struct {
	reason Reason
	re     *regexp.Regexp
}

// softText lists the wording of passing or message-level failures, most
// specific first. Patterns are matched against lower-cased text.
var softText = []textRule{
	{MailboxFull, regexp.MustCompile(`mailbox (is )?full|over ?quota|quota (exceeded|exceed)|exceeded (the |his |her )?(storage|quota)|(not enough|insufficient) (disk |storage )?(space|storage)|out of storage|mailbox size limit|storage (allocation|limit)`)},
	{Suspended, regexp.MustCompile(`disabled|suspended|inactive|deactivated|temporar(il)?y locked|is frozen|account (is )?blocked|on hold`)},
	{RateLimited, regexp.MustCompile(`rate limit|receiving mail at a rate|too many (messages|recipients|connections|mails|emails)|frequency limited|throttl`)},
	{AuthFailure, regexp.MustCompile(`\bspf\b|\bdkim\b|\bdmarc\b|unauthenticated|authentication (checks? )?(fail|information)`)},
	{RelayDenied, regexp.MustCompile(`relay(ing)? (access )?(denied|not permitted|prohibited)|not permitted to relay|no relaying|unable to relay`)},
	{VirusDetected, regexp.MustCompile(`virus|malware|infected`)},
	{SpamDetected, regexp.MustCompile(`spam|\bube\b|unsolicited|junk mail`)},
	{Blocked, regexp.MustCompile(`black ?list|block ?list|blocked|banned|\brbl\b|dnsbl|spamhaus|spamcop|reputation|reverse dns|\bptr\b|client host rejected|not allowed to send|open relay|access denied|network not allowed`)},
	{SenderRejected, regexp.MustCompile(`sender (address )?rejected|sender (domain )?(is )?invalid|purported responsible address`)},
	{TooBig, regexp.MustCompile(`too (big|large)|size (limit|exceeds)|exceeds? (the )?(fixed )?maximum (message )?size`)},
	{Filtered, regexp.MustCompile(`recipient preferences|filtered|content rejected`)},
	{Policy, regexp.MustCompile(`policy reasons|not accepted for policy|policy violation`)},
	{Expired, regexp.MustCompile(`message expired|expired|too long in (the )?queue|retry timeout`)},
	{SystemError, regexp.MustCompile(`system error|mailer error|insufficient system resources|routing loop|hop count|remote protocol error|procmail|couldn'?t create`)},
}

// hardText lists wording that only a missing address or domain uses.
var hardText = []textRule{
	{HostUnknown, regexp.MustCompile(`host unknown|unknown host|host or domain name not found|domain (name )?not found|no such domain|domain (is )?not reachable|domain does not exist|unrouteable (address|domain)|illegal host/?domain`)},
	{NotAccept, regexp.MustCompile(`does not accept mail|accepts no mail|null mx|couldn'?t find a mail exchanger|indicated no smtp service|no mx record found`)},
	{HasMoved, regexp.MustCompile(`no longer on (this )?server|has moved|not our user`)},
	{UserUnknown, regexp.MustCompile(`(?m)recipient name is not recognized|invalid final delivery userid|^unknown user:|no mailbox here by that name|address you sent your message to wasn'?t found|because the address couldn'?t be found\.|account that you tried to reach does not exist|no valid recipients|mailbox (does not exist|not found)|recipient (not found|unknown)|recipnotfound|recipientnotfound|user (not found|does not exist)|invalid recipient|address (is )?possibly incorrect|unknown recipient|no such (mailbox|recipient)|user unknown in (local|virtual|relay)|not listed in (the )?(public )?name (&|and) address book`)},
}

// withReplyText is wording that says the address is gone only beside a
// class-5 SMTP reply code: alone, some filters use it to refuse a message.
var withReplyText = regexp.MustCompile(`doesn'?t have an? \S+ account`)

// weakUnknown is "user unknown" as servers and filters both say it; see
// rule 4 above.
var weakUnknown = regexp.MustCompile(`user unknown|unknown user|no such user|user not exist|illegal (user|alias)|unknown or illegal`)

// rcptCommand and dataCommand find which SMTP command a quoted reply
// answered, in the transcripts of Sendmail, Postfix, Exim and others.
var (
	rcptCommand = regexp.MustCompile(`>>> ?rcpt to|smtp:rcpt|after rcpt|in reply to rcpt|rcpt to response`)
	dataCommand = regexp.MustCompile(`>>> ?data|in reply to end of data|after end of data|in reply to data|smtp command\s+data`)
)

// urlRE finds links, whose paths often hold words ("#filtered", "/rbl/")
// that are not evidence; addresses are not evidence either
// ("filtered@example.net").
var urlRE = regexp.MustCompile(`(?i)\b(https?|ftp)://\S+`)

func classify(ev evidence) Reason {
	text := urlRE.ReplaceAllString(ev.text, " ")
	text = asciiLower(addrRE.ReplaceAllString(text, "<address>"))
	for _, r := range softText {
		if r.re.MatchString(text) {
			return r.reason
		}
	}
	sub, det := subjectDetail(ev.status)
	switch {
	case sub == 2 && det == 2:
		return MailboxFull
	case sub == 2 && det == 3, sub == 3 && det == 4:
		return TooBig
	}
	for _, r := range hardText {
		if r.re.MatchString(text) {
			return r.reason
		}
	}
	if ev.code/100 == 5 && withReplyText.MatchString(text) {
		return UserUnknown
	}
	if weakUnknown.MatchString(text) {
		// A status about the address is read first: Sendmail's transcript
		// of a pipelined session shows ">>> DATA" before the RCPT replies.
		switch {
		case sub == 1, sub == 2 && det == 1, sub == 3 && det == 0:
			return UserUnknown
		case dataCommand.MatchString(text):
			return Filtered
		case rcptCommand.MatchString(text):
			return UserUnknown
		}
	}
	if r := byStatus(sub, det); r != "" {
		return r
	}
	return Undetermined
}

// byStatus maps an enhanced status code to a reason (RFC 3463 section 3;
// X.7.13 from RFC 4954, X.7.23-X.7.27 from RFC 7372 and RFC 7505).
func byStatus(sub, det int) Reason {
	switch sub {
	case 1:
		switch det {
		case 1, 3:
			return UserUnknown
		case 2:
			return HostUnknown
		case 6:
			return HasMoved
		case 10:
			return NotAccept
		case 7, 8:
			return SenderRejected
		}
	case 2:
		switch det {
		case 1:
			return Suspended
		case 4:
			return SystemError
		}
		return Filtered
	case 3:
		return SystemError
	case 4:
		if det == 7 {
			return Expired
		}
		return NetworkError
	case 5:
		return ProtocolError
	case 6:
		return ContentError
	case 7:
		switch {
		case det == 13:
			return Suspended
		case det >= 23 && det <= 27:
			return AuthFailure
		}
		return Policy
	}
	return ""
}

// subjectDetail splits "5.1.10" into 1 and 10; -1, -1 for no code.
func subjectDetail(status string) (int, int) {
	parts := strings.Split(status, ".")
	if len(parts) != 3 {
		return -1, -1
	}
	sub, err1 := strconv.Atoi(parts[1])
	det, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil {
		return -1, -1
	}
	return sub, det
}
