package proc

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseMaps(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Mapping
	}{
		{"executable text",
			"55d0c0a00000-55d0c0a02000 r-xp 00001000 fd:01 1234                       /usr/bin/sipd",
			Mapping{0x55d0c0a00000, 0x55d0c0a02000, 0x1000, "r-xp", "fd:01", 1234, "/usr/bin/sipd", false}},
		{"path with spaces",
			"7f0000000000-7f0000001000 r--p 00000000 08:02 99  /opt/my app/lib x.so",
			Mapping{0x7f0000000000, 0x7f0000001000, 0, "r--p", "08:02", 99, "/opt/my app/lib x.so", false}},
		{"path with trailing space kept",
			"7f0000000000-7f0000001000 r--p 00000000 08:02 99  /tmp/odd ",
			Mapping{0x7f0000000000, 0x7f0000001000, 0, "r--p", "08:02", 99, "/tmp/odd ", false}},
		{"deleted file",
			"7f0000000000-7f0000001000 r-xp 00000000 08:02 99 /tmp/doomed target (deleted)",
			Mapping{0x7f0000000000, 0x7f0000001000, 0, "r-xp", "08:02", 99, "/tmp/doomed target", true}},
		{"carriage return ends a file name",
			"7f0000000000-7f0000001000 r--p 00000000 08:02 99 /tmp/cr\r",
			Mapping{0x7f0000000000, 0x7f0000001000, 0, "r--p", "08:02", 99, "/tmp/cr\r", false}},
		{"memfd",
			"7f0000000000-7f0000001000 rw-s 00000000 00:01 4711 /memfd:lp-module (deleted)",
			Mapping{0x7f0000000000, 0x7f0000001000, 0, "rw-s", "00:01", 4711, "/memfd:lp-module", true}},
		{"heap",
			"55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0                          [heap]",
			Mapping{0x55d0c1000000, 0x55d0c1021000, 0, "rw-p", "00:00", 0, "[heap]", false}},
		{"stack",
			"7ffc8a9e0000-7ffc8aa01000 rw-p 00000000 00:00 0                          [stack]",
			Mapping{0x7ffc8a9e0000, 0x7ffc8aa01000, 0, "rw-p", "00:00", 0, "[stack]", false}},
		{"vdso",
			"7ffc8abf0000-7ffc8abf2000 r-xp 00000000 00:00 0                          [vdso]",
			Mapping{0x7ffc8abf0000, 0x7ffc8abf2000, 0, "r-xp", "00:00", 0, "[vdso]", false}},
		{"vsyscall",
			"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
			Mapping{0xffffffffff600000, 0xffffffffff601000, 0, "--xp", "00:00", 0, "[vsyscall]", false}},
		{"anonymous, no path",
			"7f1234560000-7f1234570000 rw-p 00000000 00:00 0",
			Mapping{0x7f1234560000, 0x7f1234570000, 0, "rw-p", "00:00", 0, "", false}},
		{"anonymous, padding only",
			"7f1234560000-7f1234570000 ---p 00000000 00:00 0                          ",
			Mapping{0x7f1234560000, 0x7f1234570000, 0, "---p", "00:00", 0, "", false}},
		{"named anonymous",
			"7f1234560000-7f1234570000 r-xp 00000000 00:00 0                          [anon:lp:fix-1]",
			Mapping{0x7f1234560000, 0x7f1234570000, 0, "r-xp", "00:00", 0, "[anon:lp:fix-1]", false}},
		{"pseudo-name with (deleted) is not a file",
			"7f1234560000-7f1234570000 rw-p 00000000 00:00 0 [anon:x (deleted)]",
			Mapping{0x7f1234560000, 0x7f1234570000, 0, "rw-p", "00:00", 0, "[anon:x (deleted)]", false}},
		{"large offset and device numbers",
			"7f1234560000-7f1234570000 r--p 1234567890 103:1a 18446744073709551615 /dev/dri/x",
			Mapping{0x7f1234560000, 0x7f1234570000, 0x1234567890, "r--p", "103:1a", 18446744073709551615, "/dev/dri/x", false}},
	}
	var all strings.Builder
	var want []Mapping
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMaps(strings.NewReader(tt.line + "\n"))
			if err != nil {
				t.Fatalf("ParseMaps(%q): %v", tt.line, err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Fatalf("ParseMaps(%q) = %+v; want [%+v]", tt.line, got, tt.want)
			}
		})
		all.WriteString(tt.line + "\n\n")
		want = append(want, tt.want)
	}
	// All lines together, with blank lines between and no final newline.
	got, err := ParseMaps(strings.NewReader(strings.TrimSuffix(all.String(), "\n\n")))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMaps(all) = %d mappings, %v; want %d", len(got), err, len(want))
	}
}

