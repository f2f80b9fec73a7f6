// Package compose renders the stored copy of a message for one recipient.
//
// Heed stores one copy of each message, as the app submitted it, and
// composes each recipient's copy from it when a delivery attempt starts.
// Composition is per recipient because the unsubscribe link is: its token
// names the tenant, the list and the address. It happens at delivery time,
// not at acceptance, so a copy always carries the tenant's current postal
// address and list name, and a retry composes afresh. The price is that
// Render runs once per recipient and attempt (about 1,000 times a second),
// so the common case, transactional mail that needs no body change, is a
// header rewrite over bytes that are never decoded.
//
// Render does, in order:
//
//   - Removes the header fields Heed owns, whatever the list kind: X-Heed-*,
//     List-Unsubscribe, List-Unsubscribe-Post, List-Id, Feedback-ID and
//     DKIM-Signature (compliance.md, "DKIM"): a list header or signature the
//     app wrote would contradict Heed's own.
//   - On list mail (Input.Kind set), adds List-Id (RFC 2919) and Feedback-ID
//     (Gmail's feedback loop, "list:tenant:kind:heed"); when the list offers
//     an opt-out, List-Unsubscribe (RFC 2369) and, when it names an HTTPS
//     URI, List-Unsubscribe-Post (RFC 8058 one-click).
//   - Replaces the placeholders {{heed_unsubscribe_url}} and
//     {{heed_postal_address}} in every text/plain and text/html body part
//     that is not an attachment, searching the decoded text (RFC 2045
//     transfer encodings, RFC 2046 multipart, any charset go-message knows).
//     In HTML the values are escaped.
//   - On marketing mail, adds a footer to the displayed text when it lacks
//     a placeholder, carrying what it lacks: the opt-out link, the postal
//     address, or both (CAN-SPAM, 15 U.S.C. 7704(a)(3) and (a)(5)). In a
//     multipart/mixed (or related, or any multipart but alternative) that
//     is the first part holding text: the text parts after it are inline
//     snippets shown below it. Each view of a multipart/alternative must
//     comply by itself, since a reader sees only one. Transactional mail
//     never gets a footer.
//   - Adds the Date and Message-ID fields RFC 5322 section 3.6 requires when
//     the app left them out, and the trace field (RFC 5321 section 4.4) at
//     the top.
//   - Signs: Input.Signer sees the finished message and its DKIM-Signature
//     fields are put on top.
//
// # Bytes are kept where nothing changes
//
// Header fields Heed does not touch keep their raw bytes, folding included.
// A body part that does not change keeps its raw bytes: parts are located
// by offset in the stored body and changed ones are spliced in, so a
// multipart's preamble, epilogue, boundaries and untouched siblings are
// the app's own bytes. A body with no change is written as it came.
//
// A changed part is decoded (transfer encoding, then charset) and written
// back as UTF-8 (RFC 2045-2047): base64 stays base64, quoted-printable stays
// quoted-printable, and 7bit, 8bit and binary stay as they are while the
// result is 7-bit clean with lines of at most 998 octets, and become
// quoted-printable otherwise; but quoted-printable longer than base64
// (text mostly outside ASCII) is written as base64. If a re-encoded part
// would contain a line that reads as one of its enclosing multiparts'
// boundaries (text decoded from base64 may hold one), it is written as
// base64 too. An HTML part whose charset so changes gets utf-8 in the
// <meta> tag that names its charset, if one does in its first 1,024 bytes.
// When a change makes a message MIME, MIME-Version is added.
//
// # Mail that cannot be composed
//
// Marketing mail whose MIME structure cannot be read, whose text parts use
// an unknown transfer encoding or charset, or which has no text/plain or
// text/html part to carry the opt-out (a body that is signed or encrypted
// as a whole cannot be changed) fails with an error wrapping ErrMalformed:
// it can never be sent as CAN-SPAM wants it, so the queue bounces it.
// Check finds the same problems at acceptance time, so the app hears of
// them in the SMTP reply rather than in a bounce. Transactional mail is
// never refused for its body: a part Heed cannot read is sent as it came.
// A header that cannot be parsed is ErrMalformed for every kind.
//
// # Limits
//
// Composition runs for every recipient and attempt, so what one message
// can make it do is bounded. Mail with more than 1,000 body parts (at any
// depth, multiparts included), multiparts nested more than 32 deep, more
// than 50 text/plain or text/html parts or more than 100 placeholders is
// treated as mail whose structure cannot be read: marketing mail is
// ErrMalformed, in Check as in Render, and transactional mail is sent as it
// came. Within them a composed body is at most the stored one plus 64 KiB,
// plus four times the size of each part rewritten (re-encoding: UTF-8 text
// grows by a third at most as base64, text in a single-byte charset up to
// fourfold), plus three footers for each part rewritten and each
// placeholder filled. Composition cannot exceed that; Render checks it all
// the same and refuses, as ErrMalformed, what would.
package compose
