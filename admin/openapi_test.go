package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/heedmail/heed/internal/events"
	"github.com/heedmail/heed/internal/outbound"
	"github.com/heedmail/heed/internal/privacy"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/readiness"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/unread"
	"github.com/heedmail/heed/suppression"
	"github.com/heedmail/heed/webhooks"
)

// The parts of an OpenAPI document the tests read.
type oaDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Security   []map[string][]string                 `json:"security"`
	Paths      map[string]map[string]oaOp            `json:"paths"`
	Components map[string]map[string]json.RawMessage `json:"components"`
}

type oaOp struct {
	OperationID string                     `json:"operationId"`
	Summary     string                     `json:"summary"`
	Description string                     `json:"description"`
	Tags        []string                   `json:"tags"`
	Permission  string                     `json:"x-heed-permission"`
	Security    *[]map[string][]string     `json:"security"`
	Parameters  []oaParam                  `json:"parameters"`
	RequestBody *oaBody                    `json:"requestBody"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

type oaParam struct {
	Ref      string `json:"$ref"`
	Name     string `json:"name"`
	In       string `json:"in"`
	Required bool   `json:"required"`
}

type oaBody struct {
	Content map[string]struct {
		Schema map[string]any `json:"schema"`
	} `json:"content"`
}

// csv reports whether the body is the CSV of an import.
func (b *oaBody) csv() (any, bool) {
	if b == nil {
		return nil, false
	}
	c, ok := b.Content["text/csv"]
	return c, ok
}

type oaSchema struct {
	Ref                  string              `json:"$ref"`
	Properties           map[string]oaSchema `json:"properties"`
	Required             []string            `json:"required"`
	AdditionalProperties *bool               `json:"additionalProperties"`
}

type oaResponse struct {
	Ref     string                     `json:"$ref"`
	Content map[string]json.RawMessage `json:"content"`
}

func loadOpenAPI(t *testing.T) oaDoc {
	t.Helper()
	var d oaDoc
	if err := json.Unmarshal(openAPIDoc, &d); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return d
}

// component resolves a "#/components/KIND/NAME" reference.
func (d oaDoc) component(ref string) (json.RawMessage, bool) {
	kind, name, ok := strings.Cut(strings.TrimPrefix(ref, "#/components/"), "/")
	if !ok || !strings.HasPrefix(ref, "#/components/") {
		return nil, false
	}
	v, ok := d.Components[kind][name]
	return v, ok
}

// param resolves a parameter that may be a $ref.
func (d oaDoc) param(t *testing.T, p oaParam) oaParam {
	t.Helper()
	if p.Ref == "" {
		return p
	}
	raw, ok := d.component(p.Ref)
	if !ok {
		t.Fatalf("unresolved parameter %s", p.Ref)
	}
	var out oaParam
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("parameter %s: %v", p.Ref, err)
	}
	return out
}

func (d oaDoc) schema(t *testing.T, name string) oaSchema {
	t.Helper()
	raw, ok := d.Components["schemas"][name]
	if !ok {
		t.Fatalf("no components/schemas/%s", name)
	}
	var s oaSchema
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("schema %s: %v", name, err)
	}
	return s
}

var routeParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)`)

// openAPIPath writes an echo path the OpenAPI way: :name becomes {name}.
func openAPIPath(p string) string { return routeParam.ReplaceAllString(p, "{$1}") }

var permNames = map[perm]string{
	public: "public", operator: "operator", tenantRead: "tenantRead",
	tenantWrite: "tenantWrite", keyRead: "keyRead",
}

