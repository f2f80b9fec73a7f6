package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// token is a valid operator token for tests that are not about tokens.
const token = "0123456789abcdefABCDEF"

// env returns a getenv holding the given name/value pairs, so tests never
// touch the process environment.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// doc joins lines into a YAML document, so a case shows its line numbers
// one per Go line.
func doc(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// inDir replaces {dir} with a test's temporary directory, for cases that
// name files.
func inDir(s, dir string) string { return strings.ReplaceAll(s, "{dir}", dir) }

// errorCases are configurations an operator gets wrong, with the lines
// `heed check-config` shows them, in order.
var errorCases = []struct {
	name string
	yaml string
	env  func(string) string
	want []string
}{{
	name: "unknown key with its line",
	yaml: doc("hostname: relay.example.com", "smtp:", "  submision:", "    listen: 127.0.0.1:25"),
	env:  env(EnvAdminToken, token),
	want: []string{"heed.yaml:3: smtp.submision: unknown key"},
}, {
	name: "admin listener limits",
	yaml: doc("hostname: relay.example.com", "admin: { tokens: ["+token+"] }", "http:", "  admin: { read_timeout: 10ms, max_connections_per_client: 0 }"),
	want: []string{
		"heed.yaml:4: http.admin.read_timeout: must be at least 1s (got 10ms)",
		"heed.yaml:4: http.admin.max_connections_per_client: must be at least 1 (got 0)",
	},
}, {
	name: "node name",
	yaml: doc("hostname: relay.example.com", "node: \"heed 1\"", "admin: { tokens: ["+token+"] }"),
	want: []string{`heed.yaml:2: node: must be 1 to 253 letters, digits, dots, hyphens or underscores, such as heed-1 (got "heed 1")`},
}, {
	name: "bad mode with its line",
	yaml: doc("hostname: relay.example.com", "admin:", "  tokens: ["+token+"]", "delivery:", "  mode: foo"),
	want: []string{`heed.yaml:5: delivery.mode: must be one of mx, smarthost, capture (got "foo")`},
}, {
	name: "every error at once, in file order",
	yaml: doc(
		"hostname: relay.example.com",
		"smtp:",
		"  max_message_bytes: 10",
		"  read_timeout: soon",
		"  max_line_length: 100",
		"  colour: blue",
		"delivery:",
		"  mode: foo",
		"  routes: { Example.test: 'mx.example.test', a_b.test: 'h:25' }",
		"log: { level: loud, format: xml }",
	),
	want: []string{
		"heed.yaml:3: smtp.max_message_bytes: must be at least 1024 (got 10)",
		`heed.yaml:4: smtp.read_timeout: must be a duration such as 30s, 5m or 120h (got "soon")`,
		"heed.yaml:5: smtp.max_line_length: must be at least 512 (got 100)",
		"heed.yaml:6: smtp.colour: unknown key",
		`heed.yaml:8: delivery.mode: must be one of mx, smarthost, capture (got "foo")`,
		`heed.yaml:9: delivery.routes["Example.test"]: must be host:port such as mx.example.com:25 (got "mx.example.test": missing port in address)`,
		`heed.yaml:9: delivery.routes["a_b.test"]: must be a domain name such as relay.example.com (got "a_b.test": '_' is not a letter, digit or hyphen)`,
		`heed.yaml:10: log.level: must be one of debug, info, warn, error (got "loud")`,
		`heed.yaml:10: log.format: must be one of text, json (got "xml")`,
		"heed.yaml: admin.tokens: at least one operator token is required: set admin.tokens or HEED_ADMIN_TOKEN",
	},
}, {
	name: "durations below their floor",
	yaml: doc("hostname: relay.example.com", "smtp: { write_timeout: 10ms }", "delivery: { max_queue_lifetime: 30s, connect_timeout: 0s }"),
	env:  env(EnvAdminToken, token),
	want: []string{
		"heed.yaml:2: smtp.write_timeout: must be at least 1s (got 10ms)",
		"heed.yaml:3: delivery.max_queue_lifetime: must be at least 1m0s (got 30s)",
		"heed.yaml:3: delivery.connect_timeout: must be at least 1s (got 0s)",
	},
}, {
	name: "a number where a duration belongs",
	yaml: doc("hostname: relay.example.com", "delivery:", "  max_queue_lifetime: 120"),
	env:  env(EnvAdminToken, token),
	want: []string{`heed.yaml:3: delivery.max_queue_lifetime: must be a duration such as 30s, 5m or 120h (got "120")`},
}, {
	name: "smarthost mode without smarthost points at the mode",
	yaml: doc("hostname: relay.example.com", "delivery:", "  workers: 4", "  mode: smarthost"),
	env:  env(EnvAdminToken, token),
	want: []string{"heed.yaml:4: delivery.smarthost: required in smarthost mode (host:port)"},
}, {
	name: "listen addresses and base URL",
	yaml: doc(
		"hostname: relay.example.com",
		"smtp: { submission: { listen: '127.0.0.1', implicit_tls_listen: ':smtps' } }",
		"http:",
		"  public: { listen: ':8080', base_url: 'https://u.example.com/?x=1' }",
		"  admin: { listen: 'localhost:99999' }",
	),
	env: env(EnvAdminToken, token),
	want: []string{
		`heed.yaml:2: smtp.submission.listen: must be host:port such as 127.0.0.1:2525 (got "127.0.0.1": missing port in address)`,
		`heed.yaml:2: smtp.submission.implicit_tls_listen: must be host:port such as 127.0.0.1:2525 (got ":smtps": port must be a number from 0 to 65535)`,
		`heed.yaml:4: http.public.base_url: must not have a query or fragment: unsubscribe paths are appended to it (got "https://u.example.com/?x=1")`,
		`heed.yaml:5: http.admin.listen: must be host:port such as 127.0.0.1:2525 (got "localhost:99999": port must be a number from 0 to 65535)`,
	},
}, {
	name: "base URL must be absolute http(s)",
	yaml: doc("hostname: relay.example.com", "http: { public: { base_url: 'unsubscribe.example.com' } }"),
	env:  env(EnvAdminToken, token),
	want: []string{`heed.yaml:2: http.public.base_url: must be an absolute http or https URL such as https://unsubscribe.example.com (got "unsubscribe.example.com")`},
}, {
	name: "TLS key without certificate, certificate missing",
	yaml: doc("hostname: relay.example.com", "smtp:", "  submission:", "    tls_key: {dir}/missing.pem"),
	env:  env(EnvAdminToken, token),
	want: []string{
		"heed.yaml:3: smtp.submission.tls_cert: must be set with tls_key (or leave both empty for a self-signed certificate)",
		`heed.yaml:4: smtp.submission.tls_key: cannot use "{dir}/missing.pem": no such file or directory`,
	},
}, {
	name: "tokens: too short in the file and in the environment, never quoted",
	yaml: doc("hostname: relay.example.com", "admin:", "  tokens:", "    - "+token, "    - short", "    - 'has spaces in it, sadly'"),
	env:  env(EnvAdminToken, "tiny"),
	want: []string{
		"heed.yaml:5: admin.tokens[1]: each token must be at least 16 characters (got 5)",
		"heed.yaml:6: admin.tokens[2]: tokens may only hold letters, digits and -._~+/= (RFC 6750 bearer token syntax)",
		"HEED_ADMIN_TOKEN: each token must be at least 16 characters (got 4)",
	},
}, {
	name: "domain names",
	yaml: doc("hostname: -relay.example.com", "return_path_domain: bounces..example.com", "unsubscribe: { mailto_domain: 'u.example.com.' }"),
	env:  env(EnvAdminToken, token),
	want: []string{
		`heed.yaml:1: hostname: must be a domain name such as relay.example.com (got "-relay.example.com": label starts or ends with a hyphen)`,
		`heed.yaml:2: return_path_domain: must be a domain name such as relay.example.com (got "bounces..example.com": empty label)`,
		`heed.yaml:3: unsubscribe.mailto_domain: must be a domain name such as relay.example.com (got "u.example.com.": empty label)`,
	},
}, {
	name: "route domains differing only in case",
	yaml: doc("hostname: relay.example.com", "delivery:", "  routes:", "    example.test: 127.0.0.1:2600", "    EXAMPLE.test: 127.0.0.1:2601"),
	env:  env(EnvAdminToken, token),
	want: []string{`heed.yaml:4: delivery.routes["example.test"]: same domain as "EXAMPLE.test" (domains are case-insensitive)`},
}, {
	name: "counts below one",
	yaml: doc("hostname: relay.example.com", "smtp: { max_recipients: 0, max_connections: 0, max_auth_failures: 0 }", "delivery: { workers: -1, domain_concurrency: 0 }"),
	env:  env(EnvAdminToken, token),
	want: []string{
		"heed.yaml:2: smtp.max_recipients: must be at least 1 (got 0)",
		"heed.yaml:2: smtp.max_connections: must be at least 1 (got 0)",
		"heed.yaml:2: smtp.max_auth_failures: must be at least 1 (got 0)",
		"heed.yaml:3: delivery.workers: must be at least 0 (got -1)",
		"heed.yaml:3: delivery.domain_concurrency: must be at least 1 (got 0)",
	},
}, {
	name: "inbound bounds",
	yaml: doc("hostname: relay.example.com", "smtp:", "  inbound:",
		"    max_messages_per_client_per_minute: 0",
		"    unread_reports_max_files: 0",
		"    unread_report_keep_bytes: 100",
		"    unread_reports_retention: 10m",
		"    unread_reports_max_bytes: 50"),
	env: env(EnvAdminToken, token),
	want: []string{
		"heed.yaml:4: smtp.inbound.max_messages_per_client_per_minute: must be at least 1 (got 0)",
		"heed.yaml:5: smtp.inbound.unread_reports_max_files: must be at least 1 (got 0)",
		"heed.yaml:6: smtp.inbound.unread_report_keep_bytes: must be at least 4096 (got 100)",
		"heed.yaml:7: smtp.inbound.unread_reports_retention: must be at least 1h0m0s (got 10m0s)",
		"heed.yaml:8: smtp.inbound.unread_reports_max_bytes: must be at least smtp.inbound.unread_report_keep_bytes (100), or no report fits (got 50)",
	},
}, {
	name: "connection and AUTH limits",
	yaml: doc("hostname: relay.example.com", "smtp:",
		"  submission: { max_connections_per_client: 0 }",
		"  inbound: { max_connections_per_client: 0 }",
		"  read_timeout: 1m",
		"  first_command_timeout: 2m",
		"  read_timeout_before_auth: 0s",
		"  max_auth_failures_per_client: 0",
		"  max_auth_failures_per_username: 0",
		"  auth_failure_window: 30s",
		"  max_session_before_auth: 0s",
		"  max_commands_before_auth: 5"),
	env: env(EnvAdminToken, token),
	want: []string{
		"heed.yaml:3: smtp.submission.max_connections_per_client: must be at least 1 (got 0)",
		"heed.yaml:4: smtp.inbound.max_connections_per_client: must be at least 1 (got 0)",
		"heed.yaml:6: smtp.first_command_timeout: must not be longer than smtp.read_timeout (1m0s; got 2m0s)",
		"heed.yaml:7: smtp.read_timeout_before_auth: must be at least 1s (got 0s)",
		"heed.yaml:8: smtp.max_auth_failures_per_client: must be at least 1 (got 0)",
		"heed.yaml:9: smtp.max_auth_failures_per_username: must be at least 1 (got 0)",
		"heed.yaml:10: smtp.auth_failure_window: must be at least 1m0s (got 30s)",
		"heed.yaml:11: smtp.max_session_before_auth: must be at least 1s (got 0s)",
		"heed.yaml:12: smtp.max_commands_before_auth: must be at least 10 (got 5)",
	},
}, {
	name: "soft bounce rule",
	yaml: doc("hostname: relay.example.com", "bounces:", "  soft_limit: 1", "  soft_span: -1h", "  soft_window: 12h"),
	env:  env(EnvAdminToken, token),
	want: []string{
		"heed.yaml:3: bounces.soft_limit: must be 0 (off) or from 2 to 20 (got 1)",
		"heed.yaml:4: bounces.soft_span: must be at least 0s (got -1h0m0s)",
		"heed.yaml:5: bounces.soft_window: must be at least 24h0m0s (got 12h0m0s)",
	},
}, {
	name: "reputation thresholds",
	yaml: doc("hostname: relay.example.com", "reputation:", "  warn_bounce_rate: 5", "  pause_complaint_rate: 0.0005",
		"  min_delivered: 0", "  pause_scope: lists"),
	env: env(EnvAdminToken, token),
	want: []string{
		"heed.yaml:3: reputation.warn_bounce_rate: must be a fraction above 0 and below 1 (0.05 is 5%), got 5",
		"heed.yaml:4: reputation.pause_complaint_rate: must be 0 (no pause) or above warn_complaint_rate and at most 1, got 0.0005",
		"heed.yaml:5: reputation.min_delivered: must be at least 1 (got 0)",
		`heed.yaml:6: reputation.pause_scope: must be one of tenant, marketing (got "lists")`,
	},
}, {
	name: "soft bounce window shorter than the span",
	yaml: doc("hostname: relay.example.com", "bounces: { soft_limit: 21, soft_span: 200h, soft_window: 100h }"),
	env:  env(EnvAdminToken, token),
	want: []string{
		"heed.yaml:2: bounces.soft_limit: must be 0 (off) or from 2 to 20 (got 21)",
		"heed.yaml:2: bounces.soft_window: must be at least 200h0m0s (got 100h0m0s)",
	},
}, {
	name: "readiness",
	yaml: doc("hostname: relay.example.com", "delivery: { source_addresses: [203.0.113.25, \"fe80::1%eth0\", 203.0.113.25] }",
		"readiness:", "  dns_server: resolver.example:53", "  timeout: 1m"),
	env: env(EnvAdminToken, token),
	want: []string{
		`heed.yaml:2: delivery.source_addresses[1]: must be an IP address such as 203.0.113.25 or 2001:db8::25 (got "fe80::1%eth0")`,
		"heed.yaml:2: delivery.source_addresses[2]: 203.0.113.25 is listed twice",
		`heed.yaml:4: readiness.dns_server: must be ip:port such as 127.0.0.1:53 (got "resolver.example:53": the host must be an IP address and the port not 0)`,
		"heed.yaml:5: readiness.timeout: must be at most 30s (got 1m0s)",
	},
}, {
	name: "storage",
	yaml: doc("hostname: relay.example.com", "storage:", "  driver: postgres",
		"  postgres: { max_conns: 1, delivery_lease: 1s }"),
	env: env(EnvAdminToken, token),
	want: []string{
		"heed.yaml:4: storage.postgres.dsn: is required when storage.driver is postgres: set it or HEED_POSTGRES_DSN",
		"heed.yaml:4: storage.postgres.max_conns: must be at least 2 (got 1)",
		"heed.yaml:4: storage.postgres.delivery_lease: must be at least 3s (got 1s)",
	},
}, {
	name: "storage driver",
	yaml: doc("hostname: relay.example.com", "storage: { driver: sqlite }"),
	env:  env(EnvAdminToken, token),
	want: []string{`heed.yaml:2: storage.driver: must be bbolt or postgres (got "sqlite")`},
}, {
	name: "console",
	yaml: doc("hostname: relay.example.com", "console:", "  allow_networks: [192.0.2.0/24, 192.0.2.1/24, office]",
		"  max_login_attempts_per_user: 0", "  login_attempt_window: 1s"),
	env: env(EnvAdminToken, token),
	want: []string{
		`heed.yaml:3: console.allow_networks[1]: must be a network such as 192.0.2.0/24 or 2001:db8::/32, with no host bits set (got "192.0.2.1/24")`,
		`heed.yaml:3: console.allow_networks[2]: must be a network such as 192.0.2.0/24 or 2001:db8::/32, with no host bits set (got "office")`,
		"heed.yaml:4: console.max_login_attempts_per_user: must be at least 1 (got 0)",
		"heed.yaml:5: console.login_attempt_window: must be at least 1m0s (got 1s)",
	},
}, {
	name: "syntax error keeps the parser's message and line",
	yaml: doc("hostname: relay.example.com", "smtp:", "  max_recipients 5", "  max_connections: 5"),
	want: []string{"heed.yaml:4: mapping values are not allowed in this context"},
}, {
	name: "a repeated key stops there",
	yaml: doc("hostname: a.example.com", "data_dir: /tmp", "hostname: b.example.com"),
	want: []string{"heed.yaml:3: hostname: already set at line 1"},
}, {
	name: "a wrong type for a section",
	yaml: doc("hostname: relay.example.com", "smtp: 25"),
	env:  env(EnvAdminToken, token),
	want: []string{`heed.yaml:2: smtp: must be a mapping of keys (got "25")`},
}, {
	name: "one document per file",
	yaml: doc("hostname: relay.example.com", "---", "hostname: other.example.com"),
	env:  env(EnvAdminToken, token),
	want: []string{"heed.yaml:2: a config file holds one YAML document; remove the second"},
}}

func TestParseErrors(t *testing.T) {
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			getenv := tt.env
			if getenv == nil {
				getenv = env()
			}
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				want[i] = inDir(w, dir)
			}
			c, err := parse("heed.yaml", []byte(inDir(tt.yaml, dir)), getenv)
			if err == nil {
				t.Fatalf("parse succeeded, want errors:\n%s", strings.Join(want, "\n"))
			}
			if c != nil {
				t.Errorf("parse returned a config with its error")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors: %v", err, err)
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
				t.Errorf("operator sees:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
			}
		})
	}
}

