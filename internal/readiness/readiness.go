// Package readiness is the sender readiness report of a sending domain:
// what Gmail, Yahoo and the other large mailbox providers check of a bulk
// sender since February 2024, looked up in the DNS and over HTTPS before
// the first message goes out, each check `ok`, `warn` or `fail` with the
// record found, the record expected and the fix in one sentence.
//
// The checks and the rules they come from (docs/deliverability.md has
// them for users):
//
//   - DKIM (RFC 6376 section 3.6.2): every active key's TXT record is
//     published as Heed advises it; an RSA key is among them, since RSA is
//     what every verifier knows (RFC 8463 Ed25519 alone is not verified by
//     the large providers).
//   - SPF (RFC 7208): check_host() of the relay's sending addresses passes
//     for the domain and for the return-path domain, within the limits of
//     section 4.6.4 (10 DNS lookups, 2 void lookups). spf.go parses
//     records, spfeval.go evaluates them.
//   - DMARC (RFC 7489 section 6.6.3): a policy record exists, and DKIM d=
//     is aligned with the From: domain (section 3.1.1).
//   - MX of the return-path and mailto unsubscribe domains name the relay.
//   - Forward-confirmed reverse DNS of the sending addresses (RFC 8601
//     section 3; what Gmail's guidelines call valid PTR records).
//   - http.public.base_url answers over HTTPS with a valid certificate, and
//     Heed's one-click endpoint answers a POST without a redirect (RFC 8058
//     section 3.2).
//   - The tenant's postal address (CAN-SPAM, 15 U.S.C. 7704(a)(5)), and the
//     complaint rate once Heed measures it (Options.ComplaintRate).
//
// A report is Ready when no check fails; warnings do not hold mail. Every
// lookup runs within Options.Timeout for the whole report, and a lookup
// that fails is a warning that says so, never an error of the report: the
// report is advice, and a flaky resolver must not make it unreadable.
package readiness

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/tenant"
)

// Status is one check's verdict.
type Status string

// The verdicts. Fail means the large providers will reject or junk bulk
// mail; Warn means something to look at that does not by itself.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is one line of a report.
type Check struct {
	// Name says what was checked: dkim:<selector>, dkim_rsa, spf,
	// spf_return_path, dmarc, dmarc_alignment, mx_return_path,
	// mx_unsubscribe, reverse_dns:<address>, https, one_click,
	// postal_address, complaint_rate.
	Name     string `json:"name"`
	Status   Status `json:"status"`
	Found    string `json:"found"`
	Expected string `json:"expected"`
	Fix      string `json:"fix"`
}

// Report is a domain's readiness. Ready is false when any check fails;
// the warning event of issue 18 item 4 reads it.
type Report struct {
	Domain    string    `json:"domain"`
	Ready     bool      `json:"ready"`
	Summary   string    `json:"summary"`
	CheckedAt time.Time `json:"checked_at"`
	Checks    []Check   `json:"checks"`
}

// Failed returns the names of the failing checks.
func (r *Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c.Name)
		}
	}
	return out
}

// Subject is what a report is about: one sending domain of one tenant.
type Subject struct {
	Tenant tenant.Tenant
	Domain string
	// Keys are the domain's DKIM keys, every state; only active ones sign.
	Keys []tenant.DKIMKey
}

// Rate is a complaint rate over a window, as the reputation guard (issue
// 18 item 1) will measure it: complaints ÷ delivered.
type Rate struct {
	Complaints, Delivered int64
	Window                time.Duration
}

// Options configure a Checker.
type Options struct {
	// Resolver answers every DNS question of a report and resolves the
	// base URL's host; nil is NewResolver("").
	Resolver *net.Resolver
	// Hostname is the relay's name: its EHLO name and the name the MX
	// records of the return-path and mailto domains must point at.
	Hostname         string
	ReturnPathDomain string
	MailtoDomain     string
	// BaseURL is http.public.base_url.
	BaseURL string
	// SourceAddresses are the addresses mail leaves from; empty means the
	// A and AAAA records of Hostname, and the checks say so.
	SourceAddresses []netip.Addr
	// RootCAs verifies base_url's certificate (nil: the system's roots).
	RootCAs *x509.CertPool
	// Timeout bounds a whole report (default 5 seconds).
	Timeout time.Duration
	// MaxConcurrent bounds the reports run at once (default 4): each costs
	// dozens of DNS queries and a POST to the relay's own public listener,
	// and any tenant's API key can ask for one.
	MaxConcurrent int
	// ComplaintRate reads a tenant's complaint rate on a domain (the relay
	// gives package reputation's 7-day counts); nil makes the check warn
	// that the rate is not measured.
	ComplaintRate func(ctx context.Context, tenant, domain string) (Rate, error)
	Logger        *slog.Logger
	Now           func() time.Time
}

// Checker makes readiness reports.
type Checker struct {
	o    Options
	http *httpProbe
	sem  chan struct{}
}

// New returns a Checker.
func New(o Options) *Checker {
	if o.Resolver == nil {
		o.Resolver = NewResolver("")
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 4
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Checker{o: o, http: newHTTPProbe(o.Resolver, o.RootCAs), sem: make(chan struct{}, o.MaxConcurrent)}
}

// Report checks s. It waits for a free slot while ctx allows; every
// other failure is in the report's checks.
func (c *Checker) Report(ctx context.Context, s Subject) (*Report, error) {
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	r := &Report{Domain: s.Domain, CheckedAt: c.o.Now().UTC()}
	src := c.sources(ctx)
	// The groups ask different names and run side by side, so a slow one
	// does not eat the others' share of the timeout; their order in the
	// report is fixed.
	groups := []func() []Check{
		func() []Check { return c.dkimChecks(ctx, s) },
		func() []Check { return c.spfChecks(ctx, s.Domain, src) },
		func() []Check { return c.dmarcChecks(ctx, s.Domain) },
		func() []Check { return c.mxChecks(ctx) },
		func() []Check { return c.reverseDNSChecks(ctx, src) },
		func() []Check { return c.httpChecks(ctx) },
		func() []Check { return c.tenantChecks(ctx, s) },
	}
	out := make([][]Check, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() { out[i] = g() })
	}
	wg.Wait()
	for _, cs := range out {
		r.Checks = append(r.Checks, cs...)
	}
	r.summarise()
	return r, nil
}