func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.url + "/api/v1/openapi.json") // no token
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var d struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", d.OpenAPI)
	}
	if _, ok := d.Paths["/api/v1/openapi.json"]; !ok {
		t.Error("the document does not describe itself")
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	d := loadOpenAPI(t)
	methods := []string{"get", "post", "put", "patch", "delete"}

	routes := map[string]route{}
	for _, r := range (&server{}).routes() {
		routes[r.method+" "+openAPIPath(r.path)] = r
	}
	documented := map[string]oaOp{}
	for path, item := range d.Paths {
		for m, op := range item {
			if !slices.Contains(methods, m) {
				if m != "parameters" && m != "summary" && m != "description" {
					t.Errorf("%s: unexpected key %q in the path item", path, m)
				}
				continue
			}
			documented[strings.ToUpper(m)+" "+path] = op
		}
	}
	var missing, extra []string
	for k := range routes {
		if _, ok := documented[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if _, ok := routes[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes missing from openapi.json:\n\t%s", strings.Join(missing, "\n\t"))
	}
	if len(extra) > 0 {
		t.Errorf("operations in openapi.json with no route:\n\t%s", strings.Join(extra, "\n\t"))
	}

	if len(d.Security) != 1 || d.Security[0]["bearer"] == nil {
		t.Errorf("global security %v, want [{bearer: []}]", d.Security)
	}
	allowedTags := []string{"tenants", "credentials", "api-keys", "domains", "lists", "suppressions",
		"webhooks", "events", "messages", "captured", "reports", "audit", "probes", "privacy"}
	opIDs := map[string]string{}
	keys := make([]string, 0, len(documented))
	for k := range documented {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		op := documented[k]
		_, path, _ := strings.Cut(k, " ")
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", k)
		} else if prev, dup := opIDs[op.OperationID]; dup {
			t.Errorf("%s: operationId %q is also %s's", k, op.OperationID, prev)
		}
		opIDs[op.OperationID] = k
		if op.Summary == "" || op.Description == "" {
			t.Errorf("%s: summary or description missing", k)
		}
		if len(op.Tags) == 0 {
			t.Errorf("%s: no tags", k)
		}
		for _, tag := range op.Tags {
			if !slices.Contains(allowedTags, tag) {
				t.Errorf("%s: unknown tag %q", k, tag)
			}
		}

		// Path parameters: each {name} declared, each declared one in the path.
		inPath := map[string]bool{}
		for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
			inPath[m[1]] = true
		}
		declared := map[string]bool{}
		for _, p := range op.Parameters {
			p = d.param(t, p)
			if p.In != "path" {
				continue
			}
			declared[p.Name] = true
			if !p.Required {
				t.Errorf("%s: path parameter %q is not required", k, p.Name)
			}
			if !inPath[p.Name] {
				t.Errorf("%s: path parameter %q is not in the path", k, p.Name)
			}
		}
		for name := range inPath {
			if !declared[name] {
				t.Errorf("%s: path parameter {%s} is not declared in parameters", k, name)
			}
		}

		// Responses: at least one 2xx; errors are problem+json.
		ok2xx := false
		for code, raw := range op.Responses {
			if len(code) == 3 && code[0] == '2' {
				ok2xx = true
			}
			if len(code) == 3 && (code[0] == '4' || code[0] == '5') {
				var resp oaResponse
				if err := json.Unmarshal(raw, &resp); err != nil {
					t.Fatalf("%s %s: %v", k, code, err)
				}
				if resp.Ref != "" {
					r, ok := d.component(resp.Ref)
					if !ok {
						continue // TestOpenAPIRefsResolve reports it
					}
					resp = oaResponse{}
					json.Unmarshal(r, &resp)
				}
				c, ok := resp.Content[ProblemContentType]
				if !ok || !strings.Contains(string(c), `"#/components/schemas/Problem"`) {
					t.Errorf("%s: response %s is not an application/problem+json Problem", k, code)
				}
			}
		}
		if !ok2xx {
			t.Errorf("%s: no 2xx response", k)
		}

		// JSON request bodies refuse unknown fields, as decodeJSON does (a
		// CSV import is the one body that is not JSON).
		if _, csv := op.RequestBody.csv(); op.RequestBody != nil && !csv {
			c, ok := op.RequestBody.Content["application/json"]
			ref, _ := c.Schema["$ref"].(string)
			if !ok || !strings.HasPrefix(ref, "#/components/schemas/") {
				t.Errorf("%s: requestBody is not an application/json schema reference", k)
			} else if s := d.schema(t, strings.TrimPrefix(ref, "#/components/schemas/")); s.AdditionalProperties == nil || *s.AdditionalProperties {
				t.Errorf("%s: request schema %s does not set additionalProperties false", k, ref)
			}
		}

		r, ok := routes[k]
		if !ok {
			continue
		}
		// Security: public routes say security: [], the others inherit
		// the global bearer.
		if r.perm == public {
			if op.Security == nil || len(*op.Security) != 0 {
				t.Errorf("%s: a public route, want security: []", k)
			}
		} else if op.Security != nil && len(*op.Security) == 0 {
			t.Errorf("%s: needs a token, but security is []", k)
		}
		if want := permNames[r.perm]; op.Permission != want {
			t.Errorf("%s: x-heed-permission %q, route needs %q", k, op.Permission, want)
		}
		// The errors the permission check itself answers.
		if r.perm != public {
			if _, ok := op.Responses["401"]; !ok {
				t.Errorf("%s: no 401 response", k)
			}
		}
		if r.perm == operator || r.perm == tenantWrite {
			if _, ok := op.Responses["403"]; !ok {
				t.Errorf("%s: no 403 response", k)
			}
		}
		if strings.Contains(r.path, ":tenant") {
			if _, ok := op.Responses["404"]; !ok {
				t.Errorf("%s: no 404 response (unknown tenant)", k)
			}
		}
		if op.RequestBody != nil {
			for _, code := range []string{"400", "415"} {
				if _, ok := op.Responses[code]; !ok {
					t.Errorf("%s: takes a body but has no %s response", k, code)
				}
			}
		}
	}
}