// validCases are configurations that load, with what must be read from
// them. {dir} holds cert.pem and key.pem.
var validCases = []struct {
	name  string
	yaml  string
	env   func(string) string
	check func(t *testing.T, c *Config)
}{{
	name: "durations",
	yaml: doc("hostname: relay.example.com", "admin: { tokens: ["+token+"] }", "smtp: { read_timeout: 90s, write_timeout: 2m }", "delivery: { max_queue_lifetime: 120h, connect_timeout: 1m30s }"),
	check: func(t *testing.T, c *Config) {
		got := []time.Duration{c.SMTP.ReadTimeout, c.SMTP.WriteTimeout, c.Delivery.MaxQueueLifetime, c.Delivery.ConnectTimeout}
		want := []time.Duration{90 * time.Second, 2 * time.Minute, 120 * time.Hour, 90 * time.Second}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("durations = %v, want %v", got, want)
		}
	},
}, {
	name: "environment secrets",
	yaml: doc("hostname: relay.example.com", "admin: { tokens: ["+token+"] }", "delivery: { mode: smarthost, smarthost: 'smtp.example.net:587', smarthost_username: heed, smarthost_password: from-file }"),
	env:  env(EnvAdminToken, " env-token-0123456789\n", EnvSmarthostPassword, "from-env", EnvPostgresDSN, "postgres://heed:pw@db/heed"),
	check: func(t *testing.T, c *Config) {
		if c.Storage.Postgres.DSN != "postgres://heed:pw@db/heed" {
			t.Errorf("postgres dsn = %q, want the environment's", c.Storage.Postgres.DSN)
		}
		if want := []string{token, "env-token-0123456789"}; !reflect.DeepEqual(c.Admin.Tokens, want) {
			t.Errorf("tokens = %q, want %q", c.Admin.Tokens, want)
		}
		if c.Delivery.SmarthostPassword != "from-env" {
			t.Errorf("smarthost password = %q, want the environment's", c.Delivery.SmarthostPassword)
		}
	},
}, {
	// The machine's own name is not enough to deliver (it would make the
	// opt-out links), so a minimal file names the relay.
	name: "only a hostname, and a token from the environment",
	yaml: "hostname: relay.example.com\n",
	env:  env(EnvAdminToken, token),
	check: func(t *testing.T, c *Config) {
		if c.Delivery.Mode != ModeMX || len(c.Admin.Tokens) != 1 {
			t.Errorf("mode %q, tokens %d: want defaults and one token", c.Delivery.Mode, len(c.Admin.Tokens))
		}
	},
}, {
	name: "defaults for missing keys, derived domains",
	yaml: doc("hostname: relay.example.com", "smtp:", "  max_recipients: 50", "# only that"),
	env:  env(EnvAdminToken, token),
	check: func(t *testing.T, c *Config) {
		want := Default()
		want.Hostname = "relay.example.com"
		want.SMTP.MaxRecipients = 50
		want.Admin.Tokens = []string{token}
		want.envTokens = 1
		want.ReturnPathDomain = "bounces.relay.example.com"
		want.Unsubscribe.MailtoDomain = "unsubscribe.relay.example.com"
		want.HTTP.Public.BaseURL = "https://unsubscribe.relay.example.com"
		if !reflect.DeepEqual(c, want) {
			t.Errorf("got  %+v\nwant %+v", c, want)
		}
	},
}, {
	name: "routes lower-cased, TLS files present, port 0 to listen",
	yaml: doc(
		"admin: { tokens: ["+token+"] }",
		"smtp: { submission: { listen: '127.0.0.1:0', implicit_tls_listen: ':465', tls_cert: '{dir}/cert.pem', tls_key: '{dir}/key.pem' } }",
		"delivery: { mode: capture, routes: { Example.TEST: '[::1]:2600' } }",
	),
	check: func(t *testing.T, c *Config) {
		if want := map[string]string{"example.test": "[::1]:2600"}; !reflect.DeepEqual(c.Delivery.Routes, want) {
			t.Errorf("routes = %v, want %v", c.Delivery.Routes, want)
		}
	},
}}

