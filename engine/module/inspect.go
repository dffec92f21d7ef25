package module

import (
	"debug/elf"
	"fmt"
	"sort"
	"strings"
)

// Load modes, as spelled by `lpctl patch apply --mode`.
const (
	ModeInject = "inject"
	ModeDlopen = "dlopen"
)

// RelocInfo counts the dynamic relocations of one type.
type RelocInfo struct {
	Type   string `json:"type"`   // e.g. R_X86_64_RELATIVE
	Count  int    `json:"count"`  //
	Inject bool   `json:"inject"` // the inject loader applies this type
}

// Info is the report of `lpctl patch inspect`.
type Info struct {
	Path        string      `json:"path"`
	ID          string      `json:"id"`
	Replaces    []Replace   `json:"replaces"`
	Originals   []Original  `json:"originals,omitempty"`
	Target      string      `json:"target,omitempty"`
	Depends     []string    `json:"depends,omitempty"`
	Description string      `json:"description,omitempty"`
	SHA256      string      `json:"sha256"`
	Size        int         `json:"size"`
	Needed      []string    `json:"needed"`
	TLS         bool        `json:"tls"`
	CXX         bool        `json:"cxx"`
	Exceptions  bool        `json:"exceptions"`
	EHFrame     bool        `json:"eh_frame"`
	TextRel     bool        `json:"textrel"`
	Init        int         `json:"init"` // initialisers: DT_INIT (0/1) + DT_INIT_ARRAY entries
	Relocs      []RelocInfo `json:"relocs"`
	// Mode is the load mode the module needs: "inject" when the inject
	// loader can load it, else "dlopen".
	Mode  string   `json:"mode"`
	Hints []string `json:"hints,omitempty"`
}

// Inspect reports what the module is and what applying it needs.
func (m *Module) Inspect() Info {
	in := Info{
		Path:        m.Path,
		ID:          m.ID,
		Replaces:    append([]Replace(nil), m.Replaces...),
		Originals:   append([]Original(nil), m.Originals...),
		Target:      m.Target,
		Depends:     append([]string(nil), m.Depends...),
		Description: m.Description,
		SHA256:      m.SHA256,
		Size:        m.Size,
		Needed:      append([]string{}, m.Needed...),
		TLS:         m.TLS,
		CXX:         m.CXX,
		Exceptions:  m.Exceptions,
		EHFrame:     m.EHFrame,
		TextRel:     m.TextRel,
		Init:        m.InitArray,
		Relocs:      []RelocInfo{},
		Mode:        ModeInject,
	}
	if m.Init {
		in.Init++
	}
	dlopen := func(format string, args ...any) {
		in.Mode = ModeDlopen
		in.Hints = append(in.Hints, fmt.Sprintf(format, args...)+": apply with --mode dlopen")
	}
	types := make([]elf.R_X86_64, 0, len(m.Relocs))
	for t := range m.Relocs {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	var unsupported []string
	for _, t := range types {
		ok := InjectSupported(t)
		in.Relocs = append(in.Relocs, RelocInfo{Type: t.String(), Count: m.Relocs[t], Inject: ok})
		if !ok {
			unsupported = append(unsupported, t.String())
		}
	}
	if m.RELR > 0 {
		in.Relocs = append(in.Relocs, RelocInfo{Type: "RELR", Count: m.RELR})
		unsupported = append(unsupported, "RELR (-z pack-relative-relocs)")
	}
	if m.TLS {
		dlopen("uses thread-local storage")
	}
	if m.Exceptions {
		dlopen("has C++ exception handling (.gcc_except_table, __cxa_throw)")
	}
	if len(unsupported) > 0 {
		dlopen("inject mode does not apply relocations %s", strings.Join(unsupported, ", "))
	}
	if m.TextRel {
		in.Hints = append(in.Hints, "has text relocations: rebuild with -fPIC")
	}
	for _, l := range m.Needed {
		if !strings.HasPrefix(l, "libc.so") {
			in.Hints = append(in.Hints, fmt.Sprintf("needs %s: inject mode binds only to libraries already mapped in the target", l))
		}
	}
	if m.Target == "" {
		in.Hints = append(in.Hints, "no target build-id: apply cannot check it patches the build it was written for (add LP_TARGET_BUILD_ID)")
	}
	return in
}
