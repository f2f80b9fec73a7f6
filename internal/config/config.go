// Package config holds Heed's configuration: one typed struct whose YAML keys
// are fixed by the public contract (shared/design/contract.md), the defaults
// in one place, and a loader that rejects unknown keys and bad values with
// the line number they were found on.
package config

import (
	"maps"
	"os"
	"slices"
	"time"
)

// Config is the whole configuration of a Heed process. Every field has a
// default (see Default); a config file only needs the keys it changes.
type Config struct {
	// Hostname is the name Heed gives in EHLO and greetings and the domain
	// of the Message-IDs it creates.
	Hostname string `yaml:"hostname"`
	// DataDir holds the database, the spool, generated keys and certificates
	// and, in capture mode, the captured mail.
	DataDir string `yaml:"data_dir"`
	// Node names this process among the nodes on one database: the label
	// node on its own metrics. Several nodes share one configuration
	// file, so the default is the machine's host name, not Hostname.
	Node string `yaml:"node"`

	SMTP     SMTP     `yaml:"smtp"`
	HTTP     HTTP     `yaml:"http"`
	Admin    Admin    `yaml:"admin"`
	Delivery Delivery `yaml:"delivery"`

	// ReturnPathDomain is the domain of the VERP envelope sender Heed uses
	// for outgoing mail; bounces to it are handled by the inbound listener.
	ReturnPathDomain string `yaml:"return_path_domain"`

	Unsubscribe Unsubscribe `yaml:"unsubscribe"`
	Webhooks    Webhooks    `yaml:"webhooks"`
	Retention   Retention   `yaml:"retention"`
	Log         Log         `yaml:"log"`
	Bounces     Bounces     `yaml:"bounces"`
	Readiness   Readiness   `yaml:"readiness"`
	Reputation  Reputation  `yaml:"reputation"`
	Storage     Storage     `yaml:"storage"`
	Console     Console     `yaml:"console"`

	// Demo is true when Heed runs on the embedded defaults (no config file):
	// it creates a demo tenant and prints its credentials. Not a YAML key.
	Demo bool `yaml:"-"`

	// envTokens is how many of Admin.Tokens, at the end, came from
	// HEED_ADMIN_TOKEN, so errors about them name the variable, not a line.
	envTokens int
}

// SMTP configures both SMTP listeners and the limits of the submission one.
type SMTP struct {
	Submission Submission `yaml:"submission"`
	Inbound    Inbound    `yaml:"inbound"`

	// MaxMessageBytes is the largest message accepted (552 5.3.4 beyond).
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
	// MaxRecipients is the most RCPT TO per message (452 4.5.3 beyond).
	MaxRecipients int `yaml:"max_recipients"`
	// MaxConnections caps concurrent SMTP connections per listener; further
	// clients get 421 4.7.0 and are disconnected.
	MaxConnections int `yaml:"max_connections"`
	// MaxLineLength caps a command or text line, CRLF included.
	MaxLineLength int `yaml:"max_line_length"`
	// ReadTimeout and WriteTimeout bound each read and write on a session
	// (RFC 5321 section 4.5.3.2 suggests minutes, not seconds).
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxAuthFailures is how many failed AUTH attempts close a connection.
	MaxAuthFailures int `yaml:"max_auth_failures"`
	// FirstCommandTimeout bounds the wait for a new client's first command,
	// and ReadTimeoutBeforeAuth each read after it until the client has
	// authenticated (on the inbound listener, outside DATA), so that
	// connections held open by sending nothing are soon given back.
	FirstCommandTimeout   time.Duration `yaml:"first_command_timeout"`
	ReadTimeoutBeforeAuth time.Duration `yaml:"read_timeout_before_auth"`
	// MaxSessionBeforeAuth bounds the whole time from connect until the
	// client authenticates (on the inbound listener, until DATA, and again
	// from the end of each message), and MaxCommandsBeforeAuth the command
	// lines it may send in that time: bounding each read alone let a
	// client that never authenticates hold a connection for ever.
	MaxSessionBeforeAuth  time.Duration `yaml:"max_session_before_auth"`
	MaxCommandsBeforeAuth int           `yaml:"max_commands_before_auth"`
	// MaxAuthFailuresPerClient and MaxAuthFailuresPerUsername are how many
	// failed AUTH attempts one client address (an IPv6 client's /64), and
	// one username from any address, may make within AuthFailureWindow;
	// beyond, AUTH is refused with 454 4.7.0 without checking the password.
	MaxAuthFailuresPerClient   int           `yaml:"max_auth_failures_per_client"`
	MaxAuthFailuresPerUsername int           `yaml:"max_auth_failures_per_username"`
	AuthFailureWindow          time.Duration `yaml:"auth_failure_window"`
}

