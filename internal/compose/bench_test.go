package compose

import (
	"bytes"
	"strings"
	"testing"
)

// BenchmarkRender renders one copy: the common transactional message
// (plain text, about 3 KB, no placeholder: a header rewrite), a marketing
// message that needs a footer, and a marketing multipart/alternative with
// a placeholder in each view.
func BenchmarkRender(b *testing.B) {
	para := "Thank you for your order. Your parcel leaves our warehouse today and should reach you within three working days.\r\n"
	head := "From: Acme <shop@acme.test>\r\nTo: pat@example.net\r\nSubject: Your order 1234\r\n" +
		"Date: Mon, 23 Nov 2026 08:00:00 +0000\r\nMessage-ID: <1234@acme.test>\r\nMIME-Version: 1.0\r\n"
	plain := head + "X-Heed-List: receipts\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat(para, 27)
	footer := head + "X-Heed-List: news\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat(para, 27)
	alt := head + "X-Heed-List: news\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
		"--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		strings.Repeat(para, 12) + "Unsubscribe: {{heed_unsubscribe_url}}\r\n{{heed_postal_address}}\r\n" +
		"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		"<html><body>" + strings.Repeat("<p>"+para+"</p>", 12) +
		"<p><a href=3D\"{{heed_unsubscribe_url}}\">Unsubscribe</a> {{heed_postal_address}}</p></body></html>\r\n--alt--\r\n"
	for _, c := range []struct{ name, msg, list string }{
		{"transactional-3KB", plain, "receipts"},
		{"marketing-footer", footer, "news"},
		{"marketing-alternative", alt, "news"},
	} {
		b.Run(c.name, func(b *testing.B) {
			msg, in := []byte(c.msg), input(c.list)
			var out bytes.Buffer
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				out.Reset()
				if err := Render(&out, msg, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	msg := []byte("From: a@acme.test\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		strings.Repeat("Thank you for your order.\r\n", 120))
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(msg); err != nil {
			b.Fatal(err)
		}
	}
}
