package tenant

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/heedmail/heed/internal/dkim"
)

// Key states. A new domain's keys are active at once (the domain cannot
// send verifiable mail before its records are published anyway); a key
// made for rotation is published first, then activated, which retires the
// active key of the same algorithm.
const (
	// KeyPublished: in the DNS advice, not yet signing.
	KeyPublished = "published"
	// KeyActive: signing every message of the domain.
	KeyActive = "active"
	// KeyRetired: no longer signing; its record stays published until mail
	// signed with it is old (a week is plenty), then the key is deleted.
	KeyRetired = "retired"
)

// DKIMKey is one signing key of a sending domain.
type DKIMKey struct {
	Domain    string `json:"domain"`
	Selector  string `json:"selector"`
	Algorithm string `json:"algorithm"`
	State     string `json:"state"`
	// TXT is the value of the record at <selector>._domainkey.<domain>.
	TXT string `json:"txt"`
	// Sealed is the PKCS#8 private key encrypted under the registry's
	// seal key; it never leaves the registry.
	Sealed      []byte    `json:"sealed"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	RetiredAt   time.Time `json:"retired_at,omitzero"`
}

// Name is the DNS name the key's TXT record is published at.
func (k DKIMKey) Name() string { return k.Selector + "._domainkey." + k.Domain }

// ErrActiveKey is returned when deleting the key a domain signs with.
var ErrActiveKey = errors.New("the key is active")

// keyring caches parsed signing keys. Selectors are never reused and key
// material never changes under a selector, so entries need no
// invalidation: parsing an RSA key costs far more than the lookup.
type keyring struct {
	mu     sync.Mutex
	aead   cipher.AEAD
	parsed map[string]crypto.Signer // domain + "\x00" + selector
}

// SetSealKey derives the key that encrypts DKIM private keys at rest from
// secret (the server key in the data directory). It must be called before
// domains are created or mail is signed.
func (r *Registry) SetSealKey(secret []byte) error {
	k, err := hkdf.Key(sha256.New, secret, nil, "heed dkim private keys at rest v1", 32)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	r.keys = &keyring{aead: aead, parsed: make(map[string]crypto.Signer)}
	return nil
}

// additional data binds a sealed key to its record, so a sealed blob
// copied to another domain or selector does not open.
func keyAD(domain, selector string) []byte { return []byte("dkim\x00" + domain + "\x00" + selector) }

func (r *Registry) seal(domain, selector string, der []byte) ([]byte, error) {
	if r.keys == nil {
		return nil, errors.New("tenant: no seal key set for DKIM keys")
	}
	nonce := make([]byte, r.keys.aead.NonceSize())
	rand.Read(nonce)
	return r.keys.aead.Seal(nonce, nonce, der, keyAD(domain, selector)), nil
}

func (r *Registry) open(k DKIMKey) ([]byte, error) {
	if r.keys == nil {
		return nil, errors.New("tenant: no seal key set for DKIM keys")
	}
	n := r.keys.aead.NonceSize()
	if len(k.Sealed) < n {
		return nil, fmt.Errorf("DKIM key %s: sealed key too short", k.Name())
	}
	der, err := r.keys.aead.Open(nil, k.Sealed[:n], k.Sealed[n:], keyAD(k.Domain, k.Selector))
	if err != nil {
		return nil, fmt.Errorf("DKIM key %s: cannot be opened with this server key (was data_dir/keys/server.key replaced?)", k.Name())
	}
	return der, nil
}

// GenerateKey makes a new key of alg for domain in the given state; the
// caller stores it.
func (r *Registry) GenerateKey(domain string, alg dkim.Algorithm, state string) (DKIMKey, error) {
	now := r.Now().UTC()
	priv, err := dkim.Generate(alg)
	if err != nil {
		return DKIMKey{}, err
	}
	der, err := dkim.MarshalPrivate(priv)
	if err != nil {
		return DKIMKey{}, err
	}
	txt, err := dkim.TXTRecord(priv.Public())
	if err != nil {
		return DKIMKey{}, err
	}
	k := DKIMKey{
		Domain: domain, Selector: dkim.NewSelector(alg, now), Algorithm: string(alg),
		State: state, TXT: txt, CreatedAt: now,
	}
	if state == KeyActive {
		k.ActivatedAt = now
	}
	if k.Sealed, err = r.seal(domain, k.Selector, der); err != nil {
		return DKIMKey{}, err
	}
	return k, nil
}

// CreateDomain registers domain for tenant with an active RSA-2048 key
// and an active Ed25519 key.
func (r *Registry) CreateDomain(ctx context.Context, tenantID, domain string) (Domain, []DKIMKey, error) {
	d, keys, err := r.PrepareDomain(tenantID, domain)
	if err != nil {
		return Domain{}, nil, err
	}
	if err := r.AddDomain(ctx, d, keys...); err != nil {
		return Domain{}, nil, err
	}
	return d, keys, nil
}

// PrepareDomain makes what CreateDomain stores, without storing it: for a
// caller that adds it (AddDomain) in a transaction of its own making,
// which must not wait for an RSA key to be generated.
func (r *Registry) PrepareDomain(tenantID, domain string) (Domain, []DKIMKey, error) {
	d := Domain{Name: domain, Tenant: tenantID, CreatedAt: r.Now().UTC()}
	var keys []DKIMKey
	for _, alg := range []dkim.Algorithm{dkim.RSA, dkim.Ed25519} {
		k, err := r.GenerateKey(domain, alg, KeyActive)
		if err != nil {
			return Domain{}, nil, err
		}
		keys = append(keys, k)
	}
	return d, keys, nil
}

// AddKey makes a new published key of alg for domain, to be activated
// once its record is in the DNS.
func (r *Registry) AddKey(ctx context.Context, domain string, alg dkim.Algorithm) (DKIMKey, error) {
	k, err := r.GenerateKey(domain, alg, KeyPublished)
	if err != nil {
		return DKIMKey{}, err
	}
	return k, r.PutKey(ctx, k)
}

// SigningKeys returns the keys mail from domain is signed with, RSA
// first. A domain with keys but none usable is an error: Heed never sends
// unsigned mail for a domain that has a key.
func (r *Registry) SigningKeys(ctx context.Context, domain string) ([]dkim.Key, error) {
	all, err := r.Keys(ctx, domain)
	if err != nil {
		return nil, err
	}
	var out []dkim.Key
	for _, k := range all {
		if k.State != KeyActive {
			continue
		}
		s, err := r.signer(k)
		if err != nil {
			return nil, err
		}
		out = append(out, dkim.Key{Domain: k.Domain, Selector: k.Selector, Algorithm: dkim.Algorithm(k.Algorithm), Signer: s})
	}
	if len(out) == 0 && len(all) > 0 {
		return nil, fmt.Errorf("domain %s has DKIM keys but none is active", domain)
	}
	// RSA first: verifiers that stop at the first signature know RSA.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Algorithm == dkim.RSA && out[j].Algorithm != dkim.RSA })
	return out, nil
}

func (r *Registry) signer(k DKIMKey) (crypto.Signer, error) {
	if r.keys == nil {
		return nil, errors.New("tenant: no seal key set for DKIM keys")
	}
	id := k.Domain + "\x00" + k.Selector
	r.keys.mu.Lock()
	s, ok := r.keys.parsed[id]
	r.keys.mu.Unlock()
	if ok {
		return s, nil
	}
	der, err := r.open(k)
	if err != nil {
		return nil, err
	}
	if s, err = dkim.ParsePrivate(der); err != nil {
		return nil, fmt.Errorf("DKIM key %s: %w", k.Name(), err)
	}
	r.keys.mu.Lock()
	r.keys.parsed[id] = s
	r.keys.mu.Unlock()
	return s, nil
}

// EnsureKeys gives domain an active key of each algorithm it lacks (a
// domain registered before Heed signed) and returns the keys it made.
func (r *Registry) EnsureKeys(ctx context.Context, domain string) ([]DKIMKey, error) {
	keys, err := r.Keys(ctx, domain)
	if err != nil {
		return nil, err
	}
	var made []DKIMKey
	for _, alg := range []dkim.Algorithm{dkim.RSA, dkim.Ed25519} {
		have := false
		for _, k := range keys {
			have = have || k.Algorithm == string(alg) && k.State == KeyActive
		}
		if have {
			continue
		}
		k, err := r.GenerateKey(domain, alg, KeyActive)
		if err != nil {
			return made, err
		}
		if err := r.PutKey(ctx, k); err != nil {
			return made, err
		}
		made = append(made, k)
	}
	return made, nil
}
