package serde

import (
	"encoding/binary"
	"math/bits"
)

// The validating scanner of DecodeProjected. It checks JSON's grammar as
// encoding/json and goccy/go-json do (RFC 8259 values; bytes that are not
// valid UTF-8 are accepted inside strings; at most maxDepth nested objects
// and arrays) while it finds where each value ends, so that a projected
// decode reads the document once instead of validating it whole and then
// walking it again. Every function returns the index after what it
// scanned, or -1 if the text is not valid there. FuzzProjected holds it to
// rejecting exactly what Decode rejects.

// maxDepth is the most objects and arrays nested in one another that
// Decode accepts (encoding/json's limit, which goccy/go-json keeps).
const maxDepth = 10000

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// stringSpecial has the high bit set in the byte of x that is the first
// quote, backslash or control character (< 0x20) of x's eight bytes, read
// little-endian, and possibly in bytes after it (a borrow may carry into
// them), never before it. Bytes at or above 0x80 are never special.
func stringSpecial(x uint64) uint64 {
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	return ((x-ones*0x20) & ^x |
		(quote-ones) & ^quote |
		(backslash-ones) & ^backslash) & highs
}

// scanString scans the string whose quote is at b[i]. escaped reports
// whether it holds an escape.
func scanString(b []byte, i int) (end int, escaped bool) {
	j := i + 1
	for {
		for j+8 <= len(b) {
			if s := stringSpecial(binary.LittleEndian.Uint64(b[j:])); s != 0 {
				j += bits.TrailingZeros64(s) / 8
				break
			}
			j += 8
		}
		for j < len(b) && b[j] != '"' && b[j] != '\\' && b[j] >= 0x20 {
			j++
		}
		if j >= len(b) {
			return -1, escaped
		}
		switch b[j] {
		case '"':
			return j + 1, escaped
		case '\\':
			escaped = true
			if j+1 >= len(b) {
				return -1, escaped
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(b) {
					return -1, escaped
				}
				for _, h := range b[j+2 : j+6] {
					if !isHex(h) {
						return -1, escaped
					}
				}
				j += 6
			default:
				return -1, escaped
			}
		default: // a control character
			return -1, escaped
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// scanValue scans the value that starts at b[i] (after any space), inside
// depth open objects and arrays.
func scanValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		return end
	case '{':
		return scanObject(b, i, depth+1)
	case '[':
		return scanArray(b, i, depth+1)
	case 't':
		return scanLiteral(b, i, "true")
	case 'f':
		return scanLiteral(b, i, "false")
	case 'n':
		return scanLiteral(b, i, "null")
	}
	return scanNumber(b, i)
}

func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// scanNumber scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func scanNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// scanObject scans the object whose brace is at b[i], the depth-th
// container open.
func scanObject(b []byte, i, depth int) int {
	if depth > maxDepth {
		return -1
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
		return i + 1
	}
	for more := true; more; {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		if i, _ = scanString(b, i); i < 0 {
			return -1
		}
		if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
			return -1
		}
		if i = scanValue(b, skipSpace(b, i+1), depth); i < 0 {
			return -1
		}
		if i, more = scanNext(b, i, '}'); i < 0 {
			return -1
		}
	}
	return i
}

// scanArray scans the array whose bracket is at b[i], the depth-th
// container open.
func scanArray(b []byte, i, depth int) int {
	if depth > maxDepth {
		return -1
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == ']' {
		return i + 1
	}
	for more := true; more; {
		if i = scanValue(b, i, depth); i < 0 {
			return -1
		}
		if i, more = scanNext(b, i, ']'); i < 0 {
			return -1
		}
	}
	return i
}

// scanNext scans what follows a member or an element ending before b[i]:
// a comma, after which more follow (next is past the comma and its
// space), or end, the container's closing character (next is past it).
func scanNext(b []byte, i int, end byte) (next int, more bool) {
	if i = skipSpace(b, i); i >= len(b) {
		return -1, false
	}
	switch b[i] {
	case ',':
		return skipSpace(b, i+1), true
	case end:
		return i + 1, false
	}
	return -1, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
