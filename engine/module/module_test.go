package module

import (
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestOpenFull(t *testing.T) {
	variants := []struct {
		name  string
		extra []string
	}{
		{"plain", nil},
		{"gc-sections", []string{"-Wl,--gc-sections"}},
		{"lto", []string{"-flto", "-Wl,--gc-sections"}},
		{"hidden", []string{"-fvisibility=hidden", "-Wl,--gc-sections"}},
		{"c99-pedantic", []string{"-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			path := buildSO(t, "full-"+v.name+".so", "full.c", v.extra...)
			m, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			want := Manifest{
				ID:          "fix-invite-overflow",
				Replaces:    []Replace{{"classify", "classify_v2"}, {"helper", "helper_v2"}},
				Target:      "0123456789abcdeffedcba9876543210deadbeef",
				Depends:     []string{"base-1", "base-2"},
				Description: "bound the INVITE length check",
			}
			got := m.Manifest
			// The compiler may emit the entries in any order.
			sortManifest(&got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("manifest = %+v; want %+v", got, want)
			}
			data, _ := os.ReadFile(path)
			if m.Size != len(data) || len(m.SHA256) != 64 {
				t.Errorf("size %d sha256 %q; want %d and 64 hex digits", m.Size, m.SHA256, len(data))
			}
			cv, ok := m.Funcs["classify_v2"]
			if !ok || cv.Value == 0 {
				t.Fatalf("Funcs[classify_v2] = %+v, %v; want a defined function", cv, ok)
			}
			if v.name != "hidden" && (!cv.Global || !cv.Dyn) {
				t.Errorf("classify_v2 = %+v; want global and in .dynsym", cv)
			}
			hv, ok := m.Funcs["helper_v2"]
			if !ok || hv.Global || hv.Dyn {
				t.Errorf("Funcs[helper_v2] = %+v, %v; want a static function from .symtab", hv, ok)
			}
			in := m.Inspect()
			if in.Mode != ModeInject {
				t.Errorf("Inspect().Mode = %q; want %q (hints %q)", in.Mode, ModeInject, in.Hints)
			}
			if in.TLS || in.Exceptions {
				t.Errorf("Inspect() TLS=%v Exceptions=%v; want both false", in.TLS, in.Exceptions)
			}
			for _, r := range in.Relocs {
				if !r.Inject || r.Count <= 0 {
					t.Errorf("reloc %+v; want supported with a positive count", r)
				}
			}
		})
	}
}

func sortManifest(m *Manifest) {
	for i := range m.Replaces {
		for j := i + 1; j < len(m.Replaces); j++ {
			if m.Replaces[j].Old < m.Replaces[i].Old {
				m.Replaces[i], m.Replaces[j] = m.Replaces[j], m.Replaces[i]
			}
		}
	}
	for i := range m.Depends {
		for j := i + 1; j < len(m.Depends); j++ {
			if m.Depends[j] < m.Depends[i] {
				m.Depends[i], m.Depends[j] = m.Depends[j], m.Depends[i]
			}
		}
	}
}

func TestInspectJSON(t *testing.T) {
	m, err := Open(buildSO(t, "full-plain.so", "full.c"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m.Inspect())
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "replaces", "target", "depends", "description", "sha256", "size", "needed", "tls", "eh_frame", "relocs", "mode"} {
		if _, ok := back[k]; !ok {
			t.Errorf("inspect JSON %s has no key %q", b, k)
		}
	}
	if back["id"] != "fix-invite-overflow" {
		t.Errorf("id = %v; want fix-invite-overflow", back["id"])
	}
}

func TestDefaultID(t *testing.T) {
	m, err := Open(buildSO(t, "noid.so", "noid.c"))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "noid" {
		t.Errorf("ID = %q; want %q", m.ID, "noid")
	}
	if got := m.Inspect().Hints; !containsSub(got, "no target build-id") {
		t.Errorf("hints %q; want one about the missing target build-id", got)
	}
	// A file name that is not a valid id needs LP_PATCH_ID.
	data, _ := os.ReadFile(m.Path)
	_, err = Parse(data, "/tmp/my fix.so")
	if !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), "add LP_PATCH_ID") {
		t.Errorf("Parse(%q) = %v; want ErrManifest asking for LP_PATCH_ID", "my fix.so", err)
	}
}