func TestParseValid(t *testing.T) {
	for _, tt := range validCases {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"cert.pem", "key.pem"} {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("pem"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			getenv := tt.env
			if getenv == nil {
				getenv = env()
			}
			c, err := parse("heed.yaml", []byte(inDir(tt.yaml, dir)), getenv)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			tt.check(t, c)
		})
	}
}

// contractExample is the config file of shared/design/contract.md, verbatim
// but for the token.
const contractExample = `hostname: relay.example.com        # EHLO name, Message-ID domain
data_dir: ./heed-data
smtp:
  submission: { listen: "127.0.0.1:2525", implicit_tls_listen: "", tls_cert: "", tls_key: "" }
  inbound:    { listen: "127.0.0.1:2526" }
  max_message_bytes: 26214400
  max_recipients: 1000
http:
  public: { listen: "127.0.0.1:8080", base_url: "https://unsubscribe.example.com" }
  admin:  { listen: "127.0.0.1:8081" }
admin:
  tokens: ["..."]                  # operator bearer tokens (or HEED_ADMIN_TOKEN)
delivery:
  mode: mx                         # mx | smarthost | capture
  smarthost: ""                    # host:port, for mode smarthost
  routes: { "example.test": "127.0.0.1:2600" }   # static next hop per recipient domain, any mode
  max_queue_lifetime: 120h
  workers: 0                       # 0 = automatic
return_path_domain: bounces.example.com   # VERP envelope sender domain, handled by smtpd.inbound
unsubscribe:
  mailto_domain: unsubscribe.example.com  # mailto: address domain, handled by smtpd.inbound
webhooks:
  allow_private_targets: false     # tests set true to reach 127.0.0.1
`

