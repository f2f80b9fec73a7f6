# Heed — see README.md.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
BIN      := bin/heed
STATICCHECK_VERSION := v0.8.2
# The default build signs RSA through OpenSSL's libcrypto (cgo); where its
# headers are not installed (Debian's libssl-dev), build with Go's own RSA
# instead of failing. `heed version` says which signer a binary has.
GOTAGS   ?= $(shell [ -f /usr/include/openssl/evp.h ] || echo heed_purego)

.PHONY: all build run test bench lint fuzz clean

all: build

build:
	$(GO) build -tags "$(GOTAGS)" -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/heed

## run: build and serve on the embedded defaults (demo tenant, capture mode)
run: build
	./$(BIN) serve

## test: every test, with the race detector (cgo: the OpenSSL signer),
## then the pure-Go signer's build: CGO_ENABLED=0 builds the binary and
## tests the DKIM package without OpenSSL
test:
	$(GO) vet -tags "$(GOTAGS)" ./...
	$(GO) test -tags "$(GOTAGS)" -race -count=1 -timeout 8m ./...
	CGO_ENABLED=0 $(GO) build -o /dev/null ./cmd/heed
	CGO_ENABLED=0 $(GO) test -count=1 ./internal/dkim/...

## bench: the benchmarks, printing their figures
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/

## lint: gofmt, go vet and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## fuzz: run each fuzz target for a while (FUZZTIME=30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/address/
	$(GO) test -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME) ./smtpd/
	$(GO) test -run '^$$' -fuzz '^FuzzInbound$$' -fuzztime $(FUZZTIME) ./smtpd/
	$(GO) test -run '^$$' -fuzz '^FuzzBareScan$$' -fuzztime $(FUZZTIME) ./smtpd/
	$(GO) test -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZTIME) ./internal/compose/
	$(GO) test -run '^$$' -fuzz '^FuzzSign$$' -fuzztime $(FUZZTIME) ./internal/dkim/
	$(GO) test -run '^$$' -fuzz '^FuzzParsePEM$$' -fuzztime $(FUZZTIME) ./internal/dkim/
	$(GO) test -run '^$$' -fuzz '^FuzzSigners$$' -fuzztime $(FUZZTIME) ./internal/dkim/
	$(GO) test -run '^$$' -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME) ./suppression/
	$(GO) test -run '^$$' -fuzz '^FuzzParseToken$$' -fuzztime $(FUZZTIME) ./suppression/
	$(GO) test -run '^$$' -fuzz '^FuzzParseMailto$$' -fuzztime $(FUZZTIME) ./suppression/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/report/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./webhooks/
	$(GO) test -run '^$$' -fuzz '^FuzzDotStuffing$$' -fuzztime $(FUZZTIME) ./internal/outbound/
	$(GO) test -run '^$$' -fuzz '^FuzzReplies$$' -fuzztime $(FUZZTIME) ./internal/outbound/

clean:
	rm -rf bin
