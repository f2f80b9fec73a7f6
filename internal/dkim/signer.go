package dkim

// RSASigner names the implementation that makes this build's RSA
// signatures, for `heed version` and the log line `heed serve` starts
// with: "openssl (OpenSSL 3.0.19 ..., cgo)" where the binary was built
// with cgo and OpenSSL's headers, "go (crypto/rsa)" where it was built
// with CGO_ENABLED=0 or the heed_purego build tag (with ", FIPS 140-3
// mode" when GODEBUG=fips140=on changes which Go code signs).
func RSASigner() string { return rsaSignerName() }