func TestContractExample(t *testing.T) {
	data := strings.Replace(contractExample, `"..."`, `"`+token+`"`, 1)
	c, err := parse("heed.yaml", []byte(data), env())
	if err != nil {
		t.Fatalf("the contract's example does not load:\n%v", err)
	}
	if c.Hostname != "relay.example.com" || c.ReturnPathDomain != "bounces.example.com" ||
		c.Unsubscribe.MailtoDomain != "unsubscribe.example.com" || c.Delivery.Routes["example.test"] != "127.0.0.1:2600" ||
		c.HTTP.Public.BaseURL != "https://unsubscribe.example.com" || c.Delivery.MaxQueueLifetime != 120*time.Hour {
		t.Errorf("example read as %+v", c)
	}
	if c.Demo {
		t.Error("a config file must not turn on the demo")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "heed.yaml")
	if err := os.WriteFile(path, []byte("delivery:\n  mode: foo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+`:2: delivery.mode: must be one of`) {
		t.Errorf("Load error = %v, want it located at %s:2", err, path)
	}
	if _, err := Load(filepath.Join(dir, "none.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want ErrNotExist", err)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	checks := []struct {
		key       string
		got, want any
	}{
		{"data_dir", c.DataDir, "./heed-data"},
		{"node", c.Node, c.Hostname}, // the machine's host name
		{"smtp.submission.listen", c.SMTP.Submission.Listen, "127.0.0.1:2525"},
		{"smtp.inbound.listen", c.SMTP.Inbound.Listen, "127.0.0.1:2526"},
		{"smtp.inbound.max_messages_per_client_per_minute", c.SMTP.Inbound.MaxMessagesPerClientPerMinute, 600},
		{"smtp.inbound.unread_reports_max_files", c.SMTP.Inbound.UnreadReportsMaxFiles, 1000},
		{"smtp.inbound.unread_reports_max_bytes", c.SMTP.Inbound.UnreadReportsMaxBytes, int64(104857600)},
		{"smtp.inbound.unread_report_keep_bytes", c.SMTP.Inbound.UnreadReportKeepBytes, int64(262144)},
		{"smtp.inbound.unread_reports_retention", c.SMTP.Inbound.UnreadReportsRetention, 720 * time.Hour},
		{"smtp.max_message_bytes", c.SMTP.MaxMessageBytes, int64(26214400)},
		{"smtp.max_line_length", c.SMTP.MaxLineLength, 2000},
		{"smtp.read_timeout", c.SMTP.ReadTimeout, 5 * time.Minute},
		{"smtp.submission.max_connections_per_client", c.SMTP.Submission.MaxConnectionsPerClient, 50},
		{"smtp.inbound.max_connections_per_client", c.SMTP.Inbound.MaxConnectionsPerClient, 10},
		{"smtp.first_command_timeout", c.SMTP.FirstCommandTimeout, 30 * time.Second},
		{"smtp.read_timeout_before_auth", c.SMTP.ReadTimeoutBeforeAuth, time.Minute},
		{"smtp.max_session_before_auth", c.SMTP.MaxSessionBeforeAuth, 2 * time.Minute},
		{"smtp.max_commands_before_auth", c.SMTP.MaxCommandsBeforeAuth, 20},
		{"smtp.max_auth_failures_per_client", c.SMTP.MaxAuthFailuresPerClient, 5},
		{"smtp.max_auth_failures_per_username", c.SMTP.MaxAuthFailuresPerUsername, 20},
		{"smtp.auth_failure_window", c.SMTP.AuthFailureWindow, 15 * time.Minute},
		{"http.public.base_url", c.HTTP.Public.BaseURL, ""}, // derived from hostname
		{"storage.driver", c.Storage.Driver, DriverBbolt},
		{"storage.postgres.dsn", c.Storage.Postgres.DSN, ""},
		{"storage.postgres.max_conns", c.Storage.Postgres.MaxConns, 20},
		{"storage.postgres.delivery_lease", c.Storage.Postgres.DeliveryLease, time.Minute},
		{"http.public.max_connections", c.HTTP.Public.MaxConnections, 4096},
		{"http.public.max_connections_per_client", c.HTTP.Public.MaxConnectionsPerClient, 256},
		{"http.admin.listen", c.HTTP.Admin.Listen, "127.0.0.1:8081"},
		{"http.admin.read_timeout", c.HTTP.Admin.ReadTimeout, 30 * time.Second},
		{"http.admin.write_timeout", c.HTTP.Admin.WriteTimeout, time.Minute},
		{"http.admin.idle_timeout", c.HTTP.Admin.IdleTimeout, 2 * time.Minute},
		{"http.admin.max_connections", c.HTTP.Admin.MaxConnections, 512},
		{"http.admin.max_connections_per_client", c.HTTP.Admin.MaxConnectionsPerClient, 64},
		{"delivery.mode", c.Delivery.Mode, ModeMX},
		{"delivery.max_queue_lifetime", c.Delivery.MaxQueueLifetime, 120 * time.Hour},
		{"delivery.domain_concurrency", c.Delivery.DomainConcurrency, 20},
		{"delivery.connect_timeout", c.Delivery.ConnectTimeout, 30 * time.Second},
		{"return_path_domain", c.ReturnPathDomain, ""},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"bounces.soft_limit", c.Bounces.SoftLimit, 3},
		{"bounces.soft_span", c.Bounces.SoftSpan, 72 * time.Hour},
		{"bounces.soft_window", c.Bounces.SoftWindow, 720 * time.Hour},
		{"delivery.source_addresses", len(c.Delivery.SourceAddresses), 0},
		{"readiness.dns_server", c.Readiness.DNSServer, ""},
		{"readiness.timeout", c.Readiness.Timeout, 5 * time.Second},
		{"reputation.warn_bounce_rate", c.Reputation.WarnBounceRate, 0.05},
		{"reputation.pause_bounce_rate", c.Reputation.PauseBounceRate, 0.10},
		{"reputation.warn_complaint_rate", c.Reputation.WarnComplaintRate, 0.001},
		{"reputation.pause_complaint_rate", c.Reputation.PauseComplaintRate, 0.003},
		{"reputation.min_final_attempts", c.Reputation.MinFinalAttempts, int64(100)},
		{"reputation.min_delivered", c.Reputation.MinDelivered, int64(1000)},
		{"reputation.pause_scope", c.Reputation.PauseScope, "tenant"},
		{"reputation.auto_resume_after", c.Reputation.AutoResumeAfter, time.Duration(0)},
		{"console.allow_networks", len(c.Console.AllowNetworks), 0},
		{"console.max_login_attempts_per_user", c.Console.MaxLoginAttemptsPerUser, 5},
		{"console.max_login_attempts_per_client", c.Console.MaxLoginAttemptsPerClient, 20},
		{"console.login_attempt_window", c.Console.LoginAttemptWindow, 15 * time.Minute},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.key, ch.got, ch.want)
		}
	}
	if c.Hostname == "" || c.Delivery.Routes == nil {
		t.Errorf("hostname %q, routes %v: want a name and an empty map", c.Hostname, c.Delivery.Routes)
	}
}

