package config

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// placeholder stands for a name the operator chooses (a target's name)
// while the schema is explored; it is written <name> in the docs.
const placeholder = "zzname"

// schemaKeys explores the schema of parse by feeding it documents built
// from the keys it reports, one path at a time, each value tried as a
// mapping, a list of mappings and a mapping of names to mappings. It
// returns every key path, written as in docs/config.md: "ports.api",
// "health[].tcp", "targets.<name>.pidfile".
func schemaKeys(t *testing.T, parse func(d *decoder, data []byte) error) []string {
	t.Helper()
	found := map[string]bool{}
	var queue []string
	record := func(path string, keys []string) {
		path = normalizePath(path)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if !found[p] {
				found[p] = true
				queue = append(queue, p)
			}
		}
	}
	try := func(doc *yaml.Node) {
		data, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatalf("marshalling a probe document: %v", err)
		}
		d := newDecoder("probe.yaml")
		d.schema = record
		_ = parse(d, data) // the values are nonsense; only the schema matters
	}
	try(&yaml.Node{Kind: yaml.MappingNode})
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, leaf := range []*yaml.Node{
			mappingOf(),
			{Kind: yaml.SequenceNode, Content: []*yaml.Node{mappingOf()}},
			mappingOf(scalar(placeholder), mappingOf()),
		} {
			try(buildDoc(p, leaf))
		}
	}
	keys := make([]string, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// normalizePath turns a decoder path ("health[0]", "targets.zzname") into
// the docs' form ("health[]", "targets.<name>").
func normalizePath(p string) string {
	p = indexRE.ReplaceAllString(p, "[]")
	return strings.ReplaceAll(p, placeholder, "<name>")
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

func mappingOf(kv ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Content: kv}
}

// buildDoc builds the document that holds leaf at the docs path p.
func buildDoc(p string, leaf *yaml.Node) *yaml.Node {
	parts := strings.Split(p, ".")
	n := leaf
	for i := len(parts) - 1; i >= 0; i-- {
		part := parts[i]
		list := strings.HasSuffix(part, "[]")
		part = strings.TrimSuffix(part, "[]")
		if part == "<name>" {
			part = placeholder
		}
		if list {
			n = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{n}}
		}
		n = mappingOf(scalar(part), n)
	}
	return n
}

// TestDocsListEveryKey checks that docs/config.md documents every key the
// decoders accept, lpd.yaml keys in its lpd.yaml section and plan keys in
// its plan section, as `key.path` in backquotes.
func TestDocsListEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "config.md"))
	if err != nil {
		t.Fatalf("reading the reference: %v", err)
	}
	doc := string(data)
	nodeStart := strings.Index(doc, "\n## lpd.yaml")
	planStart := strings.Index(doc, "\n## Plan file")
	if nodeStart < 0 || planStart < nodeStart {
		t.Fatalf("docs/config.md: want a section \"## lpd.yaml\" followed by \"## Plan file\"")
	}
	sections := []struct {
		name  string
		text  string
		parse func(d *decoder, data []byte) error
		min   int
	}{
		{"lpd.yaml", doc[nodeStart:planStart], func(d *decoder, data []byte) error {
			_, err := parseNode(d, data, "probe.yaml")
			return err
		}, 30},
		{"plan", doc[planStart:], func(d *decoder, data []byte) error {
			_, err := parsePlan(d, data, "probe.yaml")
			return err
		}, 15},
	}
	for _, s := range sections {
		keys := schemaKeys(t, s.parse)
		t.Logf("%s keys: %v", s.name, keys)
		// The exploration must find the nested keys, or this test checks
		// nothing: these are known to exist.
		if len(keys) < s.min {
			t.Errorf("%s: explored %d keys (%v); want at least %d", s.name, len(keys), keys, s.min)
		}
		for _, k := range keys {
			if !strings.Contains(s.text, "`"+k+"`") {
				t.Errorf("docs/config.md: %s key `%s` is not documented in its section", s.name, k)
			}
		}
	}
}
