package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/heedmail/heed/internal/backend/postgres/pgtest"
	"github.com/heedmail/heed/internal/heedproc"
	"github.com/heedmail/heed/internal/testsink"
)

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	heedproc.Cleanup()
	os.Exit(code)
}

// operatorToken is every node's admin token.
const operatorToken = "cluster-test-operator-token-0123456789"

// options shape a test's cluster.
type options struct {
	// nodes is how many nodes to run (at most 3: 127.0.0.1 to .3).
	nodes int
	// ownDatabaseServer starts a PostgreSQL server for this test alone,
	// which it may stop and start (cluster.pg); otherwise a new database
	// on the test binary's shared server.
	ownDatabaseServer bool
	// reply scripts every sink's answers (testsink.Options.Reply).
	reply func(stage, from, rcpt string, attempt int) *smtp.SMTPError
	// later is how many of the last nodes are configured but not
	// started: the test starts them (node.start, node.waitReady).
	later int
	// logLevel is every node's log.level ("": warn).
	logLevel string
	// config is more of every node's heed.yaml, top-level keys the
	// harness does not write (webhooks:, retention: ...).
	config string
}

// cluster is N heed nodes on one database, each delivering example.net
// to a sink of its own, so that a copy says which node sent it.
type cluster struct {
	t     *testing.T
	pg    *pgtest.Cluster // the database server; stop and start only when ownDatabaseServer
	dsn   string
	nodes []*node
	// user and pass are an SMTP credential of tenant acme, whose domain
	// acme.test may send; credID is its id.
	user, pass, credID string
}

// node is one heed serve process and what it listens on.
type node struct {
	t                   *testing.T
	name                string // node1 ...
	dir                 string
	config              string
	smtp, admin, public string // host:port
	sink                *testsink.Sink

	mu     sync.Mutex
	cmd    *exec.Cmd
	out    *heedproc.SyncBuffer
	lives  heedproc.SyncBuffer // what every process of the node wrote, restarts included
	exited chan struct{}
}

// startCluster starts o.nodes nodes, one after the other ready, makes
// tenant acme through the first, and stops them all when t ends.
func startCluster(t *testing.T, o options) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("builds heed and runs several processes")
	}
	heedproc.Binary(t)
	c := &cluster{t: t}
	if o.ownDatabaseServer {
		c.pg = pgtest.New(t)
	} else {
		c.pg = pgtest.Shared(t)
	}
	c.dsn = c.pg.NewDatabase(t)
	for i := range o.nodes {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		n := &node{t: t, name: fmt.Sprintf("node%d", i+1), dir: t.TempDir(),
			smtp: freePort(t, ip), admin: freePort(t, ip), public: freePort(t, ip),
			sink: testsink.Start(t, testsink.Options{Reply: o.reply})}
		c.nodes = append(c.nodes, n)
	}
	for i, n := range c.nodes {
		n.writeConfig(c.dsn, freePort(t, fmt.Sprintf("127.0.0.%d", i+1)), o)
		if i >= o.nodes-o.later {
			continue
		}
		n.start()
		n.waitReady()
	}
	first := c.nodes[0]
	first.api("POST", "/api/v1/tenants", map[string]string{"id": "acme", "name": "Acme", "postal_address": "1 Main St, Springfield"}, nil)
	first.api("POST", "/api/v1/tenants/acme/domains", map[string]string{"domain": "acme.test"}, nil)
	var cred struct{ ID, Username, Password string }
	first.api("POST", "/api/v1/tenants/acme/credentials", map[string]string{}, &cred)
	c.user, c.pass, c.credID = cred.Username, cred.Password, cred.ID
	return c
}

// freePort is a free TCP port on ip.
func freePort(t *testing.T, ip string) string { return heedproc.FreePort(t, ip) }

// publicBase is every node's http.public.base_url: the address of the
// load balancer (terminating TLS) in front of the nodes' public
// listeners. Tests post to a node's listener with the links' paths.
const publicBase = "https://unsubscribe.cluster.test"

// writeConfig writes the node's heed.yaml: the same database and
// base_url for every node, its own listeners, data
// directory and next hop, and a short delivery lease so that a killed
// node's recipients are retried within seconds; then o.config.
func (n *node) writeConfig(dsn, inbound string, o options) {
	n.config = filepath.Join(n.dir, "heed.yaml")
	level := o.logLevel
	if level == "" {
		level = "warn"
	}
	cfg := fmt.Sprintf(`hostname: %s.relay.test
data_dir: %s
smtp: { submission: { listen: %q }, inbound: { listen: %q } }
http: { admin: { listen: %q }, public: { listen: %q, base_url: %q } }
admin: { tokens: [%q] }
log: { level: %s }
delivery: { mode: mx, routes: { "example.net": %q } }
storage: { driver: postgres, postgres: { dsn: %q, delivery_lease: 3s } }
`, n.name, filepath.Join(n.dir, "data"), n.smtp, inbound, n.admin, n.public, publicBase, operatorToken, level, n.sink.Addr(), dsn) + o.config
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		n.t.Fatal(err)
	}
}

// start runs heed serve on the node's configuration; its output is shown
// if the test fails.
func (n *node) start() {
	n.t.Helper()
	p := heedproc.Start(n.t, n.name, n.dir, nil, &n.lives, "serve", "-config", n.config)
	n.mu.Lock()
	n.cmd, n.out, n.exited = p.Cmd, p.Out, p.Exited
	n.mu.Unlock()
}

