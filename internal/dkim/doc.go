// Package dkim signs Heed's outgoing mail with DKIM and manages the keys.
//
// It implements the signer's side of RFC 6376 (DomainKeys Identified Mail),
// with RFC 8301's rules (rsa-sha256 only, RSA keys of 1024 to 4096 bits,
// 2048 generated) and RFC 8463 (ed25519-sha256), on top of
// github.com/emersion/go-msgauth/dkim, which does the canonicalisation and
// the hashing: this package chooses what to sign and how, and which code
// makes the RSA signature.
//
// # Which RSA signer
//
// RSA-2048 signing is most of the CPU a signed message costs, and every
// message is signed with RSA. On the reference machine (docs/benchmarks.md)
// OpenSSL's libcrypto makes about twice as many RSA-2048 signatures per
// second as Go's crypto/rsa, and Go's BoringCrypto build
// (GOEXPERIMENT=boringcrypto) sits in between; so where the binary is built
// with cgo and OpenSSL's headers (Debian's libssl-dev), ParsePrivate and
// ParsePEM load RSA keys into OpenSSL once and sign through it (a thin
// binding of EVP_PKEY_sign, see rsa_openssl.go). Its signatures are
// crypto/rsa's byte for byte (PKCS#1 v1.5 is deterministic), which the
// tests assert. RSASigner names the signer of the build; `heed version`
// prints it and `heed serve` logs it.
//
// To force the pure-Go signer, build with CGO_ENABLED=0 (a static binary
// that runs anywhere) or with the build tag heed_purego (cgo left on for
// the rest, such as the race detector). Both builds are tested by
// `make test`.
//
// # Keys
//
// Each tenant domain has keys (Key), one per algorithm, each under its own
// selector. Generate makes one, MarshalPrivate and ParsePrivate store it
// (PKCS#8), ParsePEM imports an operator's key, TXTRecord and SplitTXT give
// what to publish at <selector>._domainkey.<domain>, and NewSelector names
// a new key so that rotation — publish a new selector, switch to it, keep
// the old one until mail signed with it is old — never reuses a name.
//
// # What is signed
//
// Sign makes one signature per key, RSA first (every domain has an RSA-2048
// key, every receiver verifies it; Ed25519 goes alongside where the domain
// has such a key). Every signature is relaxed/relaxed, SHA-256, with no l=
// and no x=, over an explicit header list (HeaderKeys): From, Sender, To,
// Cc, Subject, Date, Message-ID, Reply-To, the resent block (Resent-Date,
// Resent-From, Resent-Sender, Resent-To, Resent-Cc, Resent-Message-ID),
// MIME-Version, Content-Type, Content-Transfer-Encoding, and the fields
// Heed owns, List-Id, List-Unsubscribe, List-Unsubscribe-Post and
// Feedback-ID.
//
// Every field of that list is over-signed (RFC 6376 section 5.4.2): named
// once more than it occurs, so that one added after signing breaks the
// signature. That is what stops a relay or a recipient from reusing Heed's
// signature on a message with a second, different From or Subject shown
// to the reader, or from adding a List-Unsubscribe (and a one-click
// List-Unsubscribe-Post, RFC 8058) to a transactional message that had
// none: mailbox providers act on those headers only when a valid
// signature covers them (RFC 8058 section 4). It is also what stops a
// tenant from replaying its own signed mail with a Sender, Resent-From or
// Resent-Sender naming another tenant added on top, which clients show as
// sent "on behalf of" that tenant while both signatures still verify;
// Heed checks those fields at submission, and the signature holds them to
// what was checked.
//
// The cost: a copy that is later resent with a new resent block (RFC 5322
// section 3.6.6 — a mail client's "redirect", a list that resends without
// re-signing) no longer verifies under Heed's signature. Heed's mail is
// fresh mail from its tenants, so whoever resends it is the one to vouch
// for the resent copy.
//
// A message must have exactly one From field, or it is refused before it is
// signed: DMARC aligns on the one From, and RFC 5322 requires one. So is a
// header line that is not an RFC 5322 field (no colon, white space in or
// after the name, a first line starting with white space): verifiers
// count such lines differently, and over-signing holds only if they all
// count the fields as Sign did.
//
// Verify wraps go-msgauth's verifier, for tests and the admin API's check
// that a domain's published keys match its signing keys.
package dkim
