package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"testing"
)

// benchMessage is a ~3 KB marketing message, the size Heed mostly sends:
// all the signed fields present, a quoted-printable text part and an
// HTML part.
var benchMessage = func() []byte {
	head := []string{
		"From: News <news@example.com>",
		"To: bob@example.net",
		"Subject: November news from the clinic",
		"Date: Mon, 23 Nov 2026 10:00:00 +0000",
		"Message-ID: <01kabd0000000000000000@example.com>",
		"MIME-Version: 1.0",
		"List-Id: News <news.example.com>",
		"List-Unsubscribe: <https://heed.example/u/AbC123dEf456gHi789>, <mailto:u-AbC123dEf456gHi789@heed.example>",
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
		"Feedback-ID: news:t1:heed",
		`Content-Type: multipart/alternative; boundary="b1"`,
		"",
		"--b1",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: quoted-printable",
		"",
	}
	var body []string
	for i := range 16 {
		body = append(body, fmt.Sprintf("Paragraph %d of the news, which says something of interest=", i),
			"to the reader and wraps at the usual width.")
	}
	body = append(body, "--b1", "Content-Type: text/html; charset=utf-8", "", "<html><body>")
	for i := range 14 {
		body = append(body, fmt.Sprintf("<p>Paragraph %d of the news, in HTML this time.</p>", i))
	}
	body = append(body, "</body></html>", "--b1--")
	return crlf(append(head, body...)...)
}()

func TestBenchMessageSize(t *testing.T) {
	if n := len(benchMessage); n < 2800 || n > 3300 {
		t.Errorf("benchmark message is %d bytes, want about 3 KB", n)
	}
}

// BenchmarkSign is what Heed pays per recipient: an RSA-2048 and an
// Ed25519 signature of a 3 KB message.
func BenchmarkSign(b *testing.B) {
	keys := signingKeys(b)
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(benchMessage, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignRSA is Sign with the RSA key alone, to compare with
// BenchmarkRSASignRaw without Ed25519's share.
func BenchmarkSignRSA(b *testing.B) {
	keys := signingKeys(b)[1:]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(benchMessage, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignEd25519 is Sign with the Ed25519 key alone.
func BenchmarkSignEd25519(b *testing.B) {
	keys := signingKeys(b)[:1]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(benchMessage, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSASignRaw is the floor: the RSA-2048 operation on a SHA-256
// digest, which no DKIM library can avoid.
func BenchmarkRSASignRaw(b *testing.B) {
	rsaKey, _ := testKeys(b)
	digest := sha256.Sum256(benchMessage)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rsa.SignPKCS1v15(rand.Reader, goRSA(b, rsaKey), crypto.SHA256, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519SignRaw is Ed25519's floor, signing a SHA-256 digest as
// RFC 8463 does.
func BenchmarkEd25519SignRaw(b *testing.B) {
	_, edKey := testKeys(b)
	digest := sha256.Sum256(benchMessage)
	b.ReportAllocs()
	for b.Loop() {
		ed25519.Sign(edKey.(ed25519.PrivateKey), digest[:])
	}
}

// BenchmarkHeaderKeys is the share of Sign that is Heed's own code.
func BenchmarkHeaderKeys(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HeaderKeys(benchMessage); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSASignRawParallel is BenchmarkRSASignRaw on GOMAXPROCS
// goroutines sharing the key, as the queue's workers do.
func BenchmarkRSASignRawParallel(b *testing.B) {
	rsaKey, _ := testKeys(b)
	benchSignParallel(b, goRSA(b, rsaKey))
}

// BenchmarkRSASignDefault is the RSA-2048 operation through the signer
// ParsePEM makes in this build: OpenSSL where cgo is on, crypto/rsa
// otherwise. bench.BenchmarkSigners compares the builds' figures.
func BenchmarkRSASignDefault(b *testing.B) {
	rsaKey, _ := testKeys(b)
	digest := sha256.Sum256(benchMessage)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rsaKey.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSASignDefaultParallel is BenchmarkRSASignDefault on
// GOMAXPROCS goroutines sharing the key.
func BenchmarkRSASignDefaultParallel(b *testing.B) {
	rsaKey, _ := testKeys(b)
	benchSignParallel(b, rsaKey)
}

func benchSignParallel(b *testing.B, s crypto.Signer) {
	digest := sha256.Sum256(benchMessage)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
