package config

import (
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LoadNode reads, defaults and validates the node config at path.
func LoadNode(path string) (*Node, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading node config: %w", err)
	}
	return ParseNode(data, path)
}

// LoadPlan reads, defaults and validates the plan file at path.
func LoadPlan(path string) (*Plan, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading plan: %w", err)
	}
	return ParsePlan(data, path)
}

// readFile reads at most MaxFileSize+1 bytes, so that a huge file (or a
// device) is refused by the parser instead of read whole.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}

// ParseNode parses a node config. filename is used in error messages and to
// resolve relative paths (data_dir, tls.*, targets.*.pidfile) against its
// directory. The result has defaults filled and is valid.
func ParseNode(data []byte, filename string) (*Node, error) {
	return parseNode(newDecoder(filename), data, filename)
}

func parseNode(d *decoder, data []byte, filename string) (*Node, error) {
	root, err := d.parse(data)
	if err != nil {
		return nil, err
	}
	n := DefaultNode()
	var gossipKey string
	fields := []field{
		{"node", str(&n.Node, "a node name")},
		{"data_dir", str(&n.DataDir, "a directory")},
		{"bind", str(&n.Bind, "an IP address")},
		{"ports", func(d *decoder, path string, v *yaml.Node) error {
			return d.mapping(path, v, []field{
				{"api", integer(&n.Ports.API, "an integer 1-65535")},
				{"raft", integer(&n.Ports.Raft, "an integer 1-65535")},
				{"gossip", integer(&n.Ports.Gossip, "an integer 1-65535")},
			})
		}},
		{"server", boolean(&n.Server)},
		{"bootstrap_expect", func(d *decoder, path string, v *yaml.Node) error {
			if err := integer(&n.BootstrapExpect, "an integer >= 1")(d, path, v); err != nil {
				return err
			}
			if n.BootstrapExpect < 1 {
				// 0 means "not set" in the struct; written out, it is a mistake.
				return &Error{File: d.file, Line: v.Line, Field: path, Msg: fmt.Sprintf("%d below minimum 1 (omit bootstrap_expect to join an existing cluster)", n.BootstrapExpect), Err: ErrInvalid}
			}
			return nil
		}},
		{"join", strList(&n.Join, "a list like [host:port]", "host:port")},
		{"pair", str(&n.Pair, "a pair name")},
		{"role", str(&n.Role, "active, standby or witness")},
		{"roles", str(&n.Roles, "managed or external")},
		{"failover_after", duration(&n.FailoverAfter)},
		{"on_promote", str(&n.OnPromote, "a command")},
		{"on_demote", str(&n.OnDemote, "a command")},
		{"role_probe", str(&n.RoleProbe, "a command")},
		{"targets", func(d *decoder, path string, v *yaml.Node) error {
			targets := make(map[string]Target)
			err := d.eachPair(path, v, func(name string, _, tv *yaml.Node) error {
				var t Target
				err := d.mapping(joinPath(path, name), tv, []field{
					{"pidfile", str(&t.PIDFile, "a file name")},
					{"exe", str(&t.Exe, "an absolute path")},
					{"comm", str(&t.Comm, "a process name")},
					{"match", str(&t.Match, "one or all")},
				})
				targets[name] = t
				return err
			})
			if len(targets) > 0 {
				n.Targets = targets
			}
			return err
		}},
		{"health", checks(&n.Health)},
		{"peer_health", checks(&n.PeerHealth)},
		{"heartbeat", func(d *decoder, path string, v *yaml.Node) error {
			return d.mapping(path, v, heartbeatFields(&n.Heartbeat))
		}},
		{"raft", section(raftFields(&n.Raft))},
		{"retention", section(retentionFields(&n.Retention))},
		{"priority", func(d *decoder, path string, v *yaml.Node) error {
			return d.mapping(path, v, priorityFields(&n.Priority))
		}},
		{"tls", func(d *decoder, path string, v *yaml.Node) error {
			return d.mapping(path, v, []field{
				{"ca", str(&n.TLS.CA, "a file name")},
				{"cert", str(&n.TLS.Cert, "a file name")},
				{"key", str(&n.TLS.Key, "a file name")},
			})
		}},
		{"gossip_key", str(&gossipKey, "base64 of a 16, 24 or 32 byte key")},
		{"trusted_keys", strList(&n.TrustedKeys, "a list of public keys", "a public key")},
		{"insecure", boolean(&n.Insecure)},
		{"exec_checks", str(&n.ExecChecks, "allow or deny")},
		{"debug_dir", str(&n.DebugDir, "a directory")},
		{"tokens", func(d *decoder, path string, v *yaml.Node) error {
			return d.sequence(path, v, "a list of {name, role, sha256}", func(path string, v *yaml.Node) error {
				var t Token
				err := d.mapping(path, v, []field{
					{"name", str(&t.Name, "a token name")},
					{"role", str(&t.Role, "reader or operator")},
					{"sha256", str(&t.SHA256, "64 hex digits")},
				})
				n.Tokens = append(n.Tokens, t)
				return err
			})
		}},
	}
	if err := d.mapping("", root, fields); err != nil {
		return nil, err
	}
	if gossipKey != "" {
		key, err := base64.StdEncoding.DecodeString(gossipKey)
		if err != nil {
			return nil, d.locate(invalid("gossip_key", "want base64 of a 16, 24 or 32 byte key: "+err.Error()))
		}
		n.GossipKey = key
	}
	for i := range n.Tokens {
		n.Tokens[i].SHA256 = strings.ToLower(n.Tokens[i].SHA256)
	}
	dir, err := baseDir(filename)
	if err != nil {
		return nil, err
	}
	n.DataDir = resolvePath(dir, n.DataDir)
	n.TLS.CA = resolvePath(dir, n.TLS.CA)
	n.TLS.Cert = resolvePath(dir, n.TLS.Cert)
	n.TLS.Key = resolvePath(dir, n.TLS.Key)
	for name, t := range n.Targets {
		t.PIDFile = resolvePath(dir, t.PIDFile)
		n.Targets[name] = t
	}
	if err := n.Validate(); err != nil {
		return nil, d.locate(err)
	}
	return &n, nil
}

