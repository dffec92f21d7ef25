// Package config owns the two files an operator writes: the node config that
// lpd reads at start (lpd --config lpd.yaml) and the plan file that lpctl
// submits (lpctl plan submit plan.yaml). It parses them, fills defaults and
// validates them, and nothing else: it opens no sockets and starts nothing.
//
// # Parsing
//
// Files are YAML, decoded through go.yaml.in/yaml/v3's yaml.Node and walked by
// hand against the schema, so that every error names the file, the line, the
// field and what was expected, on one line:
//
//	lpd.yaml:12: ports.api: want an integer 1-65535, got "abc"
//	lpd.yaml:7: unknown key "prots" (did you mean "ports"?)
//
// Unknown keys, duplicate keys, wrong types, an empty file and a second YAML
// document are all errors. Durations are Go duration strings ("2s",
// "500ms"); a bare number is refused rather than guessed at. A null value
// (`pair:` with nothing after it) counts as not set. Anchors and aliases are
// followed; merge keys (<<) are refused. Parsing never panics on any input
// (see the Fuzz functions) and refuses files larger than MaxFileSize.
//
// Relative paths in a node config (data_dir, tls.*, targets.*.pidfile) are
// resolved against the directory of the config file; a plan's patch is
// resolved against the plan file's directory into Plan.PatchPath.
//
// Errors are *Error values; errors.Is reports the kind through the sentinels
// (ErrSyntax, ErrUnknownKey, ...). Validate methods return the same type
// without File and Line; the Parse functions add them.
//
// # JSON
//
// Plan and Check travel as JSON over the API and in the raft log. Their
// duration fields stay time.Duration in Go and are written as Go duration
// strings ("30s") in JSON by MarshalJSON/UnmarshalJSON methods on the structs,
// so the rest of the code base never meets a wrapper type. Unmarshalling
// starts from the defaults (DefaultPlan, DefaultCheck), so omitted fields get
// the same values as in a file; it does not validate: call Validate.
// Plan.PatchPath is local to the machine that read the file and is not sent.
//
// # Concurrency
//
// Nothing here holds state between calls; every function is safe for
// concurrent use. A *Node or *Plan is a plain value owned by its caller.
package config