func TestEmbedded(t *testing.T) {
	c := Embedded()
	if err := c.Validate(); err != nil {
		t.Fatalf("Embedded() does not validate:\n%v", err)
	}
	if !c.Demo || c.Delivery.Mode != ModeCapture || c.ReturnPathDomain != "bounces.localhost" ||
		c.Unsubscribe.MailtoDomain != "unsubscribe.localhost" {
		t.Errorf("Embedded() = %+v", c)
	}
	c.ApplyEnv(env(EnvAdminToken, "short"))
	if err := c.Validate(); err == nil || err.Error() != "HEED_ADMIN_TOKEN: each token must be at least 16 characters (got 5)" {
		t.Errorf("Validate with a short environment token = %v", err)
	}
}

func TestRedacted(t *testing.T) {
	c := Embedded()
	c.Admin.Tokens = []string{token, token + "2"}
	c.Delivery.SmarthostPassword = "hunter2"
	c.Delivery.Routes["example.test"] = "127.0.0.1:2600"
	r := c.Redacted()
	if !reflect.DeepEqual(r.Admin.Tokens, []string{"REDACTED", "REDACTED"}) || r.Delivery.SmarthostPassword != "REDACTED" {
		t.Errorf("redacted secrets: tokens %q, password %q", r.Admin.Tokens, r.Delivery.SmarthostPassword)
	}
	if c.Admin.Tokens[0] != token || c.Delivery.SmarthostPassword != "hunter2" {
		t.Error("Redacted changed the original")
	}
	r.Delivery.Routes["other.test"] = "x:1"
	if _, ok := c.Delivery.Routes["other.test"]; ok {
		t.Error("Redacted shares the routes map with the original")
	}
	if Default().Redacted().Delivery.SmarthostPassword != "" {
		t.Error("an unset password must stay visibly unset")
	}
}