func TestParseMapsErrors(t *testing.T) {
	for _, tt := range []struct{ name, text string }{
		{"too few columns", "7f00-7f01 r-xp 0 fd:01"},
		{"no dash", "7f00 r-xp 0 fd:01 1 /x"},
		{"bad start", "zz-7f01 r-xp 0 fd:01 1 /x"},
		{"end not above start", "7f01000-7f01000 r-xp 0 fd:01 1 /x"},
		{"perms too short", "7f00-7f01 r-x 0 fd:01 1 /x"},
		{"perms letter", "7f00-7f01 rwxq 0 fd:01 1 /x"},
		{"offset with 0x", "7f00-7f01 r-xp 0x0 fd:01 1 /x"},
		{"device without colon", "7f00-7f01 r-xp 0 fd01 1 /x"},
		{"inode not decimal", "7f00-7f01 r-xp 0 fd:01 1a /x"},
		{"negative", "7f00-7f01 r-xp -1 fd:01 1 /x"},
		{"second line bad", "7f00-7f01 r-xp 0 fd:01 1 /x\ngarbage"},
		{"line too long", "7f00-7f01 r-xp 0 fd:01 1 /" + strings.Repeat("x", maxMapsLine)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMaps(strings.NewReader(tt.text))
			if err == nil {
				t.Fatalf("ParseMaps(%.60q) = %+v, nil; want an error", tt.text, got)
			}
			if tt.name != "line too long" && !errors.Is(err, ErrBadMaps) {
				t.Errorf("ParseMaps(%.60q) error %v; want ErrBadMaps", tt.text, err)
			}
		})
	}
}

func TestReadMapsSelf(t *testing.T) {
	maps, err := ReadMaps(1 << 23)
	if err == nil {
		t.Fatalf("ReadMaps(missing pid) = %d mappings; want an error", len(maps))
	}
	maps, err = ReadMaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var stack, exec bool
	for i, m := range maps {
		if i > 0 && m.Start < maps[i-1].End {
			t.Errorf("mapping %s overlaps or precedes %s", m, maps[i-1])
		}
		stack = stack || m.Path == "[stack]"
		exec = exec || (m.IsFile() && m.Executable())
	}
	if !stack || !exec {
		t.Errorf("our own maps: [stack] %v, executable file %v; want both", stack, exec)
	}
}

func FuzzParseMaps(f *testing.F) {
	for _, s := range []string{
		"55d0c0a00000-55d0c0a02000 r-xp 00001000 fd:01 1234                       /usr/bin/sipd\n",
		"7f0000000000-7f0000001000 r-xp 00000000 08:02 99 /tmp/doomed target (deleted)\n[heap]\n",
		"7f1234560000-7f1234570000 rw-p 00000000 00:00 0\n7ffc8a9e0000-7ffc8aa01000 rw-p 00000000 00:00 0 [stack]",
		"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
		"1-0 ---- 0 : 0", "-", "\t\t\n",
		"7f00-7f01 r-xp 0 fd:01 1 /carriage\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		maps, err := ParseMaps(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, m := range maps {
			if m.End <= m.Start || len(m.Perms) != 4 {
				t.Fatalf("accepted invalid mapping %+v", m)
			}
			// What we print, we parse back to the same thing.
			again, err := ParseMaps(strings.NewReader(m.String()))
			if err != nil || len(again) != 1 || !reflect.DeepEqual(again[0], m) {
				t.Fatalf("round trip of %+v via %q = %+v, %v", m, m.String(), again, err)
			}
		}
	})
}