// Submission is the listener SaaS apps send through.
type Submission struct {
	// Listen is the STARTTLS (port 587 style) listener address.
	Listen string `yaml:"listen"`
	// ImplicitTLSListen, when set, adds an implicit-TLS listener (RFC 8314,
	// port 465 style).
	ImplicitTLSListen string `yaml:"implicit_tls_listen"`
	// TLSCert and TLSKey are PEM files. When both are empty Heed generates a
	// self-signed certificate into the data directory.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// MaxConnectionsPerClient caps the connections of one client address
	// (an IPv6 client's /64); further ones get 421 4.7.0.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
}

// Inbound is the listener for unsubscribe mail, bounces and complaints.
type Inbound struct {
	Listen string `yaml:"listen"`
	// MaxMessagesPerClientPerMinute is how many messages one client
	// address (an IPv6 client's /64) may send a minute, in bursts of as
	// many; more get 450 4.7.1.
	MaxMessagesPerClientPerMinute int `yaml:"max_messages_per_client_per_minute"`
	// UnreadReportsMaxFiles and UnreadReportsMaxBytes bound
	// data_dir/reports/unread; a new report past either deletes the
	// oldest ones first.
	UnreadReportsMaxFiles int   `yaml:"unread_reports_max_files"`
	UnreadReportsMaxBytes int64 `yaml:"unread_reports_max_bytes"`
	// UnreadReportKeepBytes is how much of each unread report is kept.
	UnreadReportKeepBytes int64 `yaml:"unread_report_keep_bytes"`
	// UnreadReportsRetention is how long an unread report is kept.
	UnreadReportsRetention time.Duration `yaml:"unread_reports_retention"`
	// MaxConnectionsPerClient caps the connections of one client address
	// (an IPv6 client's /64); further ones get 421 4.7.0.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
}

// HTTP configures the public (unsubscribe) and admin listeners.
type HTTP struct {
	Public PublicHTTP `yaml:"public"`
	Admin  AdminHTTP  `yaml:"admin"`
}

// PublicHTTP is the listener consumers reach from unsubscribe links.
type PublicHTTP struct {
	Listen string `yaml:"listen"`
	// BaseURL is the public HTTPS origin of the unsubscribe endpoints, used
	// to build List-Unsubscribe URLs (default https://unsubscribe.<hostname>;
	// it must be public https unless delivery.mode is capture).
	BaseURL string `yaml:"base_url"`
	// MaxConnections and MaxConnectionsPerClient cap the connections open
	// at once, in total and from one client address (an IPv6 client's
	// /64): the listener faces the internet.
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
}

// AdminHTTP is the listener of the admin REST API and metrics. Tenants'
// API keys reach it, so one client must not be able to hold it.
type AdminHTTP struct {
	Listen string `yaml:"listen"`
	// ReadTimeout bounds the request headers, and each read of a body.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds each write of a response.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a keep-alive connection that sends no request.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections and MaxConnectionsPerClient cap the connections open
	// at once, in all and from one client address (an IPv6 client's /64);
	// more get 503 and are closed.
	MaxConnections          int `yaml:"max_connections"`
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
}

// Admin configures who may use the admin API as an operator.
type Admin struct {
	// Tokens are operator bearer tokens. HEED_ADMIN_TOKEN adds one.
	Tokens []string `yaml:"tokens"`
}

// Delivery modes.
const (
	ModeMX        = "mx"
	ModeSmarthost = "smarthost"
	ModeCapture   = "capture"
)

