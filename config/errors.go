package config

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors, reported through (*Error).Unwrap so that callers can use
// errors.Is on any error this package returns.
var (
	// ErrEmpty: the file holds no YAML document, or only a null one.
	ErrEmpty = errors.New("empty file")
	// ErrTooLarge: the file is larger than MaxFileSize.
	ErrTooLarge = errors.New("file too large")
	// ErrSyntax: the file is not well-formed YAML.
	ErrSyntax = errors.New("yaml syntax error")
	// ErrUnknownKey: a mapping holds a key the schema does not know.
	ErrUnknownKey = errors.New("unknown key")
	// ErrDuplicateKey: a mapping holds the same key twice.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrType: a value has the wrong YAML type or cannot be read as the
	// field's type (a string where an integer belongs, a bad duration).
	ErrType = errors.New("wrong type")
	// ErrInvalid: a value is well-typed but breaks a rule (out of range,
	// missing, conflicting with another field).
	ErrInvalid = errors.New("invalid value")
)

// MaxFileSize is the largest node config or plan file accepted, in bytes.
const MaxFileSize = 1 << 20

// Error is a problem found in a config or plan: where it is and what is
// wrong. Error() renders it as one line: "FILE:LINE: FIELD: MSG", leaving out
// the parts that are unknown.
type Error struct {
	File  string // file name as given to the Parse/Load function; "" from Validate
	Line  int    // 1-based line in File; 0 when unknown
	Field string // dotted path such as "ports.api" or "health[1].tcp"; "" for the whole file
	Msg   string // what is expected, and what was found
	Err   error  // one of the sentinel errors above

	// related names a field whose line is shown when Field itself is not in
	// the file (a required key that is missing is reported at the line of
	// the key that requires it).
	related string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	// One line, always: messages quote untrusted text with %q, but the YAML
	// library's own messages are not under our control.
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, b.String())
}

// Unwrap returns the sentinel that classifies the error.
func (e *Error) Unwrap() error { return e.Err }

// invalid returns an ErrInvalid error for field.
func invalid(field, msg string) *Error {
	return &Error{Field: field, Msg: msg, Err: ErrInvalid}
}

// invalidNear is invalid for a field that may be absent from the file; the
// error is then placed at the line of related.
func invalidNear(field, related, msg string) *Error {
	return &Error{Field: field, Msg: msg, Err: ErrInvalid, related: related}
}
