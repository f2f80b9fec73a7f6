package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Environment variables that supply secrets, so they need not be written in
// the config file.
const (
	// EnvAdminToken adds one operator token to admin.tokens.
	EnvAdminToken = "HEED_ADMIN_TOKEN"
	// EnvSmarthostPassword sets delivery.smarthost_password.
	EnvSmarthostPassword = "HEED_SMARTHOST_PASSWORD"
	// EnvPostgresDSN replaces storage.postgres.dsn.
	EnvPostgresDSN = "HEED_POSTGRES_DSN"
)

// Load reads the config file at path; see Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse reads a configuration from data, name being the file name used in
// error messages. It starts from Default, applies the YAML document, then the
// environment (ApplyEnv with os.Getenv), fills the values derived from the
// hostname, normalises route domains to lower case and validates the result.
//
// A YAML syntax error stops there. Otherwise the error, if any, is an Errors
// holding every problem found: unknown keys, values of the wrong type and
// invalid values, each with its line in the file.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, os.Getenv)
}

// parse is Parse with the environment injected, for tests.
func parse(name string, data []byte, getenv func(string) string) (*Config, error) {
	c := Default()
	doc, errs, fatal := decode(name, data, c)
	if fatal {
		slices.SortStableFunc(errs, byLine)
		return nil, errs
	}
	c.ApplyEnv(getenv)
	c.fillDerived()
	errs = append(errs, c.validate(name, doc)...)
	if len(errs) > 0 {
		slices.SortStableFunc(errs, byLine)
		return nil, errs
	}
	c.normaliseRoutes()
	return c, nil
}

// decode applies the YAML document in data to c and returns its node tree,
// for locating keys later. fatal is true when the document could not be
// parsed at all; type errors are not fatal, as the rest of the document
// still decodes and can still be checked.
func decode(name string, data []byte, c *Config) (doc *yaml.Node, errs Errors, fatal bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if errors.Is(err, io.EOF) {
		return nil, nil, false // empty file: all defaults
	}
	var te *yaml.TypeError
	if err != nil && !errors.As(err, &te) {
		return nil, decodeErrors(name, nil, err), true
	}
	doc = new(yaml.Node)
	if derr := yaml.Unmarshal(data, doc); derr != nil {
		return nil, decodeErrors(name, nil, derr), true
	}
	if err != nil {
		errs = decodeErrors(name, doc, err)
		// yaml.v3 skips a whole mapping that repeats a key, so what follows
		// would report the skipped keys' defaults as if they were wrong.
		if slices.ContainsFunc(te.Errors, func(s string) bool { return strings.Contains(s, "already defined at line") }) {
			return nil, errs, true
		}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		errs = append(errs, Error{File: name, Line: extra.Line, Msg: "a config file holds one YAML document; remove the second"})
	case !errors.Is(err, io.EOF):
		return nil, append(errs, decodeErrors(name, nil, err)...), true
	}
	return doc, errs, false
}

// ApplyEnv takes secrets from the environment through getenv (os.Getenv in
// production): HEED_ADMIN_TOKEN is added to Admin.Tokens and
// HEED_SMARTHOST_PASSWORD replaces Delivery.SmarthostPassword and
// HEED_POSTGRES_DSN replaces Storage.Postgres.DSN. Unset or empty
// variables change nothing. Parse calls it; a caller running on Embedded
// calls it before Validate.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if tok := strings.TrimSpace(getenv(EnvAdminToken)); tok != "" {
		c.Admin.Tokens = append(c.Admin.Tokens, tok)
		c.envTokens++
	}
	if pw := getenv(EnvSmarthostPassword); pw != "" {
		c.Delivery.SmarthostPassword = pw
	}
	if dsn := strings.TrimSpace(getenv(EnvPostgresDSN)); dsn != "" {
		c.Storage.Postgres.DSN = dsn
	}
}

// normaliseRoutes lower-cases route domains: recipient domains are compared
// case-insensitively (RFC 5321 section 2.4).
func (c *Config) normaliseRoutes() {
	routes := make(map[string]string, len(c.Delivery.Routes))
	for d, hop := range c.Delivery.Routes {
		routes[strings.ToLower(d)] = hop
	}
	c.Delivery.Routes = routes
}

// byLine orders errors as they appear in the file; those without a line
// (defaults, environment) come last.
func byLine(a, b Error) int {
	la, lb := a.Line, b.Line
	if la == 0 {
		la = 1 << 30
	}
	if lb == 0 {
		lb = 1 << 30
	}
	return cmp.Compare(la, lb)
}
