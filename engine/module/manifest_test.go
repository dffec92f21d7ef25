package module

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func nul(entries ...string) []byte {
	return []byte(strings.Join(entries, "\x00") + "\x00")
}

func TestParseManifest(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct {
		name    string
		section []byte
		want    Manifest
		wantErr string // substring of the error; "" = success
	}{
		{"minimal", nul("replace=a:b"), Manifest{Replaces: []Replace{{"a", "b"}}}, ""},
		{"padding skipped", []byte("\x00\x00id=x\x00\x00\x00replace=a:b\x00\x00"),
			Manifest{ID: "x", Replaces: []Replace{{"a", "b"}}}, ""},
		{"every key", nul("id=fix-1.2_b", "replace=classify:classify_v2", "replace=_ZN3sip6parserEv:parser.fixed$1",
			"target=ABCDEF01", "depends=base", "depends=base.2", "description=tab-free text, ünïcode"),
			Manifest{ID: "fix-1.2_b", Replaces: []Replace{{"classify", "classify_v2"}, {"_ZN3sip6parserEv", "parser.fixed$1"}},
				Target: "abcdef01", Depends: []string{"base", "base.2"}, Description: "tab-free text, ünïcode"}, ""},
		{"value with equals", nul("replace=a:b", "description=x=y"), Manifest{Replaces: []Replace{{"a", "b"}}, Description: "x=y"}, ""},

		{"empty section", nil, Manifest{}, "no replace entry"},
		{"only padding", []byte("\x00\x00"), Manifest{}, "no replace entry"},
		{"no replace", nul("id=x"), Manifest{}, "no replace entry"},
		{"unterminated", []byte("replace=a:b\x00id=x"), Manifest{}, `entry "id=x": not NUL-terminated`},
		{"typo key", nul("replace=a:b", "replce=c:d"), Manifest{}, `unknown key "replce"`},
		{"upper-case key", nul("replace=a:b", "ID=x"), Manifest{}, `unknown key "ID"`},
		{"no equals", nul("replace=a:b", "id"), Manifest{}, "want key=value"},
		{"two ids", nul("id=a", "id=b", "replace=a:b"), Manifest{}, "id given more than once"},
		{"bad id char", nul("id=a/b", "replace=a:b"), Manifest{}, `id "a/b" has "/" at 1`},
		{"empty id", nul("id=", "replace=a:b"), Manifest{}, "empty id"},
		{"long id", nul("id="+long, "replace=a:b"), Manifest{}, "id is 65 characters, limit 64"},
		{"replace without colon", nul("replace=ab"), Manifest{}, "want OLD:NEW"},
		{"replace two colons", nul("replace=a:b:c"), Manifest{}, `new: symbol "b:c" has ":" at 1`},
		{"replace empty old", nul("replace=:b"), Manifest{}, "old: empty symbol name"},
		{"replace digit", nul("replace=1a:b"), Manifest{}, "starts with a digit"},
		{"replace space", nul("replace=a :b"), Manifest{}, `old: symbol "a " has " " at 1`},
		{"replace itself", nul("replace=a:a"), Manifest{}, "a replaces itself"},
		{"duplicate old", nul("replace=a:b", "replace=a:c"), Manifest{}, "a is replaced more than once"},
		{"original", nul("replace=a:b", "original=a:p"), Manifest{Replaces: []Replace{{"a", "b"}}, Originals: []Original{{"a", "p"}}}, ""},
		{"original not replaced", nul("replace=a:b", "original=c:p"), Manifest{}, "the module does not replace c"},
		{"original twice", nul("replace=a:b", "original=a:p", "original=a:q"), Manifest{}, "original of a given more than once"},
		{"original ptr twice", nul("replace=a:b", "replace=c:d", "original=a:p", "original=c:p"), Manifest{}, "p receives more than one original"},
		{"original without colon", nul("replace=a:b", "original=ap"), Manifest{}, "want OLD:PTR"},
		{"target odd", nul("replace=a:b", "target=abc"), Manifest{}, "odd number (3)"},
		{"target short", nul("replace=a:b", "target=a"), Manifest{}, "build-id is 1 hex characters, want 2..128"},
		{"target long", nul("replace=a:b", "target="+strings.Repeat("ab", 65)), Manifest{}, "build-id is 130 hex characters"},
		{"target not hex", nul("replace=a:b", "target=abzz"), Manifest{}, `non-hex "z" at 2`},
		{"two targets", nul("replace=a:b", "target=ab", "target=cd"), Manifest{}, "target given more than once"},
		{"bad depends", nul("replace=a:b", "depends=a b"), Manifest{}, `id "a b" has " "`},
		{"duplicate depends", nul("replace=a:b", "depends=x", "depends=x"), Manifest{}, "depends on x more than once"},
		{"depends on itself", nul("id=x", "replace=a:b", "depends=x"), Manifest{}, "patch x depends on itself"},
		{"two descriptions", nul("replace=a:b", "description=a", "description=b"), Manifest{}, "description given more than once"},
		{"description newline", nul("replace=a:b", "description=a\nb"), Manifest{}, "control character U+000A"},
		{"description bad utf8", nul("replace=a:b", "description=\xff"), Manifest{}, "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseManifest(tt.section)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseManifest(%q) error %v; want nil", tt.section, err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("ParseManifest(%q) = %+v; want %+v", tt.section, got, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseManifest(%q) error %v; want one containing %q", tt.section, err, tt.wantErr)
			}
			if !errors.Is(err, ErrManifest) {
				t.Errorf("errors.Is(%v, ErrManifest) = false; want true", err)
			}
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Errorf("error %T; want *ManifestError", err)
			}
		})
	}
}

func TestParseManifestLimits(t *testing.T) {
	many := make([]string, 0, MaxEntries+1)
	for i := range MaxEntries + 1 {
		many = append(many, fmt.Sprintf("replace=f%d:g%d", i, i))
	}
	if _, err := ParseManifest(nul(many...)); err == nil || !strings.Contains(err.Error(), "more than 4096 entries") {
		t.Errorf("ParseManifest(%d entries) = %v; want the entry limit", len(many), err)
	}
	if _, err := ParseManifest(make([]byte, MaxManifestSize+1)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("ParseManifest(%d bytes) = %v; want the size limit", MaxManifestSize+1, err)
	}
}

// encode writes m back in the section format.
func encode(m Manifest) []byte {
	var e []string
	if m.ID != "" {
		e = append(e, "id="+m.ID)
	}
	for _, r := range m.Replaces {
		e = append(e, "replace="+r.String())
	}
	if m.Target != "" {
		e = append(e, "target="+m.Target)
	}
	for _, d := range m.Depends {
		e = append(e, "depends="+d)
	}
	if m.Description != "" {
		e = append(e, "description="+m.Description)
	}
	return nul(e...)
}

func FuzzParseManifest(f *testing.F) {
	f.Add(nul("id=fix", "replace=a:b", "target=abcd", "depends=base", "description=text"))
	f.Add([]byte("\x00\x00replace=_Z1fv:g$1\x00"))
	f.Add([]byte("replce=a:b\x00"))
	f.Add([]byte("replace=a:b"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, section []byte) {
		m, err := ParseManifest(section)
		if err != nil {
			if !errors.Is(err, ErrManifest) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q; want a one-line ErrManifest", err)
			}
			return
		}
		if len(m.Replaces) == 0 {
			t.Fatalf("accepted %q without replace", section)
		}
		again, err := ParseManifest(encode(m))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip of %+v = %+v, %v", m, again, err)
		}
	})
}