// summarise sets Ready and Summary from the checks.
func (r *Report) summarise() {
	failed := r.Failed()
	warns := 0
	for _, c := range r.Checks {
		if c.Status == Warn {
			warns++
		}
	}
	r.Ready = len(failed) == 0
	switch {
	case !r.Ready:
		r.Summary = fmt.Sprintf("%s is not ready for bulk mail to Gmail and Yahoo: %d %s (%s)",
			r.Domain, len(failed), plural(len(failed), "check fails", "checks fail"), strings.Join(failed, ", "))
	case warns > 0:
		r.Summary = fmt.Sprintf("%s is ready for bulk mail to Gmail and Yahoo, with %d %s to look at",
			r.Domain, warns, plural(warns, "warning", "warnings"))
	default:
		r.Summary = r.Domain + " is ready for bulk mail to Gmail and Yahoo"
	}
	if warns > 0 && !r.Ready {
		r.Summary += fmt.Sprintf(", and %d %s", warns, plural(warns, "warning", "warnings"))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// sourceSet is the relay's sending addresses and where they came from.
type sourceSet struct {
	addrs []netip.Addr
	// derived says they are Hostname's A/AAAA records, not configured.
	derived bool
	// problem says why there are none.
	problem string
}

// sources returns the configured sending addresses or, without any,
// Hostname's.
func (c *Checker) sources(ctx context.Context) sourceSet {
	if len(c.o.SourceAddresses) > 0 {
		return sourceSet{addrs: c.o.SourceAddresses}
	}
	addrs, err := c.o.Resolver.LookupNetIP(ctx, "ip", fqdn(c.o.Hostname))
	s := sourceSet{derived: true}
	for _, a := range addrs {
		s.addrs = append(s.addrs, a.Unmap())
	}
	switch {
	case err != nil && !notFound(err):
		s.problem = "could not look up the addresses of hostname " + c.o.Hostname + ": " + lookupError(err)
	case len(s.addrs) == 0:
		s.problem = "delivery.source_addresses is empty and hostname " + c.o.Hostname + " has no A or AAAA record"
	}
	return s
}

// describe names the addresses for a check's text.
func (s sourceSet) describe(hostname string) string {
	list := make([]string, len(s.addrs))
	for i, a := range s.addrs {
		list[i] = a.String()
	}
	if s.derived {
		return strings.Join(list, ", ") + " (hostname " + hostname + "'s A/AAAA records; set delivery.source_addresses if mail leaves from others)"
	}
	return strings.Join(list, ", ") + " (delivery.source_addresses)"
}

// tenantChecks are the checks of the tenant's own settings.
func (c *Checker) tenantChecks(ctx context.Context, s Subject) []Check {
	postal := Check{Name: "postal_address", Status: OK, Found: oneLine(s.Tenant.PostalAddress),
		Expected: "the business's valid physical postal address, shown in every marketing message"}
	if strings.TrimSpace(s.Tenant.PostalAddress) == "" {
		postal.Status, postal.Found = Fail, "none"
		postal.Fix = "Set postal_address with PATCH /api/v1/tenants/" + s.Tenant.ID + ": CAN-SPAM requires it in commercial mail."
	}
	return []Check{postal, c.complaintCheck(ctx, s)}
}

// Gmail's lines: keep the complaint rate under 0.1%, never reach 0.3%.
const (
	complaintWarn = 0.001
	complaintFail = 0.003
)

func (c *Checker) complaintCheck(ctx context.Context, s Subject) Check {
	ch := Check{Name: "complaint_rate", Expected: "under 0.1%, never 0.3% or more (Gmail's bulk sender lines)"}
	if c.o.ComplaintRate == nil {
		ch.Status, ch.Found = Warn, "not measured yet: Heed does not record complaint rates yet (issue 18 item 1)"
		ch.Fix = "Watch the recipient.complained events and Google Postmaster Tools until Heed measures the rate."
		return ch
	}
	rate, err := c.o.ComplaintRate(ctx, s.Tenant.ID, s.Domain)
	if err != nil {
		ch.Status, ch.Found = Warn, "could not read the rate: "+err.Error()
		ch.Fix = "Try again; if it persists, see the relay's log."
		return ch
	}
	ch.Status = OK
	ch.Found = fmt.Sprintf("%d complaints in %d delivered over %s", rate.Complaints, rate.Delivered, rate.Window)
	if rate.Delivered == 0 {
		return ch
	}
	r := float64(rate.Complaints) / float64(rate.Delivered)
	ch.Found += fmt.Sprintf(" (%.2f%%)", r*100)
	switch {
	case r >= complaintFail:
		ch.Status = Fail
		ch.Fix = "Stop mailing recipients who did not ask for this mail and make unsubscribing easy; Gmail rejects bulk mail at this rate."
	case r >= complaintWarn:
		ch.Status = Warn
		ch.Fix = "Mail only recipients who asked for it and remove inactive ones before the rate reaches 0.3%."
	}
	return ch
}

// oneLine is s with its lines joined, for a check's text.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
