package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// ParseQualifiedName parses "schema.name" with SQL identifier rules: unquoted
// parts are folded to lower case (ASCII only, as PostgreSQL does), double-quoted
// parts keep their case and may contain dots, spaces and "" for a quote. The
// schema is required.
func ParseQualifiedName(s string) (schema, name string, err error) {
	parts, err := parseIdentifiers(s)
	if err != nil {
		return "", "", err
	}
	switch len(parts) {
	case 1:
		return "", "", fmt.Errorf("invalid name %q: no schema (write schema.name, e.g. public.%s)", s, strings.TrimSpace(s))
	case 2:
		return parts[0], parts[1], nil
	}
	return "", "", fmt.Errorf("invalid name %q: too many parts (write schema.name; quote a name that contains a dot)", s)
}

// ParseTableName is ParseQualifiedName with the schema defaulting to "public".
func ParseTableName(s string) (schema, name string, err error) {
	parts, err := parseIdentifiers(s)
	if err != nil {
		return "", "", err
	}
	switch len(parts) {
	case 1:
		return "public", parts[0], nil
	case 2:
		return parts[0], parts[1], nil
	}
	return "", "", fmt.Errorf("invalid name %q: too many parts (write schema.name; quote a name that contains a dot)", s)
}

// parseIdentifiers splits a dotted SQL name into its parts, unquoted and
// case-folded. Whitespace around parts is allowed, as in SQL.
func parseIdentifiers(s string) ([]string, error) {
	bad := func(why string, args ...any) error {
		return fmt.Errorf("invalid name %q: %s", s, fmt.Sprintf(why, args...))
	}
	if strings.IndexByte(s, 0) >= 0 {
		return nil, bad("PostgreSQL names cannot contain a NUL byte")
	}
	var parts []string
	i := skipSpace(s, 0)
	for {
		if i == len(s) || s[i] == '.' {
			return nil, bad("empty part")
		}
		if s[i] == '"' {
			var b strings.Builder
			for i++; ; i++ {
				if i == len(s) {
					return nil, bad("unterminated quoted identifier")
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
			}
			if b.Len() == 0 {
				return nil, bad(`empty quoted identifier ""`)
			}
			parts = append(parts, b.String())
		} else {
			start := i
			for i < len(s) && s[i] != '.' && s[i] != '"' && !isSpace(s[i]) {
				i++
			}
			word := s[start:i]
			if !isUnquotedIdent(word) {
				return nil, bad("%q must be double-quoted (unquoted names are letters, digits, _ and $, not starting with a digit or $)", word)
			}
			parts = append(parts, foldASCII(word))
		}
		i = skipSpace(s, i)
		if i == len(s) {
			return parts, nil
		}
		if s[i] != '.' {
			return nil, bad("unexpected %q after %q (quote names that contain it)", s[i:i+1], s[:i])
		}
		i = skipSpace(s, i+1)
	}
}

// quoteIdent double-quotes a name unless it reads the same unquoted.
func quoteIdent(name string) string {
	if isUnquotedIdent(name) && foldASCII(name) == name {
		return name
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

func isUnquotedIdent(w string) bool {
	for j := 0; j < len(w); j++ {
		c := w[j]
		letter := c == '_' || c >= 0x80 || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		digitOrDollar := ('0' <= c && c <= '9') || c == '$'
		if !letter && (j == 0 || !digitOrDollar) {
			return false
		}
	}
	return w != ""
}

func foldASCII(w string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, w)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

const redacted = "xxxxx"

var (
	urlQueryPassword = regexp.MustCompile(`(?i)([?&][a-z_]*password=)[^&#]*`)
	// Keywords ending in "password" (password, sslpassword), with the value
	// quoted or not; an unterminated quote redacts to the end.
	dsnPassword = regexp.MustCompile(`(?i)((?:^|\s)[a-z_]*password\s*=\s*)('(?:\\.|[^'\\])*'?|\S*)`)
)

// RedactURL hides the passwords in a connection string, URL
// (postgres://user:secret@host → postgres://user:xxxxx@host, also
// ?password=...) or key=value (password=secret → password=xxxxx), so that it
// can be logged. It errs on hiding too much when the string is malformed.
func RedactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		return urlQueryPassword.ReplaceAllString(redactUserinfo(s, i+len("://")), "${1}"+redacted)
	}
	return dsnPassword.ReplaceAllString(s, "${1}"+redacted)
}

func redactUserinfo(s string, start int) string {
	rest := s[start:]
	end := strings.IndexAny(rest, "?#")
	if end < 0 {
		end = len(rest)
	}
	// The last '@' rather than the first one before a '/': a password may
	// hold an unencoded '/' or '@', and hiding the host of a rare database
	// name containing '@' is the better mistake.
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		// An unencoded ? or # in the password ends auth early.
		at = strings.LastIndexByte(rest, '@')
	}
	if at < 0 {
		return s
	}
	colon := strings.IndexByte(rest[:at], ':')
	if colon < 0 || colon+1 == at {
		return s
	}
	return s[:start+colon+1] + redacted + s[start+at:]
}

// checkDatabaseURL accepts what pgx accepts: a postgres:// or postgresql://
// URL, or libpq key=value pairs. No message quotes the string unredacted.
func checkDatabaseURL(s string) error {
	if i := strings.Index(s, "://"); i >= 0 {
		scheme := strings.ToLower(s[:i])
		if scheme != "postgres" && scheme != "postgresql" {
			return fmt.Errorf("unsupported scheme %q (use a postgres:// or postgresql:// URL, or key=value pairs such as \"host=db dbname=app\")", s[:i])
		}
		if _, err := url.Parse(s); err != nil {
			// url.Error repeats the whole URL, and its detail can quote part
			// of the password: describe the redacted form instead.
			r := RedactURL(s)
			if _, rerr := url.Parse(r); rerr != nil {
				var ue *url.Error
				if errors.As(rerr, &ue) {
					rerr = ue.Err
				}
				return fmt.Errorf("invalid URL %q: %v", r, rerr)
			}
			return fmt.Errorf("invalid URL %q: the password must be percent-encoded", r)
		}
		return nil
	}
	return checkDSN(s)
}

// checkDSN follows libpq's conninfo_parse: key = value pairs separated by
// whitespace, values optionally single-quoted with backslash escapes.
func checkDSN(s string) error {
	const notConn = "not a postgres:// URL or a key=value connection string"
	i, pairs := skipSpace(s, 0), 0
	for i < len(s) {
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		i = skipSpace(s, i)
		if key == "" || i == len(s) || s[i] != '=' {
			// Without the "=", this word could be anything, even a password.
			return errors.New(notConn)
		}
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == '\'' {
			for i++; ; i++ {
				if i >= len(s) {
					return fmt.Errorf("unterminated quoted value for %q", key)
				}
				if s[i] == '\\' {
					i++
				} else if s[i] == '\'' {
					i++
					break
				}
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
		}
		pairs++
		i = skipSpace(s, i)
	}
	if pairs == 0 {
		return errors.New(notConn)
	}
	return nil
}