// kill ends the node with SIGKILL, as a machine's failure would, and
// waits until the process is gone.
func (n *node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		n.t.Fatal(err)
	}
	<-exited
}

// allOutput is what the node's processes have written so far, each
// process after the one before.
func (n *node) allOutput() string { return n.lives.String() }

// output is what the running process has written so far.
func (n *node) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.String()
}

// ready is the status of the node's GET /readyz (0: no answer).
func (n *node) ready() int {
	resp, err := http.Get("http://" + n.admin + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReady waits until /readyz answers 200, failing if the process
// exits first.
func (n *node) waitReady() {
	n.t.Helper()
	n.mu.Lock()
	exited, out := n.exited, n.out
	n.mu.Unlock()
	waitFor(n.t, n.name+" to answer /readyz 200", time.Minute, func() bool {
		select {
		case <-exited:
			n.t.Fatalf("%s exited at start:\n%s", n.name, out.String())
		default:
		}
		return n.ready() == http.StatusOK
	})
}

// api calls the node's admin API as the operator and decodes the answer
// into out (nil: ignored); a status of 300 or more fails the test.
func (n *node) api(method, path string, body, out any) {
	n.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, "http://"+n.admin+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		n.t.Fatalf("%s %s on %s: %s %s", method, path, n.name, resp.Status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			n.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	heedproc.WaitFor(t, what, timeout, cond)
}

// submitter is an application sending through the nodes as through a
// TCP load balancer: one connection at a time, to the next node when the
// current one fails.
type submitter struct {
	c    *cluster
	next int // index of the node to connect to next
	conn *smtp.Client
}

// message is a test message with Message-ID <id@acme.test> to
// id@example.net; list picks the list ("" the default).
func message(id, list string) string {
	h := "From: hello@acme.test\r\nTo: " + id + "@example.net\r\nSubject: " + id + "\r\nMessage-ID: <" + id + "@acme.test>\r\n"
	if list != "" {
		h += "X-Heed-List: " + list + "\r\n"
	}
	return h + "\r\nHello " + id + ".\r\n"
}

// send submits message(id, list) and returns nil when a node answered
// 250, or why not: an *smtp.SMTPError a node answered, or a connection's
// error. The connection is dropped after a failure and the next attempt
// goes to the next node.
func (s *submitter) send(id, list string) error {
	return s.sendTo(id+"@example.net", message(id, list))
}

// sendTo submits msg to rcpt, as send does.
func (s *submitter) sendTo(rcpt, msg string) error {
	if s.conn == nil {
		n := s.c.nodes[s.next%len(s.c.nodes)]
		s.next++
		conn, err := smtp.Dial(n.smtp)
		if err != nil {
			return err
		}
		if err := conn.Auth(sasl.NewPlainClient("", s.c.user, s.c.pass)); err != nil {
			conn.Close()
			return err
		}
		s.conn = conn
	}
	err := s.conn.SendMail("hello@acme.test", []string{rcpt}, strings.NewReader(msg))
	if err != nil {
		s.close()
	}
	return err
}

func (s *submitter) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// smtpCode is the reply code of an SMTP refusal in err, 0 for any other
// error.
func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// copies counts what the sinks received: for each test message id, the
// nodes (their index) whose sink got a copy, in the order received.
func (c *cluster) copies() map[string][]copyOf {
	got := map[string][]copyOf{}
	for i, n := range c.nodes {
		for pos, m := range n.sink.Messages() {
			id := strings.TrimSuffix(m.To[0], "@example.net")
			got[id] = append(got[id], copyOf{node: i, pos: pos})
		}
	}
	return got
}

// copyOf is one copy at node's sink, the pos-th it received.
type copyOf struct{ node, pos int }

// leasesOf counts the schedule entries n holds a lease on (under the
// name in its data_dir/node-id: docs/postgresql.md).
func (c *cluster) leasesOf(n *node) int {
	c.t.Helper()
	name, err := os.ReadFile(filepath.Join(n.dir, "data", "node-id"))
	if err != nil {
		c.t.Fatal(err)
	}
	count := pgtest.Strings(c.t, c.dsn, "SELECT count(*) FROM schedule WHERE lease_node = $1", strings.TrimSpace(string(name)))
	var k int
	fmt.Sscan(count[0], &k)
	return k
}

// ackLog is the messages the nodes answered 250 to.
type ackLog struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (a *ackLog) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ids == nil {
		a.ids = map[string]bool{}
	}
	a.ids[id] = true
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ids)
}

func (a *ackLog) all() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.ids))
	for id := range a.ids {
		out = append(out, id)
	}
	return out
}

// waitDelivered waits until every acknowledged message has a copy at a
// sink and returns the copies.
func (c *cluster) waitDelivered(acked *ackLog, timeout time.Duration) map[string][]copyOf {
	c.t.Helper()
	var got map[string][]copyOf
	missing := 0
	deadline := time.Now().Add(timeout)
	for {
		got, missing = c.copies(), 0
		for _, id := range acked.all() {
			if len(got[id]) == 0 {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after %v, %d of %d acknowledged messages have not reached a sink (lost)", timeout, missing, acked.count())
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}
