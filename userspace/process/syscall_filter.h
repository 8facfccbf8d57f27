#pragma once

#include "core/result.h"

namespace sockdispatch {

// Confines the calling process, for good, to the system calls a built-in worker makes once it
// serves (docs/design/sandbox.md): its event loop, its connections (accept, read, write,
// sendfile, the line's recvmsg/sendmsg), the files under --root (openat2, fstat, pread), memory
// and threads (clone with CLONE_THREAD only; clone3 answers ENOSYS, so the C library falls back
// to clone, whose flags can be checked). Anything else (execve, fork, ptrace, socket, connect,
// bind, mount, bpf, kill, setuid, an executable mapping) kills the process with SIGSYS, which
// the master reports as "killed by signal 31 (Bad system call)". Sets no_new_privs first.
//
// Call it after the worker's set-up (the loop, the handler, the listener) and before it
// serves. Fails (nothing installed) where the kernel has no seccomp filters.
Result<void> confineToWorkerSyscalls();

} // namespace sockdispatch
