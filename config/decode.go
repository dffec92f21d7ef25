package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree against the schema. It stops at the first
// error and remembers, for every field it saw, the line of its key, so that
// errors found later by Validate can be placed in the file.
type decoder struct {
	file  string
	lines map[string]int
	// schema, when set, is told the keys of every mapping the decoder
	// walks, present or not: the documentation test reads the schema from
	// the decode tables themselves through it.
	schema func(path string, keys []string)
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, lines: make(map[string]int)}
}

// field is one key of a mapping and how to decode its value.
type field struct {
	key    string
	decode func(d *decoder, path string, v *yaml.Node) error
}

// maxAliasDepth bounds alias chains; yaml.v3 refuses cycles, this is a
// second guard that costs nothing.
const maxAliasDepth = 32

// parse reads the single YAML document in data and returns its root mapping.
func (d *decoder) parse(data []byte) (root *yaml.Node, err error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: d.file, Msg: fmt.Sprintf("file is %d bytes; limit %d", len(data), MaxFileSize), Err: ErrTooLarge}
	}
	// The YAML library reports its errors by panicking internally and
	// recovering at its API. Should any other panic escape it on input we
	// did not write, it becomes a syntax error here rather than a crash of
	// lpd or lpctl (the idea of cilium/ebpf's NewSafeELFFile).
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, &Error{File: d.file, Msg: fmt.Sprintf("yaml parser failed: %v", r), Err: ErrSyntax}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: d.file, Line: 1, Msg: "empty file; want a mapping of settings", Err: ErrEmpty}
		}
		return nil, d.syntaxError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, d.syntaxError(err)
	default:
		return nil, &Error{File: d.file, Line: extra.Line, Msg: "more than one YAML document; want one", Err: ErrSyntax}
	}
	root = &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, &Error{File: d.file, Line: 1, Msg: "empty file; want a mapping of settings", Err: ErrEmpty}
		}
		root = root.Content[0]
	}
	root, err = d.resolve("", root)
	if err != nil {
		return nil, err
	}
	if isNull(root) {
		return nil, &Error{File: d.file, Line: max(root.Line, 1), Msg: "empty file; want a mapping of settings", Err: ErrEmpty}
	}
	if root.Kind != yaml.MappingNode {
		return nil, d.typeError("", root, "a mapping of settings")
	}
	return root, nil
}

// syntaxError turns a yaml.v3 error ("yaml: line 3: did not find expected
// key") into an *Error at that line.
func (d *decoder) syntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, after
			}
		}
	}
	return &Error{File: d.file, Line: line, Msg: msg, Err: ErrSyntax}
}

// resolve follows aliases to the node they name.
func (d *decoder) resolve(path string, n *yaml.Node) (*yaml.Node, error) {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == maxAliasDepth || n.Alias == nil {
			return nil, &Error{File: d.file, Line: n.Line, Field: path, Msg: "alias cannot be resolved", Err: ErrSyntax}
		}
		n = n.Alias
	}
	if n == nil {
		return nil, &Error{File: d.file, Field: path, Msg: "missing value", Err: ErrSyntax}
	}
	return n, nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// typeError says what a field wants and what it got.
func (d *decoder) typeError(path string, n *yaml.Node, want string) *Error {
	return &Error{File: d.file, Line: n.Line, Field: path, Msg: fmt.Sprintf("want %s, got %s", want, describe(n)), Err: ErrType}
}

// describe renders a node for an error message, short and on one line.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
	default:
		return "nothing"
	}
	v := truncate(n.Value, 40)
	if len(v) < len(n.Value) {
		v += "..."
	}
	switch tag := n.ShortTag(); tag {
	case "!!str":
		return strconv.Quote(v)
	case "!!int", "!!float", "!!bool", "!!null":
		if printable(v) && !strings.ContainsAny(v, " \t") {
			return v
		}
		return strconv.Quote(v)
	default:
		return truncate(strconv.Quote(tag), 20) + " " + strconv.Quote(v)
	}
}

