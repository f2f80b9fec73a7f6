package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// minAdminToken is the shortest operator token accepted: long enough that
// guessing it over the network is hopeless.
const minAdminToken = 16

// Validate checks every value and returns an Errors listing all problems,
// or nil. Errors from Validate carry no file or line; Load and Parse call it
// with the file's positions.
func (c *Config) Validate() error {
	if errs := c.validate("", nil); len(errs) > 0 {
		return errs
	}
	return nil
}

// checker collects errors, locating each key in the document (nil when
// there is no file).
type checker struct {
	file string
	doc  *yaml.Node
	errs Errors
}

func (v *checker) add(path []string, format string, args ...any) {
	v.addAt(path, path, format, args...)
}

// addAt reports an error about key at the line of another key, for a
// missing key better explained by its neighbour (smarthost by mode).
func (v *checker) addAt(key, lineKey []string, format string, args ...any) {
	v.errs = append(v.errs, Error{
		File: v.file,
		Line: lineOf(v.doc, lineKey),
		Key:  keyPath(key),
		Msg:  fmt.Sprintf(format, args...),
	})
}

func (c *Config) validate(file string, doc *yaml.Node) Errors {
	v := &checker{file: file, doc: doc}
	c.checkNames(v)
	c.checkSMTP(v)
	c.checkInbound(v)
	c.checkHTTP(v)
	c.checkAdmin(v)
	c.checkDelivery(v)
	c.checkBounces(v)
	c.checkReadiness(v)
	c.checkReputation(v)
	c.checkStorage(v)
	c.checkConsole(v)
	v.oneOf([]string{"log", "level"}, c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf([]string{"log", "format"}, c.Log.Format, "text", "json")
	return v.errs
}

// nodeName is what node may be: a name fit for a metric's label and a
// log line.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,253}$`)

func (c *Config) checkNames(v *checker) {
	hostOK := v.domain([]string{"hostname"}, c.Hostname)
	if c.DataDir == "" {
		v.add([]string{"data_dir"}, "must not be empty")
	}
	if !nodeName.MatchString(c.Node) {
		v.add([]string{"node"}, "must be 1 to 253 letters, digits, dots, hyphens or underscores, such as heed-1 (got %q)", c.Node)
	}
	// A derived domain is only worth a message of its own when the hostname
	// it derives from is not already reported.
	if hostOK || c.ReturnPathDomain != "bounces."+c.Hostname {
		v.domain([]string{"return_path_domain"}, c.ReturnPathDomain)
	}
	if hostOK || c.Unsubscribe.MailtoDomain != "unsubscribe."+c.Hostname {
		v.domain([]string{"unsubscribe", "mailto_domain"}, c.Unsubscribe.MailtoDomain)
	}
}

func (c *Config) checkSMTP(v *checker) {
	s := c.SMTP
	v.listen([]string{"smtp", "submission", "listen"}, s.Submission.Listen, false)
	v.listen([]string{"smtp", "submission", "implicit_tls_listen"}, s.Submission.ImplicitTLSListen, true)
	v.listen([]string{"smtp", "inbound", "listen"}, s.Inbound.Listen, false)
	cert, key := s.Submission.TLSCert, s.Submission.TLSKey
	switch {
	case cert == "" && key != "":
		v.add([]string{"smtp", "submission", "tls_cert"}, "must be set with tls_key (or leave both empty for a self-signed certificate)")
	case cert != "" && key == "":
		v.add([]string{"smtp", "submission", "tls_key"}, "must be set with tls_cert (or leave both empty for a self-signed certificate)")
	}
	v.exists([]string{"smtp", "submission", "tls_cert"}, cert)
	v.exists([]string{"smtp", "submission", "tls_key"}, key)
	v.atLeast([]string{"smtp", "max_message_bytes"}, s.MaxMessageBytes, 1024)
	v.atLeast([]string{"smtp", "max_recipients"}, int64(s.MaxRecipients), 1)
	v.atLeast([]string{"smtp", "max_connections"}, int64(s.MaxConnections), 1)
	// RFC 5321 section 4.5.3.1.4: a command line is up to 512 octets.
	v.atLeast([]string{"smtp", "max_line_length"}, int64(s.MaxLineLength), 512)
	v.duration([]string{"smtp", "read_timeout"}, s.ReadTimeout, time.Second)
	v.duration([]string{"smtp", "write_timeout"}, s.WriteTimeout, time.Second)
	v.atLeast([]string{"smtp", "max_auth_failures"}, int64(s.MaxAuthFailures), 1)
	v.atLeast([]string{"smtp", "submission", "max_connections_per_client"}, int64(s.Submission.MaxConnectionsPerClient), 1)
	v.atLeast([]string{"smtp", "inbound", "max_connections_per_client"}, int64(s.Inbound.MaxConnectionsPerClient), 1)
	// The short timeouts only ever shorten read_timeout, so a longer one
	// would be a mistake that silently does nothing.
	for _, t := range []struct {
		key string
		d   time.Duration
	}{{"first_command_timeout", s.FirstCommandTimeout}, {"read_timeout_before_auth", s.ReadTimeoutBeforeAuth}} {
		v.duration([]string{"smtp", t.key}, t.d, time.Second)
		if t.d > s.ReadTimeout && s.ReadTimeout >= time.Second {
			v.add([]string{"smtp", t.key}, "must not be longer than smtp.read_timeout (%s; got %s)", s.ReadTimeout, t.d)
		}
	}
	v.duration([]string{"smtp", "max_session_before_auth"}, s.MaxSessionBeforeAuth, time.Second)
	// Fewer would cut off a client doing STARTTLS and AUTH LOGIN.
	v.atLeast([]string{"smtp", "max_commands_before_auth"}, int64(s.MaxCommandsBeforeAuth), 10)
	v.atLeast([]string{"smtp", "max_auth_failures_per_client"}, int64(s.MaxAuthFailuresPerClient), 1)
	v.atLeast([]string{"smtp", "max_auth_failures_per_username"}, int64(s.MaxAuthFailuresPerUsername), 1)
	v.duration([]string{"smtp", "auth_failure_window"}, s.AuthFailureWindow, time.Minute)
}

// checkInbound checks the inbound listener's bounds: each must let
// something through, and the folder must hold at least one kept report.
func (c *Config) checkInbound(v *checker) {
	in := c.SMTP.Inbound
	key := func(k string) []string { return []string{"smtp", "inbound", k} }
	v.atLeast(key("max_messages_per_client_per_minute"), int64(in.MaxMessagesPerClientPerMinute), 1)
	v.atLeast(key("unread_reports_max_files"), int64(in.UnreadReportsMaxFiles), 1)
	// Enough for the header and first lines that say why a report could
	// not be read.
	v.atLeast(key("unread_report_keep_bytes"), in.UnreadReportKeepBytes, 4096)
	if in.UnreadReportsMaxBytes < in.UnreadReportKeepBytes {
		v.add(key("unread_reports_max_bytes"), "must be at least smtp.inbound.unread_report_keep_bytes (%d), or no report fits (got %d)",
			in.UnreadReportKeepBytes, in.UnreadReportsMaxBytes)
	}
	v.duration(key("unread_reports_retention"), in.UnreadReportsRetention, time.Hour)
}

func (c *Config) checkHTTP(v *checker) {
	v.listen([]string{"http", "public", "listen"}, c.HTTP.Public.Listen, false)
	v.listen([]string{"http", "admin", "listen"}, c.HTTP.Admin.Listen, false)
	p := c.HTTP.Public
	v.atLeast([]string{"http", "public", "max_connections"}, int64(p.MaxConnections), 1)
	v.atLeast([]string{"http", "public", "max_connections_per_client"}, int64(p.MaxConnectionsPerClient), 1)
	a := c.HTTP.Admin
	v.duration([]string{"http", "admin", "read_timeout"}, a.ReadTimeout, time.Second)
	v.duration([]string{"http", "admin", "write_timeout"}, a.WriteTimeout, time.Second)
	v.duration([]string{"http", "admin", "idle_timeout"}, a.IdleTimeout, time.Second)
	v.atLeast([]string{"http", "admin", "max_connections"}, int64(a.MaxConnections), 1)
	v.atLeast([]string{"http", "admin", "max_connections_per_client"}, int64(a.MaxConnectionsPerClient), 1)
	key := []string{"http", "public", "base_url"}
	u, err := url.Parse(c.HTTP.Public.BaseURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		v.add(key, "must be an absolute http or https URL such as https://unsubscribe.example.com (got %q)", c.HTTP.Public.BaseURL)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		v.add(key, "must not have a query or fragment: unsubscribe paths are appended to it (got %q)", c.HTTP.Public.BaseURL)
	case c.Delivery.Mode != ModeCapture && (u.Scheme != "https" || localHost(u.Hostname()) ||
		c.HTTP.Public.BaseURL == "https://unsubscribe."+c.Hostname && !strings.Contains(c.Hostname, ".")):
		// Mail that leaves the machine carries this URL to its readers, and
		// mailbox providers use one-click unsubscribe only over HTTPS (RFC
		// 8058 section 3).
		hint := ""
		if c.HTTP.Public.BaseURL == "https://unsubscribe."+c.Hostname {
			hint = " (derived from hostname " + strconv.Quote(c.Hostname) + ": set hostname to the relay's public name, or set base_url)"
		}
		v.add(key, "must be the public https URL of this relay's unsubscribe endpoints, such as https://unsubscribe.example.com, "+
			"when mail is delivered (delivery.mode %s); got %q%s", c.Delivery.Mode, c.HTTP.Public.BaseURL, hint)
	}
}

// localHost reports a host name no reader of a message can reach.
func localHost(h string) bool {
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.IsLoopback() || ip.IsUnspecified() || ip.IsPrivate() || ip.IsLinkLocalUnicast()
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if !strings.Contains(h, ".") {
		return true // a single label: a machine name, not a public host
	}
	for _, suffix := range []string{".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain", ".invalid"} {
		if strings.HasSuffix(h, suffix) {
			return true
		}
	}
	return false
}

func (c *Config) checkAdmin(v *checker) {
	toks := c.Admin.Tokens
	if len(toks) == 0 && !c.Demo {
		v.add([]string{"admin", "tokens"}, "at least one operator token is required: set admin.tokens or %s", EnvAdminToken)
	}
	fromFile := len(toks) - c.envTokens
	for i, tok := range toks {
		problem := tokenProblem(tok)
		switch {
		case problem == "":
		case i >= fromFile:
			v.errs = append(v.errs, Error{Key: EnvAdminToken, Msg: problem})
		default:
			v.add([]string{"admin", "tokens", "[" + strconv.Itoa(i) + "]"}, "%s", problem)
		}
	}
}

// tokenProblem says what is wrong with an operator token, never quoting it.
// Tokens travel as RFC 6750 bearer tokens, whose syntax (section 2.1,
// b64token) has no room for spaces or punctuation beyond -._~+/=.
func tokenProblem(tok string) string {
	if len(tok) < minAdminToken {
		return fmt.Sprintf("each token must be at least %d characters (got %d)", minAdminToken, len(tok))
	}
	for _, r := range tok {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~+/=", r)
		if !ok {
			return "tokens may only hold letters, digits and -._~+/= (RFC 6750 bearer token syntax)"
		}
	}
	return ""
}

func (c *Config) checkDelivery(v *checker) {
	d := c.Delivery
	mode := []string{"delivery", "mode"}
	v.oneOf(mode, d.Mode, ModeMX, ModeSmarthost, ModeCapture)
	sh := []string{"delivery", "smarthost"}
	switch {
	case d.Mode == ModeSmarthost && d.Smarthost == "":
		v.addAt(sh, mode, "required in smarthost mode (host:port)")
	case d.Smarthost != "":
		v.hostPort(sh, d.Smarthost)
	}
	lower := map[string]string{}
	for _, dom := range slices.Sorted(maps.Keys(d.Routes)) {
		key := []string{"delivery", "routes", dom}
		v.domain(key, dom)
		v.hostPort(key, d.Routes[dom])
		if prev, dup := lower[strings.ToLower(dom)]; dup {
			v.add(key, "same domain as %q (domains are case-insensitive)", prev)
		}
		lower[strings.ToLower(dom)] = dom
	}
	v.duration([]string{"delivery", "max_queue_lifetime"}, d.MaxQueueLifetime, time.Minute)
	v.atLeast([]string{"delivery", "workers"}, int64(d.Workers), 0)
	v.atLeast([]string{"delivery", "domain_concurrency"}, int64(d.DomainConcurrency), 1)
	v.duration([]string{"delivery", "connect_timeout"}, d.ConnectTimeout, time.Second)
	v.atLeast([]string{"webhooks", "concurrency"}, int64(c.Webhooks.Concurrency), 1)
	v.duration([]string{"webhooks", "timeout"}, c.Webhooks.Timeout, time.Second)
	// Events must outlive the webhooks' retries (27 h and a half) and the
	// queue's lifetime, or a retried event would be gone before its last try.
	v.duration([]string{"retention", "events"}, c.Retention.Events, max(48*time.Hour, c.Delivery.MaxQueueLifetime))
}

// maxSoftLimit is suppression's cap on the soft bounces one history keeps.
const maxSoftLimit = 20

func (c *Config) checkBounces(v *checker) {
	b := c.Bounces
	// One soft bounce never suppresses: a limit of 1 would make every full
	// mailbox a hard bounce.
	if key := []string{"bounces", "soft_limit"}; b.SoftLimit != 0 && (b.SoftLimit < 2 || b.SoftLimit > maxSoftLimit) {
		v.add(key, "must be 0 (off) or from 2 to %d (got %d)", maxSoftLimit, b.SoftLimit)
	}
	v.duration([]string{"bounces", "soft_span"}, b.SoftSpan, 0)
	v.duration([]string{"bounces", "soft_window"}, b.SoftWindow, max(24*time.Hour, b.SoftSpan))
}

// checkReputation checks the guard's thresholds: rates are fractions, a
// pause level above its warning level (0 turns the pause off).
func (c *Config) checkReputation(v *checker) {
	r := c.Reputation
	for _, p := range []struct {
		name        string
		warn, pause float64
	}{{"bounce", r.WarnBounceRate, r.PauseBounceRate}, {"complaint", r.WarnComplaintRate, r.PauseComplaintRate}} {
		if p.warn <= 0 || p.warn >= 1 {
			v.add([]string{"reputation", "warn_" + p.name + "_rate"}, "must be a fraction above 0 and below 1 (0.05 is 5%%), got %v", p.warn)
			continue
		}
		if p.pause != 0 && (p.pause <= p.warn || p.pause > 1) {
			v.add([]string{"reputation", "pause_" + p.name + "_rate"}, "must be 0 (no pause) or above warn_%s_rate and at most 1, got %v", p.name, p.pause)
		}
	}
	v.atLeast([]string{"reputation", "min_final_attempts"}, r.MinFinalAttempts, 1)
	v.atLeast([]string{"reputation", "min_delivered"}, r.MinDelivered, 1)
	v.oneOf([]string{"reputation", "pause_scope"}, r.PauseScope, "tenant", "marketing")
	v.duration([]string{"reputation", "auto_resume_after"}, r.AutoResumeAfter, 0)
}

// checkReadiness checks the sending addresses and the readiness reports'
// resolver and time.
func (c *Config) checkReadiness(v *checker) {
	seen := map[netip.Addr]bool{}
	for i, a := range c.Delivery.SourceAddresses {
		key := []string{"delivery", "source_addresses", "[" + strconv.Itoa(i) + "]"}
		ip, err := netip.ParseAddr(a)
		switch {
		case err != nil || ip.Zone() != "":
			v.add(key, "must be an IP address such as 203.0.113.25 or 2001:db8::25 (got %q)", a)
		case seen[ip.Unmap()]:
			v.add(key, "%s is listed twice", a)
		}
		seen[ip.Unmap()] = true
	}
	if s := c.Readiness.DNSServer; s != "" {
		host, port, err := splitHostPort(s)
		if _, perr := netip.ParseAddr(host); err == "" && (perr != nil || port == 0) {
			err = "the host must be an IP address and the port not 0"
		}
		if err != "" {
			v.add([]string{"readiness", "dns_server"}, "must be ip:port such as 127.0.0.1:53 (got %q: %s)", s, err)
		}
	}
	key := []string{"readiness", "timeout"}
	v.duration(key, c.Readiness.Timeout, time.Second)
	// The report answers a GET of the admin API: keep it under its
	// write timeout.
	if c.Readiness.Timeout > 30*time.Second {
		v.add(key, "must be at most 30s (got %s)", c.Readiness.Timeout)
	}
}

// checkConsole checks the console's networks and sign-in limits.
func (c *Config) checkConsole(v *checker) {
	for i, n := range c.Console.AllowNetworks {
		key := []string{"console", "allow_networks", "[" + strconv.Itoa(i) + "]"}
		if p, err := netip.ParsePrefix(n); err != nil || p.Masked() != p {
			v.add(key, "must be a network such as 192.0.2.0/24 or 2001:db8::/32, with no host bits set (got %q)", n)
		}
	}
	v.atLeast([]string{"console", "max_login_attempts_per_user"}, int64(c.Console.MaxLoginAttemptsPerUser), 1)
	v.atLeast([]string{"console", "max_login_attempts_per_client"}, int64(c.Console.MaxLoginAttemptsPerClient), 1)
	v.duration([]string{"console", "login_attempt_window"}, c.Console.LoginAttemptWindow, time.Minute)
}

func (v *checker) oneOf(key []string, got string, allowed ...string) {
	if !slices.Contains(allowed, got) {
		v.add(key, "must be one of %s (got %q)", strings.Join(allowed, ", "), got)
	}
}

func (v *checker) atLeast(key []string, got, minimum int64) {
	if got < minimum {
		v.add(key, "must be at least %d (got %d)", minimum, got)
	}
}

func (v *checker) duration(key []string, got, minimum time.Duration) {
	if got < minimum {
		v.add(key, "must be at least %s (got %s)", minimum, got)
	}
}

// listen checks a listener address. Port 0 (any free port) is allowed, as
// tests use it; an empty host means every interface.
func (v *checker) listen(key []string, addr string, optional bool) {
	if addr == "" && optional {
		return
	}
	if _, _, err := splitHostPort(addr); err != "" {
		v.add(key, "must be host:port such as 127.0.0.1:2525 (got %q: %s)", addr, err)
	}
}

// hostPort checks a next hop: a host to dial and a non-zero port.
func (v *checker) hostPort(key []string, addr string) {
	host, port, err := splitHostPort(addr)
	switch {
	case err == "" && host == "":
		err = "missing host"
	case err == "" && port == 0:
		err = "port 0 cannot be dialled"
	}
	if err != "" {
		v.add(key, "must be host:port such as mx.example.com:25 (got %q: %s)", addr, err)
	}
}

func splitHostPort(addr string) (host string, port int, problem string) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		if ae, ok := err.(*net.AddrError); ok {
			return "", 0, ae.Err
		}
		return "", 0, err.Error()
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, "port must be a number from 0 to 65535"
	}
	return host, port, ""
}