// ParsePlan parses a plan file. filename is used in error messages and to
// resolve patch against its directory into PatchPath. The result has
// defaults filled and is valid.
func ParsePlan(data []byte, filename string) (*Plan, error) {
	return parsePlan(newDecoder(filename), data, filename)
}

func parsePlan(d *decoder, data []byte, filename string) (*Plan, error) {
	root, err := d.parse(data)
	if err != nil {
		return nil, err
	}
	p := DefaultPlan()
	fields := []field{
		{"name", str(&p.Name, "a plan name")},
		{"patch", str(&p.Patch, "the path of a patch module")},
		{"target", str(&p.Target, "a target name")},
		{"pairs", strList(&p.Pairs, "a list of pair names", "a pair name")},
		{"trial", duration(&p.Trial)},
		{"health", checks(&p.Health)},
		{"on_failure", str(&p.OnFailure, "rollback or pause")},
		{"failover_during_trial", str(&p.FailoverDuringTrial, "rollback-first or keep-patch")},
		{"progress_deadline", duration(&p.ProgressDeadline)},
		{"max_parallel", integer(&p.MaxParallel, "an integer >= 1")},
		{"mode", str(&p.Mode, "inject or dlopen")},
		{"consistency", str(&p.Consistency, "function or entry")},
		{"apply_timeout", duration(&p.ApplyTimeout)},
	}
	if err := d.mapping("", root, fields); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, d.locate(err)
	}
	dir, err := baseDir(filename)
	if err != nil {
		return nil, err
	}
	p.PatchPath = resolvePath(dir, p.Patch)
	return &p, nil
}

// baseDir is the absolute directory of filename ("" = the working
// directory).
func baseDir(filename string) (string, error) {
	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		return "", fmt.Errorf("resolving directory of %q: %w", filename, err)
	}
	return dir, nil
}

// resolvePath makes p absolute against dir; "" stays "".
func resolvePath(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