// mapping decodes the mapping n at path with fields. Keys must be unique
// scalars among fields; a null n is an empty mapping.
func (d *decoder) mapping(path string, n *yaml.Node, fields []field) error {
	if d.schema != nil {
		keys := make([]string, len(fields))
		for i, f := range fields {
			keys[i] = f.key
		}
		d.schema(path, keys)
	}
	return d.eachPair(path, n, func(key string, keyNode, v *yaml.Node) error {
		for _, f := range fields {
			if f.key == key {
				return f.decode(d, joinPath(path, key), v)
			}
		}
		keys := make([]string, len(fields))
		for i, f := range fields {
			keys[i] = f.key
		}
		msg := fmt.Sprintf("unknown key %s", strconv.Quote(truncate(key, 40)))
		if s := suggest(key, keys); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return &Error{File: d.file, Line: keyNode.Line, Field: path, Msg: msg, Err: ErrUnknownKey}
	})
}

// eachPair calls fn for every key/value of the mapping n, refusing
// non-scalar keys, merge keys and duplicates, and recording the line of
// every key.
func (d *decoder) eachPair(path string, n *yaml.Node, fn func(key string, keyNode, v *yaml.Node) error) error {
	n, err := d.resolve(path, n)
	if err != nil {
		return err
	}
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return d.typeError(path, n, "a mapping")
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := d.resolve(path, n.Content[i])
		if err != nil {
			return err
		}
		if k.Kind != yaml.ScalarNode {
			return &Error{File: d.file, Line: k.Line, Field: path, Msg: fmt.Sprintf("want a key name, got %s", describe(k)), Err: ErrType}
		}
		if k.ShortTag() == "!!merge" {
			return &Error{File: d.file, Line: k.Line, Field: path, Msg: "merge keys (<<) are not supported; write the keys out", Err: ErrUnknownKey}
		}
		key := k.Value
		if first, dup := seen[key]; dup {
			return &Error{File: d.file, Line: k.Line, Field: path, Msg: fmt.Sprintf("duplicate key %s (first at line %d)", strconv.Quote(truncate(key, 40)), first), Err: ErrDuplicateKey}
		}
		seen[key] = k.Line
		d.lines[joinPath(path, key)] = k.Line
		if err := fn(key, k, n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// sequence calls fn for every element of the list n at path; a null n is an
// empty list.
func (d *decoder) sequence(path string, n *yaml.Node, want string, fn func(path string, v *yaml.Node) error) error {
	n, err := d.resolve(path, n)
	if err != nil {
		return err
	}
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return d.typeError(path, n, want)
	}
	for i, e := range n.Content {
		p := path + "[" + strconv.Itoa(i) + "]"
		d.lines[p] = e.Line
		if err := fn(p, e); err != nil {
			return err
		}
	}
	return nil
}

// scalar resolves n and returns it when it is a scalar other than null;
// ok is false for null (the field keeps its default).
func (d *decoder) scalar(path string, n *yaml.Node, want string) (v *yaml.Node, ok bool, err error) {
	n, err = d.resolve(path, n)
	if err != nil {
		return nil, false, err
	}
	if isNull(n) {
		return nil, false, nil
	}
	if n.Kind != yaml.ScalarNode {
		return nil, false, d.typeError(path, n, want)
	}
	return n, true, nil
}

func (d *decoder) stringValue(path string, n *yaml.Node, want string) (string, bool, error) {
	v, ok, err := d.scalar(path, n, want)
	if !ok || err != nil {
		return "", ok, err
	}
	switch v.ShortTag() {
	case "!!str", "!!int", "!!float":
		// A name such as 1 or 1.5 is a name; it is kept as written.
		return v.Value, true, nil
	}
	return "", false, d.typeError(path, v, want)
}

// str decodes a string field.
func str(dst *string, want string) func(*decoder, string, *yaml.Node) error {
	return func(d *decoder, path string, n *yaml.Node) error {
		s, ok, err := d.stringValue(path, n, want)
		if ok {
			*dst = s
		}
		return err
	}
}

// strList decodes a list of strings.
func strList(dst *[]string, want, elem string) func(*decoder, string, *yaml.Node) error {
	return func(d *decoder, path string, n *yaml.Node) error {
		var out []string
		err := d.sequence(path, n, want, func(p string, e *yaml.Node) error {
			s, ok, err := d.stringValue(p, e, elem)
			if err != nil {
				return err
			}
			if !ok {
				return d.typeError(p, e, elem)
			}
			out = append(out, s)
			return nil
		})
		if err == nil && out != nil {
			*dst = out
		}
		return err
	}
}

// boolean decodes true or false.
func boolean(dst *bool) func(*decoder, string, *yaml.Node) error {
	return func(d *decoder, path string, n *yaml.Node) error {
		v, ok, err := d.scalar(path, n, "true or false")
		if !ok || err != nil {
			return err
		}
		if v.ShortTag() == "!!bool" {
			switch strings.ToLower(v.Value) {
			case "true":
				*dst = true
				return nil
			case "false":
				*dst = false
				return nil
			}
		}
		return d.typeError(path, v, "true or false")
	}
}

// integer decodes a decimal integer; want describes the range for the error
// message ("an integer 1-65535"). Ranges are enforced by Validate.
func integer(dst *int, want string) func(*decoder, string, *yaml.Node) error {
	return func(d *decoder, path string, n *yaml.Node) error {
		v, ok, err := d.scalar(path, n, want)
		if !ok || err != nil {
			return err
		}
		if v.ShortTag() == "!!int" {
			// Decimal only: YAML would also read 0x1F and 0777 (as octal),
			// which nobody means in a port or a count.
			if i, err := strconv.Atoi(v.Value); err == nil {
				*dst = i
				return nil
			}
		}
		return d.typeError(path, v, want)
	}
}

// duration decodes a Go duration string ("2s", "500ms").
func duration(dst *time.Duration) func(*decoder, string, *yaml.Node) error {
	return func(d *decoder, path string, n *yaml.Node) error {
		const want = `a duration like "2s" or "500ms"`
		v, ok, err := d.scalar(path, n, want)
		if !ok || err != nil {
			return err
		}
		if v.ShortTag() == "!!str" {
			if t, err := time.ParseDuration(v.Value); err == nil {
				*dst = t
				return nil
			}
		}
		return d.typeError(path, v, want)
	}
}

// checkFields is the schema of one health check.
func checkFields(c *Check) []field {
	return []field{
		{"name", str(&c.Name, "a name")},
		{"exec", str(&c.Exec, "a shell command")},
		{"tcp", str(&c.TCP, "host:port")},
		{"http", str(&c.HTTP, "a URL")},
		{"process", str(&c.Process, "a target name")},
		{"interval", duration(&c.Interval)},
		{"timeout", duration(&c.Timeout)},
		{"failures", integer(&c.Failures, "an integer >= 1")},
		{"successes", integer(&c.Successes, "an integer >= 1")},
	}
}

// checks decodes a list of health checks, each starting from DefaultCheck
// and named by DerivedName when it has no name.
func checks(dst *[]Check) func(*decoder, string, *yaml.Node) error {
	return func(d *decoder, path string, n *yaml.Node) error {
		var out []Check
		err := d.sequence(path, n, "a list of checks", func(p string, e *yaml.Node) error {
			e, err := d.resolve(p, e)
			if err != nil {
				return err
			}
			if e.Kind != yaml.MappingNode {
				return d.typeError(p, e, "a check (a mapping with one of exec, tcp, http, process)")
			}
			c := DefaultCheck()
			if err := d.mapping(p, e, checkFields(&c)); err != nil {
				return err
			}
			if c.Name == "" {
				c.Name = c.DerivedName()
			}
			out = append(out, c)
			return nil
		})
		if err == nil && out != nil {
			*dst = out
		}
		return err
	}
}

// joinPath appends key to a dotted field path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// locate places a Validate error in the file: the line of its field, or of
// its related field, or of the nearest enclosing field that is present.
func (d *decoder) locate(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return &Error{File: d.file, Msg: err.Error(), Err: err}
	}
	out := *e
	out.File = d.file
	for _, p := range []string{e.Field, e.related} {
		for p != "" {
			if line, ok := d.lines[p]; ok {
				out.Line = line
				return &out
			}
			p = parentPath(p)
		}
	}
	out.Line = 1
	return &out
}

// parentPath strips the last ".key" or "[i]" from a field path.
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// suggest returns the candidate closest to key when it is close enough to
// be a typo, or that key abbreviates ("pid" for "pidfile"), else "".
func suggest(key string, candidates []string) string {
	if len(key) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(c, strings.ToLower(key)) {
				return c
			}
		}
	}
	best, bestDist := "", len(key)/3+1 // allow about one edit in three characters
	if bestDist > 3 {
		bestDist = 3
	}
	for _, c := range candidates {
		if dist := editDistance(strings.ToLower(key), c); dist <= bestDist && (best == "" || dist < bestDist) {
			best, bestDist = c, dist
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (optimal string
// alignment: insertions, deletions, substitutions, adjacent swaps).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo of any key we know; keeps the cost bounded
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
