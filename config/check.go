package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Check is one health check: exactly one of Exec, TCP, HTTP or Process.
//
//   - Exec runs through `sh -c`; exit status 0 is healthy.
//   - TCP connects to host:port.
//   - HTTP sends GET to an http:// or https:// URL; a 2xx answer is healthy.
//   - Process names a key of the node's targets: healthy while that process,
//     the same one, still runs.
//
// A check turns unhealthy after Failures consecutive failures and healthy
// again after Successes consecutive successes.
type Check struct {
	Name      string        // unique within its list; defaults to DerivedName()
	Exec      string        // shell command
	TCP       string        // host:port
	HTTP      string        // URL
	Process   string        // target name
	Interval  time.Duration // between two runs; default 1s
	Timeout   time.Duration // for one run; default 1s
	Failures  int           // consecutive failures before unhealthy; default 3
	Successes int           // consecutive successes before healthy again; default 2
}

// Limits on checks.
const (
	// MinCheckInterval keeps a mistyped interval ("1ms") from turning a
	// check into a busy loop on a node that carries live traffic.
	MinCheckInterval = 10 * time.Millisecond
	maxCheckNameLen  = 128
)

// DefaultCheck returns a Check with every default filled and no kind set.
func DefaultCheck() Check {
	return Check{
		Interval:  time.Second,
		Timeout:   time.Second,
		Failures:  3,
		Successes: 2,
	}
}

