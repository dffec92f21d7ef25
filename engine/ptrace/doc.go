// Package ptrace controls a running multi-threaded x86-64 Linux process from
// Go: it attaches to every thread, stops and resumes them all, reads and
// writes registers and memory (read-only code pages included), runs a system
// call or a function call inside the target, and detaches leaving the target
// running and unchanged.
//
// # Concurrency
//
// The kernel ties a ptrace relationship to the tracer's thread, not its
// process, so every request for one target is issued from one OS thread: a
// goroutine that holds runtime.LockOSThread for its whole life and runs the
// closures that the exported methods send it (the execPtraceFunc pattern of
// go-delve). A Process's methods may be called from any goroutine; they are
// serialised. While attached and idle, that goroutine keeps the target going:
// it forwards signals the target receives, lets new threads run, and forgets
// threads that exit.
//
// # Scheduling
//
// That thread runs at nice -20, and each stop-the-world window (every
// thread stopped) in the real-time class, SCHED_FIFO priority 1, which it
// leaves as soon as the last thread is let go: otherwise the target's
// threads it resumes first can preempt it (a nice level counts only within
// one cgroup or autogroup) while the rest of the target waits stopped.
// Where real time is refused, windows run at the nice level.
//
// # Privileges
//
// Attaching needs CAP_SYS_PTRACE over the target (root, or the same user
// with Yama's ptrace_scope permitting it); running windows in real time
// needs CAP_SYS_NICE (or RLIMIT_RTPRIO). lp refuses to attach to its own
// process.
//
// # What can go wrong in a target
//
// Threads are seized with PTRACE_SEIZE and without PTRACE_O_EXITKILL, so if
// the tracer dies for any reason the kernel detaches every thread and the
// target keeps running. A panic in this package's code is recovered on the
// ptrace goroutine, the registers of any thread it was using are restored
// and every thread is detached before the panic is reported as an error.
// The one unrecoverable window is a crash of the whole tracer process while a
// thread runs an injected call or system call: that thread then resumes with
// the injected register values. Injections are kept short for that reason.
//
// A function called in the target by Call runs with the target's other
// threads running. If it does not return by the deadline it is abandoned: the
// thread's registers and extended state are put back as they were, but
// anything the function did (a lock it took, memory it allocated) stays.
//
// When the target is also a child of this process (as in tests), the exit
// status of its main thread may be collected here; the parent's own Wait then
// reports that the child was already reaped.
package ptrace