// Delivery configures the outbound side.
type Delivery struct {
	// Mode is mx, smarthost or capture.
	Mode string `yaml:"mode"`
	// Smarthost is host:port of the relay used in smarthost mode.
	Smarthost string `yaml:"smarthost"`
	// SmarthostUsername and SmarthostPassword, when set, authenticate to the
	// smarthost (AUTH PLAIN, only over TLS). HEED_SMARTHOST_PASSWORD sets the
	// password from the environment.
	SmarthostUsername string `yaml:"smarthost_username"`
	SmarthostPassword string `yaml:"smarthost_password"`
	// Routes maps a recipient domain to a static next hop host:port, in
	// every mode.
	Routes map[string]string `yaml:"routes"`
	// MaxQueueLifetime is how long a message is retried before it bounces.
	MaxQueueLifetime time.Duration `yaml:"max_queue_lifetime"`
	// Workers is the number of concurrent delivery attempts; 0 = automatic.
	Workers int `yaml:"workers"`
	// DomainConcurrency caps concurrent deliveries to one recipient domain.
	DomainConcurrency int `yaml:"domain_concurrency"`
	// ConnectTimeout bounds dialling a next hop.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// SourceAddresses are the public IP addresses mail leaves from, which
	// the readiness report checks SPF and reverse DNS of; empty means the
	// A and AAAA records of Hostname. Heed does not bind to them.
	SourceAddresses []string `yaml:"source_addresses"`
}

// Readiness configures the sender readiness reports of sending domains.
type Readiness struct {
	// DNSServer is host:port of the DNS server the reports (and the admin
	// API's DNS checks) ask; empty means the system's resolvers.
	DNSServer string `yaml:"dns_server"`
	// Timeout bounds one report, its DNS lookups and HTTPS probe together.
	Timeout time.Duration `yaml:"timeout"`
}

// Storage drivers.
const (
	DriverBbolt    = "bbolt"
	DriverPostgres = "postgres"
)

// Storage chooses where Heed keeps its state: the embedded bbolt file under
// DataDir, or a PostgreSQL database shared by one or more Heed nodes.
type Storage struct {
	// Driver is bbolt (the default) or postgres.
	Driver   string   `yaml:"driver"`
	Postgres Postgres `yaml:"postgres"`
}

// Postgres is the connection to PostgreSQL when Storage.Driver is postgres.
type Postgres struct {
	// DSN is a libpq connection string or URL; HEED_POSTGRES_DSN replaces
	// it, so that a password need not be in the file.
	DSN string `yaml:"dsn"`
	// MaxConns caps the connections of this node's pool.
	MaxConns int `yaml:"max_conns"`
	// DeliveryLease is how long a node's claim on a due recipient lasts
	// without renewal (renewed every third of it while the attempt
	// runs): a node that dies holds its recipients this long at most
	// before another node retries them.
	DeliveryLease time.Duration `yaml:"delivery_lease"`
}

// Console configures the web console served under /console/ on the
// admin listener (docs/console.md).
type Console struct {
	// AllowNetworks are the networks (CIDR) the console answers; empty
	// means every client that reaches the admin listener. The admin API
	// is not affected.
	AllowNetworks []string `yaml:"allow_networks"`
	// MaxLoginAttemptsPerUser and MaxLoginAttemptsPerClient are how many
	// sign-in attempts a username, and a client address (an IPv6 /64),
	// may make in LoginAttemptWindow; past them an attempt is refused
	// before the password is checked.
	MaxLoginAttemptsPerUser   int           `yaml:"max_login_attempts_per_user"`
	MaxLoginAttemptsPerClient int           `yaml:"max_login_attempts_per_client"`
	LoginAttemptWindow        time.Duration `yaml:"login_attempt_window"`
}

// Unsubscribe configures the opt-out addresses Heed puts in mail.
type Unsubscribe struct {
	// MailtoDomain is the domain of the mailto: unsubscribe addresses.
	MailtoDomain string `yaml:"mailto_domain"`
}

// Webhooks configures event delivery to the tenants' endpoints.
type Webhooks struct {
	// AllowPrivateTargets lets endpoints resolve to loopback and private
	// addresses and use plain http (tests, private deployments).
	AllowPrivateTargets bool `yaml:"allow_private_targets"`
	// Concurrency bounds the deliveries in flight, all endpoints together.
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds one delivery attempt.
	Timeout time.Duration `yaml:"timeout"`
}