func TestOpenAPIRefsResolve(t *testing.T) {
	d := loadOpenAPI(t)
	var doc any
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				n++
				s, _ := ref.(string)
				if _, ok := d.component(s); !ok {
					t.Errorf("%s: $ref %v does not resolve", at, ref)
				}
			}
			for k, c := range v {
				walk(at+"/"+k, c)
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s/%d", at, i), c)
			}
		}
	}
	walk("#", doc)
	if n == 0 {
		t.Error("no $ref at all: the components are not used")
	}
	if _, ok := d.Components["schemas"]["Problem"]; !ok {
		t.Error("no components/schemas/Problem")
	}
	schemes := d.Components["securitySchemes"]
	var bearer struct{ Type, Scheme string }
	if raw, ok := schemes["bearer"]; !ok || json.Unmarshal(raw, &bearer) != nil || bearer.Type != "http" || bearer.Scheme != "bearer" {
		t.Errorf("components/securitySchemes/bearer %s, want an HTTP bearer scheme", schemes["bearer"])
	}
}

// jsonFields returns the JSON field names of struct type t and whether
// each is always present (no omitempty or omitzero).
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, hasTag := f.Tag.Lookup("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && !hasTag && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero")
	}
	return out
}

// TestOpenAPISchemasMatchGo holds the schemas' property names to the JSON
// tags of the Go types the handlers encode and decode; for responses, the
// fields always present are the required ones.
func TestOpenAPISchemasMatchGo(t *testing.T) {
	d := loadOpenAPI(t)
	responses := map[string]any{
		"Problem": Problem{}, "Tenant": tenant.Tenant{}, "Credential": credentialView{},
		"APIKey": apiKeyView{}, "Domain": tenant.Domain{}, "DomainDetail": domainView{},
		"DKIMKey": keyView{}, "DNSRecord": DNSRecord{}, "DNSCheck": dnsCheck{},
		"DNSCheckResult": dnsCheckResult{}, "List": tenant.List{}, "Suppression": suppression.Entry{},
		"Event": events.Event{}, "EventData": events.Data{}, "Message": messageView{},
		"Client": queue.Client{}, "Recipient": queue.Recipient{}, "Captured": outbound.Captured{},
		"WebhookEndpoint": endpointView{}, "WebhookSecret": secretView{},
		"WebhookDelivery": webhooks.Delivery{}, "WebhookAttempt": webhooks.Attempt{},
		"WebhookDeliveryPage": deliveryList{}, "AuditRecord": AuditRecord{},
		"PrivacyExport": privacy.Export{}, "PrivacyErasure": privacy.Erasure{},
		"PrivacyRecipient": queue.RecipientOf{},
		"UnreadReport":     unread.Report{}, "UnreadReportPage": unreadPage{},
		"Readiness": readiness.Report{}, "ReadinessCheck": readiness.Check{},
	}
	requests := map[string]any{
		"TenantCreate": tenantRequest{}, "CredentialCreate": credentialRequest{},
		"ListPut": listRequest{}, "WebhookPut": webhooks.Input{}, "WebhookPatch": webhooks.Patch{},
		"WebhookCreate": struct {
			ID string `json:"id"`
			webhooks.Input
		}{},
	}
	check := func(name string, v any, response bool) {
		s := d.schema(t, name)
		fields := jsonFields(reflect.TypeOf(v))
		for f, always := range fields {
			if _, ok := s.Properties[f]; !ok {
				t.Errorf("schema %s: no property %q (a field of %T)", name, f, v)
			}
			if response && always && !slices.Contains(s.Required, f) {
				t.Errorf("schema %s: %q is always sent, want it required", name, f)
			}
			if response && !always && slices.Contains(s.Required, f) {
				t.Errorf("schema %s: %q may be left out, want it not required", name, f)
			}
		}
		for p := range s.Properties {
			if _, ok := fields[p]; !ok {
				t.Errorf("schema %s: property %q is no field of %T", name, p, v)
			}
		}
	}
	for name, v := range responses {
		check(name, v, true)
	}
	for name, v := range requests {
		check(name, v, false)
	}
}

// TestOpenAPICredentialLimits: the document tells a client about the 422
// for a network too broad, not public or one too many, and the limits
// themselves.
func TestOpenAPICredentialLimits(t *testing.T) {
	d := loadOpenAPI(t)
	op := d.Paths["/api/v1/tenants/{tenant}/credentials"]["post"]
	var resp oaResponse
	if err := json.Unmarshal(op.Responses["422"], &resp); err != nil || resp.Ref != "#/components/responses/Unprocessable" {
		t.Errorf("createCredential's 422: %s, %v", op.Responses["422"], err)
	}
	for _, limit := range []string{"/24", "/56", "/8", "/32", "host bits", "RFC 1918", "loopback",
		fmt.Sprintf("already has %d ip credentials", tenant.MaxTenantIPCredentials)} {
		if !strings.Contains(op.Description, limit) {
			t.Errorf("createCredential's description does not say %q", limit)
		}
	}
}