// file checks that a configured file exists now, rather than at the first
// TLS handshake.
func (v *checker) exists(key []string, path string) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		v.add(key, "cannot use %q: %v", path, unwrapPath(err))
	}
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// domain checks a domain name as RFC 1035 section 2.3.1 and RFC 1123
// section 2.1 allow for host names: dot-separated labels of letters, digits
// and inner hyphens, up to 63 octets each and 253 in all.
func (v *checker) domain(key []string, name string) bool {
	if msg := domainProblem(name); msg != "" {
		v.add(key, "must be a domain name such as relay.example.com (got %q: %s)", name, msg)
		return false
	}
	return true
}

func domainProblem(name string) string {
	if name == "" {
		return "empty"
	}
	if len(name) > 253 {
		return "longer than 253 characters"
	}
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return "empty label"
		case len(label) > 63:
			return "label longer than 63 characters"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "label starts or ends with a hyphen"
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Sprintf("%q is not a letter, digit or hyphen", r)
			}
		}
	}
	return ""
}

func (c *Config) checkStorage(v *checker) {
	st := c.Storage
	switch st.Driver {
	case DriverBbolt:
	case DriverPostgres:
		if strings.TrimSpace(st.Postgres.DSN) == "" {
			v.add([]string{"storage", "postgres", "dsn"}, "is required when storage.driver is postgres: set it or %s", EnvPostgresDSN)
		}
	default:
		v.add([]string{"storage", "driver"}, "must be bbolt or postgres (got %q)", st.Driver)
	}
	v.atLeast([]string{"storage", "postgres", "max_conns"}, int64(st.Postgres.MaxConns), 2)
	lease := []string{"storage", "postgres", "delivery_lease"}
	v.duration(lease, st.Postgres.DeliveryLease, 3*time.Second)
	if st.Postgres.DeliveryLease > time.Hour {
		v.add(lease, "must be at most 1h (got %s)", st.Postgres.DeliveryLease)
	}
}
