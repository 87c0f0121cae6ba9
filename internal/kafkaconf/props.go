package kafkaconf

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Properties are a Java .properties file's keys and values, and the line
// each key was read from (for errors).
type Properties struct {
	File   string
	Values map[string]string
	Lines  map[string]int
}

// ReadProperties reads a Java client properties file: key=value, key:value
// or key value lines, # and ! comments, a trailing backslash continues a
// line, and \t \n \r \f \\ \uXXXX escapes.
func ReadProperties(file string) (*Properties, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return ParseProperties(file, string(raw))
}

// ParseProperties parses the text of a properties file.
func ParseProperties(file, text string) (*Properties, error) {
	p := &Properties{File: file, Values: map[string]string{}, Lines: map[string]int{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		start := n
		line := strings.TrimLeft(sc.Text(), " \t\f")
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		for continues(line) && sc.Scan() {
			n++
			line = line[:len(line)-1] + strings.TrimLeft(sc.Text(), " \t\f")
		}
		if continues(line) {
			line = line[:len(line)-1]
		}
		key, value := splitProperty(line)
		k, err := unescape(key)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", file, start, err)
		}
		v, err := unescape(value)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %v", file, start, k, err)
		}
		p.Values[k] = v
		p.Lines[k] = start
	}
	return p, sc.Err()
}

// continues reports whether a line ends in an odd number of backslashes.
func continues(line string) bool {
	n := 0
	for i := len(line) - 1; i >= 0 && line[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// splitProperty splits at the first unescaped =, : or whitespace.
func splitProperty(line string) (key, value string) {
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case '\\':
			i++
		case '=', ':', ' ', '\t', '\f':
			key, rest := line[:i], strings.TrimLeft(line[i:], " \t\f")
			if c == ' ' || c == '\t' || c == '\f' {
				if rest != "" && (rest[0] == '=' || rest[0] == ':') {
					rest = rest[1:]
				}
			} else {
				rest = rest[1:]
			}
			return key, strings.TrimLeft(rest, " \t\f")
		}
	}
	return line, ""
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf("malformed \\u escape")
			}
			r, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
			if err != nil {
				return "", fmt.Errorf("malformed \\u escape")
			}
			b.WriteRune(rune(r))
			i += 4
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

// JAAS is the login module and options of a sasl.jaas.config value, such
// as org.apache.kafka.common.security.scram.ScramLoginModule required
// username="alice" password="${env:KAFKA_PASSWORD}";
type JAAS struct {
	Module  string // the login module's class name
	Options map[string]string
}

// ParseJAAS parses a sasl.jaas.config value. Errors never quote values.
func ParseJAAS(s string) (JAAS, error) {
	j := JAAS{Options: map[string]string{}}
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(s, ";")
	i := strings.IndexAny(s, " \t\r\n")
	if i < 0 {
		return j, fmt.Errorf("want a login module and a control flag, as %q", "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"...\" password=\"...\";")
	}
	j.Module, s = s[:i], strings.TrimLeft(s[i:], " \t\r\n")
	flag, rest, _ := strings.Cut(s, " ")
	switch strings.TrimSpace(flag) {
	case "required", "requisite", "sufficient", "optional":
	default:
		return j, fmt.Errorf("after the login module %s want a control flag (required), got something else", j.Module)
	}
	s = strings.TrimSpace(rest)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return j, fmt.Errorf("option %d: want name=\"value\"", len(j.Options)+1)
		}
		name := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t\r\n")
		var val string
		if strings.HasPrefix(s, `"`) {
			end := -1
			var b strings.Builder
			for k := 1; k < len(s); k++ {
				if s[k] == '\\' && k+1 < len(s) {
					k++
					b.WriteByte(s[k])
					continue
				}
				if s[k] == '"' {
					end = k
					break
				}
				b.WriteByte(s[k])
			}
			if end < 0 {
				return j, fmt.Errorf("option %s: unterminated quoted value", name)
			}
			val, s = b.String(), s[end+1:]
		} else {
			k := strings.IndexAny(s, " \t\r\n")
			if k < 0 {
				k = len(s)
			}
			val, s = s[:k], s[k:]
		}
		j.Options[name] = val
		s = strings.TrimLeft(s, " \t\r\n")
	}
	return j, nil
}

// moduleBase returns the class name of a login module without its package.
func (j JAAS) moduleBase() string {
	return j.Module[strings.LastIndexByte(j.Module, '.')+1:]
}
