package module

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fixtures builds the C/C++ modules of testdata once per test binary (like
// delve's BuildFixture) into a directory removed by TestMain.
type fixtures struct {
	mu    sync.Mutex
	dir   string
	built map[string]string // output name -> path
}

var fx = fixtures{built: map[string]string{}}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lp-module-test-")
	if err != nil {
		panic(err)
	}
	fx.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles testdata/src with compiler (cc or c++) and extra args into
// out, once, and returns the path of out.
func build(tb testing.TB, out, compiler, src string, args ...string) string {
	tb.Helper()
	fx.mu.Lock()
	defer fx.mu.Unlock()
	if p, ok := fx.built[out]; ok {
		return p
	}
	include, err := filepath.Abs(filepath.Join("..", "..", "include"))
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(fx.dir, out)
	argv := append([]string{"-I", include, "-o", p, filepath.Join("testdata", src)}, args...)
	cmd := exec.Command(compiler, argv...)
	if outb, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", compiler, strings.Join(argv, " "), err, outb)
	}
	fx.built[out] = p
	return p
}

// soArgs builds a patch module the documented way.
var soArgs = []string{"-shared", "-fPIC", "-O2"}

func buildSO(tb testing.TB, out, src string, extra ...string) string {
	tb.Helper()
	compiler := "cc"
	if strings.HasSuffix(src, ".cc") {
		compiler = "c++"
	}
	return build(tb, out, compiler, src, append(append([]string{}, soArgs...), extra...)...)
}
