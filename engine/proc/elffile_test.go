package proc

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// note encodes one ELF note with the given alignment.
func note(name string, typ uint32, desc []byte, align int) []byte {
	var b bytes.Buffer
	n := []byte(name + "\x00")
	binary.Write(&b, binary.LittleEndian, [3]uint32{uint32(len(n)), uint32(len(desc)), typ})
	pad := func() {
		for b.Len()%align != 0 {
			b.WriteByte(0)
		}
	}
	b.Write(n)
	pad()
	b.Write(desc)
	pad()
	return b.Bytes()
}

func TestFindBuildID(t *testing.T) {
	id := []byte{0xde, 0xad, 0xbe, 0xef, 0x01}
	property := note("GNU", 5, make([]byte, 16), 8)
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name    string
		data    []byte
		align   uint64
		want    string
		wantErr bool
	}{
		{"alone", note("GNU", 3, id, 4), 4, "deadbeef01", false},
		{"after an ABI tag", cat(note("GNU", 1, make([]byte, 16), 4), note("GNU", 3, id, 4)), 4, "deadbeef01", false},
		{"8-aligned segment", cat(property, note("GNU", 3, id, 8)), 8, "deadbeef01", false},
		{"other owner ignored", note("Go", 3, id, 4), 4, "", false},
		{"other type ignored", note("GNU", 4, id, 4), 4, "", false},
		{"trailing zero padding", cat(note("GNU", 1, nil, 4), make([]byte, 8)), 4, "", false},
		{"empty", nil, 4, "", false},
		{"truncated header", []byte{4, 0, 0, 0, 1}, 4, "", true},
		{"name overruns", []byte{0xff, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0}, 4, "", true},
		{"descriptor overruns", []byte{4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 'G', 'N', 'U', 0}, 4, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := findBuildID(tt.data, binary.LittleEndian, tt.align)
			if (err != nil) != tt.wantErr || got != tt.want || ok != (tt.want != "") {
				t.Errorf("findBuildID = %q, %v, %v; want %q, error %v", got, ok, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSplitVersion(t *testing.T) {
	for _, tt := range []struct {
		in, name, version string
		hidden            bool
	}{
		{"getpid@@GLIBC_2.2.5", "getpid", "GLIBC_2.2.5", false},
		{"fix_version@LPFIX_1", "fix_version", "LPFIX_1", true},
		{"plain", "plain", "", false},
		{"odd@", "odd", "", true},
	} {
		name, version, hidden := splitVersion(tt.in)
		if name != tt.name || version != tt.version || hidden != tt.hidden {
			t.Errorf("splitVersion(%q) = %q, %q, %v; want %q, %q, %v", tt.in, name, version, hidden, tt.name, tt.version, tt.hidden)
		}
	}
}

func TestSymtabFind(t *testing.T) {
	sym := func(name string, v uint64, bind elf.SymBind) rawSym {
		n, ver, hidden := splitVersion(name)
		return rawSym{name: n, version: ver, hidden: hidden, value: v, size: 8, typ: elf.STT_FUNC, bind: bind}
	}
	tab := newSymtab([]rawSym{
		sym("dup", 0x10, elf.STB_LOCAL), sym("dup", 0x20, elf.STB_LOCAL), // two statics
		sym("w", 0x30, elf.STB_LOCAL), sym("w", 0x40, elf.STB_WEAK), // weak beats local
		sym("g", 0x50, elf.STB_WEAK), sym("g", 0x60, elf.STB_GLOBAL), // global beats weak
		sym("v@V1", 0x70, elf.STB_GLOBAL), sym("v@@V2", 0x80, elf.STB_GLOBAL), // default beats hidden
		sym("same", 0x90, elf.STB_GLOBAL), sym("same", 0x90, elf.STB_GLOBAL), // .dynsym + .symtab copy
		sym("only_local", 0xa0, elf.STB_LOCAL),
	})
	for _, tt := range []struct {
		name       string
		onlyGlobal bool
		want       uint64
		competing  []uint64
		found      bool
	}{
		{"dup", false, 0, []uint64{0x10, 0x20}, true},
		{"w", false, 0x40, nil, true},
		{"g", false, 0x60, nil, true},
		{"v", false, 0x80, nil, true},
		{"v@V1", false, 0x70, nil, true},
		{"v@@V2", false, 0x80, nil, true},
		{"v@V3", false, 0, nil, false},
		{"same", false, 0x90, nil, true},
		{"only_local", false, 0xa0, nil, true},
		{"only_local", true, 0, nil, false},
		{"missing", false, 0, nil, false},
	} {
		r, competing, ok := tab.find(tt.name, tt.onlyGlobal)
		if ok != tt.found || r.value != tt.want || !reflect.DeepEqual(competing, tt.competing) {
			t.Errorf("find(%q, %v) = %#x, %#x, %v; want %#x, %#x, %v", tt.name, tt.onlyGlobal, r.value, competing, ok, tt.want, tt.competing, tt.found)
		}
	}
	for _, tt := range []struct {
		v    uint64
		want uint64
		ok   bool
	}{{0x10, 0x10, true}, {0x17, 0x10, true}, {0x18, 0x20, false}, {0x9f, 0, false}, {0xa7, 0xa0, true}} {
		r, ok := tab.funcAt(tt.v)
		if ok != tt.ok || (ok && r.value != tt.want) {
			t.Errorf("funcAt(%#x) = %#x, %v; want %#x, %v", tt.v, r.value, ok, tt.want, tt.ok)
		}
	}
}

func TestComputeBias(t *testing.T) {
	load := func(off, vaddr uint64) *elf.Prog {
		return &elf.Prog{ProgHeader: elf.ProgHeader{Type: elf.PT_LOAD, Off: off, Vaddr: vaddr, Memsz: 0x100}}
	}
	m := func(start, off uint64) Mapping { return Mapping{Start: start, End: start + 0x1000, Offset: off} }
	for _, tt := range []struct {
		name  string
		maps  []Mapping
		loads []*elf.Prog
		want  uint64
		err   bool
	}{
		{"PIE, separate code",
			[]Mapping{m(0x555555554000, 0), m(0x555555555000, 0x1000)},
			[]*elf.Prog{load(0, 0), load(0x1000, 0x1000), load(0x2df0, 0x3df0)}, 0x555555554000, false},
		{"non-PIE", []Mapping{m(0x400000, 0), m(0x401000, 0x1000)},
			[]*elf.Prog{load(0, 0x400000), load(0x1000, 0x401000)}, 0, false},
		{"old layout: two segments in file page 0",
			[]Mapping{m(0x7f0000000000, 0), m(0x7f0000200000, 0)},
			[]*elf.Prog{load(0, 0), load(0xe10, 0x200e10)}, 0x7f0000000000, false},
		{"headers not loaded: first segment at offset 0x1000",
			[]Mapping{m(0x7f0000001000, 0x1000), m(0x7f0000003000, 0x2000)},
			[]*elf.Prog{load(0x2000, 0x3000), load(0x1000, 0x1000)}, 0x7f0000000000, false},
		{"prelinked above its load address (bias wraps)",
			[]Mapping{m(0x1000, 0)}, []*elf.Prog{load(0, 0x2000)}, ^uint64(0) - 0xfff, false},
		{"data mapping of an ELF file", []Mapping{m(0x7f0000000000, 0x5000)},
			[]*elf.Prog{load(0, 0), load(0x1000, 0x1000)}, 0, true},
		{"no PT_LOAD", []Mapping{m(0x7f0000000000, 0)}, nil, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := computeBias(tt.maps, tt.loads)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("computeBias = %#x, %v; want %#x, error %v", got, err, tt.want, tt.err)
			}
			if err != nil && !errors.Is(err, ErrNotLoaded) {
				t.Errorf("error %v; want ErrNotLoaded", err)
			}
		})
	}
}

func TestGroupObjects(t *testing.T) {
	f := func(start, off uint64, path string) Mapping {
		return Mapping{Start: start, End: start + 0x1000, Offset: off, Perms: "r--p", Dev: "08:01", Inode: uint64(len(path)), Path: path}
	}
	anon := Mapping{Start: 0x5000, End: 0x6000, Perms: "rw-p", Dev: "00:00"}
	maps := []Mapping{
		f(0x1000, 0, "/a"), f(0x2000, 0x1000, "/a"), anon, f(0x7000, 0x2000, "/a"), // one object with .bss between
		f(0x8000, 0, "/bb"), f(0x9000, 0, "/bb"), // old layout, same offset twice
		f(0xa000, 0, "/a"), // /a mapped again
		{Start: 0xb000, End: 0xc000, Perms: "r-xp", Dev: "00:00", Path: "[vdso]"},
	}
	got := groupObjects(maps)
	want := [][]Mapping{{maps[0], maps[1], maps[3]}, {maps[4], maps[5]}, {maps[6]}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("groupObjects = %+v; want %+v", got, want)
	}
}

func TestDevString(t *testing.T) {
	for _, tt := range []struct {
		dev  uint64
		want string
	}{{0xfd01, "fd:01"}, {0x0803, "08:03"}, {0x10300, "103:00"}, {0x0, "00:00"}, {0x1234567, "345:1267"}} {
		if got := devString(tt.dev); got != tt.want {
			t.Errorf("devString(%#x) = %q; want %q", tt.dev, got, tt.want)
		}
	}
}

func TestFileBuildIDErrors(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "text")
	os.WriteFile(notELF, []byte("#!/bin/sh\necho hi\n"), 0o644)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("\x7fE"), 0o644)
	garbled := filepath.Join(dir, "garbled")
	os.WriteFile(garbled, append([]byte("\x7fELF\x02\x01\x01"), bytes.Repeat([]byte{0xff}, 120)...), 0o644)
	for _, tt := range []struct {
		path   string
		notELF bool
	}{{notELF, true}, {short, true}, {garbled, false}, {filepath.Join(dir, "missing"), false}} {
		id, err := FileBuildID(tt.path)
		if err == nil || errors.Is(err, ErrNotELF) != tt.notELF {
			t.Errorf("FileBuildID(%s) = %q, %v; want an error (ErrNotELF: %v)", filepath.Base(tt.path), id, err, tt.notELF)
		}
	}
}

// FuzzELF: garbled ELF never panics the header, note or symbol readers.
func FuzzELF(f *testing.F) {
	lib, err := os.ReadFile(filepath.Join(fixtureDir(f), "libfix.so"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(lib)
	f.Add(lib[:64])
	f.Add(lib[:len(lib)/2])
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ef, err := newSafeFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		BuildID(ef)
		readSymbols(ef, true)
		var loads []*elf.Prog
		for _, p := range ef.Progs {
			if p.Type == elf.PT_LOAD {
				loads = append(loads, p)
			}
		}
		computeBias([]Mapping{{Start: 0x7f0000000000, End: 0x7f0000001000}}, loads)
	})
}
