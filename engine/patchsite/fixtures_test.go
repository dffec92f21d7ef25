package patchsite

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// base is where the tests pretend the object's .text is mapped.
const base = 0x555555554000

// fn is one function read from a compiled fixture.
type fn struct {
	addr uint64
	code []byte
}

// objects compiles testdata sources once per test binary (like delve's
// BuildFixture) into a directory TestMain removes, and reads their functions.
type objects struct {
	mu    sync.Mutex
	dir   string
	funcs map[string]map[string]fn // "src flags" -> function name -> fn
}

var objs = objects{funcs: map[string]map[string]fn{}}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lp-patchsite-test-")
	if err != nil {
		panic(err)
	}
	objs.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// compile builds testdata/src with gcc -c and flags, and returns its
// functions by name.
func compile(tb testing.TB, src, flags string) map[string]fn {
	tb.Helper()
	key := src + " " + flags
	objs.mu.Lock()
	defer objs.mu.Unlock()
	if f, ok := objs.funcs[key]; ok {
		return f
	}
	out := filepath.Join(objs.dir, strings.NewReplacer(" ", "_", "=", "_", ",", "_").Replace(key)+".o")
	args := append(strings.Fields(flags), "-c", "-o", out, filepath.Join("testdata", src))
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		tb.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		tb.Fatal(err)
	}
	funcs := map[string]fn{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || int(s.Section) >= len(f.Sections) {
			continue
		}
		data, err := f.Sections[s.Section].Data()
		if err != nil {
			tb.Fatal(err)
		}
		if s.Value+s.Size > uint64(len(data)) {
			tb.Fatalf("%s: symbol %s outside its section", out, s.Name)
		}
		funcs[s.Name] = fn{addr: base + f.Sections[s.Section].Offset + s.Value, code: data[s.Value : s.Value+s.Size]}
	}
	objs.funcs[key] = funcs
	return funcs
}
