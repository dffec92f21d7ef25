package engine

import (
	"encoding/binary"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"lp/engine/module"
)

// dlopen flags (dlfcn.h).
const (
	rtldNow   = 0x2
	rtldLocal = 0
)

// loadDlopen makes the target load the module with its own dlopen, which
// runs the dynamic linker (TLS, C++ exception tables and unwinding, any
// relocation type) and the module's initialisers. The module's symbols bind
// the dynamic linker's way: against the target's exported symbols, so a
// reference to a global of an executable not linked with -rdynamic does not
// resolve; inject mode binds those too.
func (s *session) loadDlopen(m *module.Module) (*loaded, error) {
	path, err := filepath.Abs(m.Path)
	if err != nil {
		return nil, err
	}
	dlopen, err := s.space.Lookup("dlopen")
	if err != nil {
		return nil, fmt.Errorf("dlopen mode: the target has no dlopen: %w", err)
	}
	scratch, err := s.mmap(0, pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		return nil, err
	}
	defer s.munmap(scratch, pageSize)
	if len(path)+1 > pageSize {
		return nil, fmt.Errorf("module path is %d bytes long", len(path))
	}
	if err := s.proc.WriteMem(scratch, append([]byte(path), 0)); err != nil {
		return nil, err
	}
	l := &loaded{funcs: map[string]uint64{}, vars: map[string]uint64{}, initRan: true}
	handle, err := s.call(dlopen.Addr, scratch, rtldNow|rtldLocal)
	if err != nil {
		// The call may have been abandoned inside the dynamic linker; what
		// it loaded cannot be known, so nothing is undone.
		return l, fmt.Errorf("calling dlopen in pid %d: %w", s.pid, err)
	}
	if handle == 0 {
		return nil, fmt.Errorf("dlopen of %s in pid %d failed: %s", path, s.pid, s.dlerror())
	}
	l.handle = handle
	if dlclose, err := s.space.Lookup("dlclose"); err == nil {
		s.undo(func() error {
			_, err := s.call(dlclose.Addr, handle)
			return err
		})
	}
	// The handle is the module's struct link_map, whose first member is the
	// load bias: static replacement functions (not in .dynsym, so beyond
	// dlsym) are found from it too.
	var word [8]byte
	if err := s.proc.ReadMem(handle, word[:]); err != nil {
		return nil, err
	}
	bias := binary.LittleEndian.Uint64(word[:])
	l.base = bias
	l.bind(m, bias)
	return l, nil
}

// dlerror returns the target's dlerror() text, or a placeholder.
func (s *session) dlerror() string {
	fn, err := s.space.Lookup("dlerror")
	if err != nil {
		return "(no dlerror)"
	}
	msg, err := s.call(fn.Addr)
	if err != nil || msg == 0 {
		return "(no message)"
	}
	buf := make([]byte, 512)
	n := s.proc // read what is readable of the C string
	if err := n.ReadMem(msg, buf); err != nil {
		return "(unreadable message)"
	}
	for i, c := range buf {
		if c == 0 {
			return string(buf[:i])
		}
	}
	return string(buf)
}