// Retention says how long Heed keeps records of what happened.
type Retention struct {
	// Events is how long events, finished messages' records and finished
	// webhook deliveries are kept (suppressions are kept for ever).
	Events time.Duration `yaml:"events"`
}

// Bounces says when soft bounces suppress an address (docs/bounces.md):
// SoftLimit of them, of distinct messages, the first and the last at
// least SoftSpan apart, with no delivery between and none older than
// SoftWindow.
type Bounces struct {
	// SoftLimit is how many soft bounces suppress; 0 turns it off.
	SoftLimit int `yaml:"soft_limit"`
	// SoftSpan is how far apart the first and the last must be at least.
	SoftSpan time.Duration `yaml:"soft_span"`
	// SoftWindow is how long a soft bounce counts and is kept.
	SoftWindow time.Duration `yaml:"soft_window"`
}

// Reputation is the reputation guard's thresholds (package reputation,
// docs/deliverability.md): rates are fractions (0.05 is 5%), judged over
// the last 24 hours once the window holds the minimum volume.
type Reputation struct {
	// WarnBounceRate and PauseBounceRate: hard bounces ÷ final attempts.
	WarnBounceRate  float64 `yaml:"warn_bounce_rate"`
	PauseBounceRate float64 `yaml:"pause_bounce_rate"`
	// WarnComplaintRate and PauseComplaintRate: complaints ÷ delivered.
	WarnComplaintRate  float64 `yaml:"warn_complaint_rate"`
	PauseComplaintRate float64 `yaml:"pause_complaint_rate"`
	// MinFinalAttempts and MinDelivered are the volumes below which the
	// bounce and the complaint rate are not judged.
	MinFinalAttempts int64 `yaml:"min_final_attempts"`
	MinDelivered     int64 `yaml:"min_delivered"`
	// PauseScope is tenant (all its mail) or marketing (its marketing
	// lists only).
	PauseScope string `yaml:"pause_scope"`
	// AutoResumeAfter resumes a tenant the guard paused after this long;
	// 0 (the default) leaves it to the operator.
	AutoResumeAfter time.Duration `yaml:"auto_resume_after"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
	// RedactAddresses replaces recipient addresses in logs by a short hash.
	RedactAddresses bool `yaml:"redact_addresses"`
}

// Default returns the configuration a file starts from: every key the file
// leaves out keeps the value set here. ReturnPathDomain,
// Unsubscribe.MailtoDomain and HTTP.Public.BaseURL are empty because they
// derive from Hostname once the file is read (bounces.HOSTNAME,
// unsubscribe.HOSTNAME and https://unsubscribe.HOSTNAME); Load does that. The listeners are on loopback so that a fresh install exposes
// nothing.
func Default() *Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return &Config{
		Hostname: host,
		DataDir:  "./heed-data",
		Node:     host,
		SMTP: SMTP{
			// Postfix's smtpd_client_connection_count_limit is 50; mail
			// servers sending Heed bounces need few at once.
			Submission:      Submission{Listen: "127.0.0.1:2525", MaxConnectionsPerClient: 50},
			Inbound:         defaultInbound(),
			MaxMessageBytes: 25 << 20,
			MaxRecipients:   1000,
			MaxConnections:  1000,
			// RFC 5321 section 4.5.3.1.6 sets 1000 octets for text lines;
			// twice that tolerates the real world's long header lines.
			MaxLineLength:   2000,
			ReadTimeout:     5 * time.Minute,
			WriteTimeout:    5 * time.Minute,
			MaxAuthFailures: 5,
			// A client sends EHLO as soon as it has the greeting and AUTH
			// right after; seconds are plenty for either.
			FirstCommandTimeout:        30 * time.Second,
			ReadTimeoutBeforeAuth:      time.Minute,
			MaxAuthFailuresPerClient:   5,
			MaxAuthFailuresPerUsername: 20,
			AuthFailureWindow:          15 * time.Minute,
			MaxSessionBeforeAuth:       2 * time.Minute, // STARTTLS and AUTH take seconds
			MaxCommandsBeforeAuth:      20,              // STARTTLS and AUTH LOGIN take 6 lines
		},
		HTTP: HTTP{
			Public: PublicHTTP{Listen: "127.0.0.1:8080", MaxConnections: 4096, MaxConnectionsPerClient: 256},
			Admin: AdminHTTP{
				Listen: "127.0.0.1:8081", ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute,
				IdleTimeout: 2 * time.Minute, MaxConnections: 512, MaxConnectionsPerClient: 64,
			},
		},
		Delivery: Delivery{
			Mode:              ModeMX,
			Routes:            map[string]string{},
			MaxQueueLifetime:  120 * time.Hour,
			Workers:           0,
			DomainConcurrency: 20,
			ConnectTimeout:    30 * time.Second,
			SourceAddresses:   []string{},
		},
		Webhooks:  Webhooks{Concurrency: 20, Timeout: 10 * time.Second},
		Retention: Retention{Events: 30 * 24 * time.Hour},
		Log:       Log{Level: "info", Format: "text"},
		Bounces:   Bounces{SoftLimit: 3, SoftSpan: 72 * time.Hour, SoftWindow: 30 * 24 * time.Hour},
		Readiness: Readiness{Timeout: 5 * time.Second},
		Reputation: Reputation{WarnBounceRate: 0.05, PauseBounceRate: 0.10, WarnComplaintRate: 0.001, PauseComplaintRate: 0.003,
			MinFinalAttempts: 100, MinDelivered: 1000, PauseScope: "tenant"},
		Storage: Storage{Driver: DriverBbolt, Postgres: Postgres{MaxConns: 20, DeliveryLease: time.Minute}},
		Console: Console{
			AllowNetworks:           []string{},
			MaxLoginAttemptsPerUser: 5, MaxLoginAttemptsPerClient: 20, LoginAttemptWindow: 15 * time.Minute,
		},
	}
}

// defaultInbound is the inbound listener's part of Default.
func defaultInbound() Inbound {
	return Inbound{
		Listen:                  "127.0.0.1:2526",
		MaxConnectionsPerClient: 10,
		// Ten a second: far above a mail system's bounces and
		// complaints, far below a flood.
		MaxMessagesPerClientPerMinute: 600,
		UnreadReportsMaxFiles:         1000,
		UnreadReportsMaxBytes:         100 << 20,
		UnreadReportKeepBytes:         256 << 10,
		UnreadReportsRetention:        30 * 24 * time.Hour,
	}
}

// Embedded returns the configuration `heed serve` runs on without a config
// file: the defaults, a demo tenant, and capture delivery so that nothing
// leaves the machine. Admin.Tokens is empty: the caller generates a token
// and prints it (or takes HEED_ADMIN_TOKEN, see ApplyEnv).
func Embedded() *Config {
	c := Default()
	c.Demo = true
	c.Hostname = "localhost"
	c.Delivery.Mode = ModeCapture
	// Nothing leaves the machine: the links in captured mail point at the
	// local public listener, so a newcomer can click them.
	c.HTTP.Public.BaseURL = "http://127.0.0.1:8080"
	c.fillDerived()
	return c
}

// fillDerived sets the values that default to something computed from
// other keys.
func (c *Config) fillDerived() {
	if c.ReturnPathDomain == "" {
		c.ReturnPathDomain = "bounces." + c.Hostname
	}
	if c.Unsubscribe.MailtoDomain == "" {
		c.Unsubscribe.MailtoDomain = "unsubscribe." + c.Hostname
	}
	if c.HTTP.Public.BaseURL == "" {
		c.HTTP.Public.BaseURL = "https://unsubscribe." + c.Hostname
	}
}

// redacted is the text that replaces secrets in Redacted.
const redacted = "REDACTED"

// Redacted returns a deep copy of c with the secrets (admin tokens, the
// smarthost password) replaced by "REDACTED", fit to print or log. An empty
// secret stays empty, so the operator still sees that it is unset.
func (c *Config) Redacted() *Config {
	r := *c
	r.Admin.Tokens = slices.Clone(c.Admin.Tokens)
	for i := range r.Admin.Tokens {
		r.Admin.Tokens[i] = redacted
	}
	if r.Delivery.SmarthostPassword != "" {
		r.Delivery.SmarthostPassword = redacted
	}
	r.Delivery.Routes = maps.Clone(c.Delivery.Routes)
	r.Delivery.SourceAddresses = slices.Clone(c.Delivery.SourceAddresses)
	return &r
}
