package smtpd

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// bareByByte is the byte-by-byte definition of what countBare counts,
// applied to chunks in order: CRs not followed by LF and LFs not preceded
// by CR (a CR at the very end waits for a next byte that never comes).
func bareByByte(chunks [][]byte) int64 {
	var n int64
	prevCR := false
	for _, p := range chunks {
		for _, b := range p {
			if prevCR && b != '\n' || !prevCR && b == '\n' {
				n++
			}
			prevCR = b == '\r'
		}
	}
	return n
}

// firstFault is the byte-by-byte definition of where contentReader stops
// a whole stream: the first NUL, bare CR or bare LF, or a CR ending it.
func firstFault(d []byte) (int, error) {
	prevCR := false
	for i, b := range d {
		switch {
		case b == 0:
			return i, errNUL
		case prevCR && b != '\n', !prevCR && b == '\n':
			return i, errBareNewline
		}
		prevCR = b == '\r'
	}
	if prevCR {
		return len(d), errBareNewline
	}
	return len(d), nil
}

// split cuts data into chunks of the given sizes (cycled, each from two
// bytes: up to 64 KiB, like the real 4 and 32 KiB reads and smaller).
func split(data, sizes []byte) [][]byte {
	var out [][]byte
	for i := 0; len(data) > 0; i++ {
		n := 1
		if len(sizes) >= 2 {
			j := 2 * i % (len(sizes) - len(sizes)%2)
			n = int(sizes[j])<<8 | int(sizes[j+1]) + 1
		} else if len(sizes) == 1 {
			n = int(sizes[0]) + 1
		}
		n = min(n, len(data))
		out, data = append(out, data[:n]), data[n:]
	}
	return out
}

func TestCountBare(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"a\r\nb\r\n", 0},
		{"a\nb", 1},
		{"a\rb", 1},
		{"\r\r\n", 1},
		{"\n\n", 2},
		{"a\r", 0}, // pending
		{"", 0},
	} {
		if got := countBare([]byte(tc.in), false); got != tc.want {
			t.Errorf("countBare(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	// A pair split between two reads is no bare line break; a CR followed
	// by anything else in the next read is one.
	if got := countBare([]byte("\nx"), true); got != 0 {
		t.Errorf("CR | LF counted %d", got)
	}
	if got := countBare([]byte("x"), true); got != 1 {
		t.Errorf("CR | x counted %d", got)
	}
}

// FuzzBareScan holds the vectorised checks (the raw watch's countBare and
// the DATA stream's contentReader) to their byte-by-byte definitions, over
// any split of the input into reads.
func FuzzBareScan(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n.\r\n"), []byte{3, 7})
	f.Add([]byte("a\r\r\nb\nc\rd\x00e\r"), []byte{1})
	f.Add([]byte("\r"), []byte{})
	f.Add([]byte("a\x00b\r\n"), []byte{0, 63})
	f.Add([]byte("x\r\ny\r"), []byte{0, 2, 1})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		chunks := split(data, sizes)
		c := &conn{}
		for _, p := range chunks {
			c.scan(p)
		}
		if got, want := c.bareCount(), bareByByte(chunks); got != want {
			t.Fatalf("raw watch counted %d bare line breaks, byte by byte %d", got, want)
		}

		// contentReader must stop at the same byte with the same error as
		// the byte-by-byte definition over the whole stream, whether the
		// last read brings io.EOF with its data or after it.
		wantN, wantErr := firstFault(data)
		cr := &chunkReader{chunks: chunks, eofWithData: len(sizes)%2 == 1}
		got, err := io.ReadAll(&contentReader{r: cr})
		if !errors.Is(err, wantErr) || wantErr != nil && len(got) != wantN || wantErr == nil && !bytes.Equal(got, data) {
			t.Fatalf("contentReader passed %d bytes then %v; byte by byte: %d then %v", len(got), err, wantN, wantErr)
		}
	})
}

// chunkReader returns its chunks one Read at a time; with eofWithData the
// read that returns the last bytes returns io.EOF too.
type chunkReader struct {
	chunks      [][]byte
	eofWithData bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	if c.eofWithData && len(c.chunks) == 0 {
		return n, io.EOF
	}
	return n, nil
}