// TestPrintRoundTrip checks that what check-config prints (the YAML of a
// Config) loads back to the same Config.
func TestPrintRoundTrip(t *testing.T) {
	data := strings.Replace(contractExample, `"..."`, `"`+token+`"`, 1)
	c, err := parse("heed.yaml", []byte(data), env())
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := parse("printed.yaml", out, env())
	if err != nil {
		t.Fatalf("printed config does not load:\n%v\n%s", err, out)
	}
	if !reflect.DeepEqual(again, c) {
		t.Errorf("printed config loads as\n%+v\nwant\n%+v", again, c)
	}
}

// TestBaseURLMustBePublicHTTPS: mail that leaves the machine carries the
// unsubscribe URL to its readers, so it must be public https; capture
// mode may keep a local one.
func TestBaseURLMustBePublicHTTPS(t *testing.T) {
	for _, tc := range []struct {
		mode, url string
		ok        bool
	}{
		{"mx", "https://unsubscribe.example.com", true},
		{"mx", "http://unsubscribe.example.com", false},
		{"smarthost", "https://127.0.0.1:8080", false},
		{"mx", "https://localhost", false},
		{"mx", "https://10.0.0.5", false},
		{"capture", "http://127.0.0.1:8080", true},
		{"mx", "", false}, // derived from the single-label hostname web01
		{"mx", "https://unsubscribe.ip-10-0-0-5.ec2.internal", false},
	} {
		c := Default()
		c.Hostname = "relay.example.com"
		if tc.url == "" {
			c.Hostname = "web01"
		}
		c.Admin.Tokens = []string{"0123456789abcdefABCDEF"}
		c.Delivery.Mode, c.HTTP.Public.BaseURL = tc.mode, tc.url
		if tc.mode == "smarthost" {
			c.Delivery.Smarthost = "smtp.example.net:587"
		}
		c.fillDerived()
		err := c.Validate()
		if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "http.public.base_url") ||
			tc.url == "" && err != nil && !strings.Contains(err.Error(), "derived from hostname") {
			t.Errorf("mode %s, base_url %s: %v, want ok=%v", tc.mode, tc.url, err, tc.ok)
		}
	}
}