func TestLoadModeHints(t *testing.T) {
	tests := []struct {
		name, out, src string
		extra          []string
		tls, exc, cxx  bool
	}{
		{"tls", "tls.so", "tls.c", nil, true, false, false},
		{"cxx-exceptions", "cxx.so", "cxx.cc", nil, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Open(buildSO(t, tt.out, tt.src, tt.extra...))
			if err != nil {
				t.Fatal(err)
			}
			in := m.Inspect()
			if in.TLS != tt.tls || in.Exceptions != tt.exc || in.CXX != tt.cxx {
				t.Errorf("TLS, Exceptions, CXX = %v, %v, %v; want %v, %v, %v", in.TLS, in.Exceptions, in.CXX, tt.tls, tt.exc, tt.cxx)
			}
			if in.Mode != ModeDlopen || !containsSub(in.Hints, "--mode dlopen") {
				t.Errorf("Mode %q hints %q; want dlopen with a hint", in.Mode, in.Hints)
			}
		})
	}
}

func TestCXXModule(t *testing.T) {
	m, err := Open(buildSO(t, "cxx.so", "cxx.cc"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Replace{{"_Z8classifyi", "classify_v2"}}
	if !reflect.DeepEqual(m.Replaces, want) || m.ID != "cxx-fix" {
		t.Errorf("ID %q replaces %v; want cxx-fix %v", m.ID, m.Replaces, want)
	}
	if !containsSub(m.Needed, "libstdc++") {
		t.Errorf("Needed = %q; want libstdc++", m.Needed)
	}
}

func TestParseErrors(t *testing.T) {
	type fixture struct {
		out, src string
		extra    []string
		compiler string // default: buildSO
	}
	tests := []struct {
		name string
		fix  fixture
		kind error
		want string // %s is the path
	}{
		{"no section", fixture{out: "nosection.so", src: "nosection.c"}, ErrNoManifest,
			"%s: no .lp_patch section (build it with include/lp_patch.h)"},
		{"typo key", fixture{out: "typo.so", src: "typo.c"}, ErrManifest,
			`%s: .lp_patch entry "replce=helper:classify_v2": unknown key "replce" (known: id, replace, target, depends, description, original)`},
		{"undefined replacement", fixture{out: "undefined.so", src: "undefined.c"}, ErrUndefined,
			`%s: replace "classify:classify_v3": classify_v3 is not defined in the module (it is only referenced)`},
		{"data object", fixture{out: "notfunc.so", src: "notfunc.c"}, ErrUndefined,
			`%s: replace "classify:table": table is not a function (STT_OBJECT)`},
		{"c++ linkage", fixture{out: "cxx-mangled.so", src: "cxx.cc", extra: []string{"-DLP_NO_EXTERN_C"}}, ErrUndefined,
			`%s: replace "_Z8classifyi:classify_v2": classify_v2 is not defined in the module (C++ symbol _Z11classify_v2i is: declare classify_v2 extern "C")`},
		{"executable", fixture{out: "exe", src: "exe.c", extra: []string{"-no-pie", "-O2"}, compiler: "cc"}, ErrUnsupported,
			"%s: ELF type ET_EXEC, want a shared object (ET_DYN; build with cc -shared -fPIC)"},
		{"pie", fixture{out: "pie", src: "exe.c", extra: []string{"-fPIE", "-pie", "-O2"}, compiler: "cc"}, ErrUnsupported,
			"%s: a PIE executable, want a shared object (build with cc -shared -fPIC)"},
		{"ambiguous static", fixture{out: "dup.so", src: "dup1.c", extra: []string{"testdata/dup2.c"}}, ErrUndefined,
			`%s: replace "classify:fix": fix is defined more than once (static functions in several files); give it a unique name`},
		{"object file", fixture{out: "full.o", src: "full.c", extra: []string{"-c", "-fPIC", "-O2"}, compiler: "cc"}, ErrUnsupported,
			"%s: ELF type ET_REL, want a shared object (ET_DYN; build with cc -shared -fPIC)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path string
			if tt.fix.compiler != "" {
				path = build(t, tt.fix.out, tt.fix.compiler, tt.fix.src, tt.fix.extra...)
			} else {
				path = buildSO(t, tt.fix.out, tt.fix.src, tt.fix.extra...)
			}
			m, err := Open(path)
			if err == nil {
				t.Fatalf("Open(%s) = %+v; want error", path, m.Manifest)
			}
			if want := fmt.Sprintf(tt.want, path); err.Error() != want {
				t.Errorf("Open error\n got %s\nwant %s", err, want)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(%v, %v) = false; want true", err, tt.kind)
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	good, err := os.ReadFile(buildSO(t, "full-plain.so", "full.c"))
	if err != nil {
		t.Fatal(err)
	}
	patch := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	tests := []struct {
		name string
		data []byte
		kind error
		want string // exact message, or "" to check only the kind
	}{
		{"empty", nil, ErrNotELF, "fix.so: not an ELF file"},
		{"text", []byte("#!/bin/sh\necho hi\n"), ErrNotELF, "fix.so: not an ELF file"},
		{"magic only", []byte("\x7fELF"), ErrMalformed, "fix.so: truncated ELF file (4 bytes, header needs 64)"},
		{"truncated header", good[:40], ErrMalformed, "fix.so: truncated ELF file (40 bytes, header needs 64)"},
		{"truncated body", good[:512], ErrMalformed, ""},
		{"32-bit", patch(func(b []byte) { b[elf.EI_CLASS] = byte(elf.ELFCLASS32) }), ErrUnsupported,
			"fix.so: 32-bit ELF (ELFCLASS32), want ELF64 x86-64"},
		{"big-endian", patch(func(b []byte) { b[elf.EI_DATA] = byte(elf.ELFDATA2MSB) }), ErrUnsupported, ""},
		{"aarch64", patch(func(b []byte) { binary.LittleEndian.PutUint16(b[18:], uint16(elf.EM_AARCH64)) }), ErrUnsupported,
			"fix.so: ELF for EM_AARCH64, want x86-64"},
		{"section table out of file", patch(func(b []byte) { binary.LittleEndian.PutUint64(b[40:], 1<<40) }), ErrMalformed, ""},
		{"section count huge", patch(func(b []byte) { binary.LittleEndian.PutUint16(b[60:], 0xffff) }), ErrMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.data, "fix.so")
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Parse = %v; want %v", err, tt.kind)
			}
			if tt.want != "" && err.Error() != tt.want {
				t.Errorf("Parse error\n got %s\nwant %s", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "fix.so: ") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q; want one line starting with the file name", err)
			}
		})
	}
}

func TestOpenLimits(t *testing.T) {
	if _, err := Open("/nonexistent/fix.so"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v; want os.ErrNotExist", err)
	}
	if _, err := Parse(make([]byte, MaxSize+1), "big.so"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse(MaxSize+1 bytes) = %v; want ErrTooLarge", err)
	}
}

func containsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func FuzzParse(f *testing.F) {
	for _, fx := range []struct{ out, src string }{{"full-plain.so", "full.c"}, {"noid.so", "noid.c"}, {"typo.so", "typo.c"}} {
		data, err := os.ReadFile(buildSO(f, fx.out, fx.src))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data, "fuzz.so")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q (%T); want a one-line *Error", err, err)
			}
			return
		}
		if ValidID(m.ID) != nil || len(m.Replaces) == 0 {
			t.Fatalf("accepted module with id %q and %d replaces", m.ID, len(m.Replaces))
		}
		for _, r := range m.Replaces {
			if _, ok := m.Funcs[r.New]; !ok {
				t.Fatalf("accepted %v whose new function is not in Funcs", r)
			}
		}
		_ = m.Inspect()
	})
}