// Kind returns the kind of the check ("exec", "tcp", "http" or "process"),
// or "" when none or more than one is set.
func (c *Check) Kind() string {
	kinds := c.kinds()
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

func (c *Check) kinds() []string {
	var k []string
	if c.Exec != "" {
		k = append(k, "exec")
	}
	if c.TCP != "" {
		k = append(k, "tcp")
	}
	if c.HTTP != "" {
		k = append(k, "http")
	}
	if c.Process != "" {
		k = append(k, "process")
	}
	return k
}

// DerivedName is the name a check gets when it is given none: its kind and
// what it checks, "tcp:127.0.0.1:5060", "process:sipd",
// "http:http://127.0.0.1/health", "exec:/usr/local/bin/check-sip" (the
// command is cut to keep names short).
func (c *Check) DerivedName() string {
	switch c.Kind() {
	case "exec":
		return "exec:" + truncate(c.Exec, maxCheckNameLen-len("exec:"))
	case "tcp":
		return "tcp:" + c.TCP
	case "http":
		return "http:" + truncate(c.HTTP, maxCheckNameLen-len("http:"))
	case "process":
		return "process:" + c.Process
	}
	return ""
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// effectiveName is Name, or DerivedName when Name is empty.
func (c *Check) effectiveName() string {
	if c.Name != "" {
		return c.Name
	}
	return c.DerivedName()
}

// validate checks one check; field is its path ("health[2]"). targets, when
// not nil, are the names a process check may use.
func (c *Check) validate(field string, targets map[string]Target) error {
	switch kinds := c.kinds(); len(kinds) {
	case 0:
		return invalid(field, "want exactly one of exec, tcp, http, process; got none")
	case 1:
	default:
		return invalid(field, fmt.Sprintf("want exactly one of exec, tcp, http, process; got %s", strings.Join(kinds, " and ")))
	}
	switch {
	case c.Exec != "":
		if strings.TrimSpace(c.Exec) == "" {
			return invalid(field+".exec", "want a shell command, got only spaces")
		}
	case c.TCP != "":
		if err := checkHostPort(c.TCP); err != nil {
			return invalid(field+".tcp", fmt.Sprintf("want host:port, got %q: %v", c.TCP, err))
		}
	case c.HTTP != "":
		u, err := url.Parse(c.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid(field+".http", fmt.Sprintf("want an http:// or https:// URL with a host, got %q", c.HTTP))
		}
	case c.Process != "":
		if !validID(c.Process) {
			return invalid(field+".process", fmt.Sprintf("%q is not a target name; %s", c.Process, idRule))
		}
		if targets != nil {
			if _, ok := targets[c.Process]; !ok {
				return invalid(field+".process", fmt.Sprintf("%q is not a key of targets (have: %s)", c.Process, targetNames(targets)))
			}
		}
	}
	if name := c.effectiveName(); len(name) > maxCheckNameLen || !printable(name) {
		return invalid(field+".name", fmt.Sprintf("want at most %d printable characters, got %q", maxCheckNameLen, truncate(name, 40)))
	}
	if c.Interval < MinCheckInterval {
		return invalid(field+".interval", fmt.Sprintf("%v below minimum %v", c.Interval, MinCheckInterval))
	}
	if c.Timeout <= 0 {
		return invalid(field+".timeout", fmt.Sprintf("%v must be positive", c.Timeout))
	}
	if c.Failures < 1 {
		return invalid(field+".failures", fmt.Sprintf("%d below minimum 1", c.Failures))
	}
	if c.Successes < 1 {
		return invalid(field+".successes", fmt.Sprintf("%d below minimum 1", c.Successes))
	}
	return nil
}

// validateChecks validates a list of checks at field ("health") and that
// their names are unique.
func validateChecks(field string, checks []Check, targets map[string]Target) error {
	seen := make(map[string]int, len(checks))
	for i := range checks {
		f := field + "[" + strconv.Itoa(i) + "]"
		if err := checks[i].validate(f, targets); err != nil {
			return err
		}
		name := checks[i].effectiveName()
		if j, dup := seen[name]; dup {
			return invalidNear(f+".name", f, fmt.Sprintf("%q is also the name of %s[%d]; give each check its own name", name, field, j))
		}
		seen[name] = i
	}
	return nil
}

func targetNames(targets map[string]Target) string {
	if len(targets) == 0 {
		return "none"
	}
	names := make([]string, 0, len(targets))
	for n := range targets {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// checkHostPort accepts "host:port" with a non-empty host and a port 1-65535.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("empty host")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q out of range 1-65535", port)
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xFFFD {
			return false
		}
	}
	return true
}

// checkJSON is the JSON form of Check: durations as Go duration strings.
type checkJSON struct {
	Name      string `json:"name"`
	Exec      string `json:"exec,omitempty"`
	TCP       string `json:"tcp,omitempty"`
	HTTP      string `json:"http,omitempty"`
	Process   string `json:"process,omitempty"`
	Interval  string `json:"interval"`
	Timeout   string `json:"timeout"`
	Failures  int    `json:"failures"`
	Successes int    `json:"successes"`
}

// MarshalJSON writes the check with snake_case keys matching the YAML and
// durations as strings ("1s").
func (c Check) MarshalJSON() ([]byte, error) {
	return json.Marshal(checkJSON{
		Name:      c.Name,
		Exec:      c.Exec,
		TCP:       c.TCP,
		HTTP:      c.HTTP,
		Process:   c.Process,
		Interval:  c.Interval.String(),
		Timeout:   c.Timeout.String(),
		Failures:  c.Failures,
		Successes: c.Successes,
	})
}

// UnmarshalJSON reads what MarshalJSON writes. Omitted fields take their
// defaults and an omitted name is derived, as in a file. It does not
// validate.
func (c *Check) UnmarshalJSON(data []byte) error {
	d := DefaultCheck()
	j := checkJSON{Failures: d.Failures, Successes: d.Successes}
	if err := strictJSON(data, &j); err != nil {
		return fmt.Errorf("decoding check: %w", err)
	}
	out := Check{
		Name:      j.Name,
		Exec:      j.Exec,
		TCP:       j.TCP,
		HTTP:      j.HTTP,
		Process:   j.Process,
		Interval:  d.Interval,
		Timeout:   d.Timeout,
		Failures:  j.Failures,
		Successes: j.Successes,
	}
	var err error
	if out.Interval, err = jsonDuration("interval", j.Interval, d.Interval); err != nil {
		return err
	}
	if out.Timeout, err = jsonDuration("timeout", j.Timeout, d.Timeout); err != nil {
		return err
	}
	if out.Name == "" {
		out.Name = out.DerivedName()
	}
	*c = out
	return nil
}

// jsonDuration parses a duration string from JSON; "" means def.
func jsonDuration(field, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, &Error{Field: field, Msg: fmt.Sprintf("want a duration like \"2s\", got %q", s), Err: ErrType}
	}
	return d, nil
}

// strictJSON decodes one JSON value refusing unknown keys, as the YAML
// parser refuses them in a file.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
