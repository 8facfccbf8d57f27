#pragma once

#include <string>

namespace sockdispatch {

// What the running kernel offers the dispatch program, probed with tiny programs and maps
// (each probe needs CAP_BPF; without it a feature reads "unknown"). Said at start-up and by
// `sockdispatch status`, so that a kernel that refuses the program is named with its cause.
struct KernelFeatures {
  enum class Have { kYes, kNo, kUnknown };
  std::string release;                // uname -r
  Have reuseport = Have::kUnknown;    // sk_reuseport programs, bpf_sk_select_reuseport (4.19)
  Have migrate = Have::kUnknown;      // sk_reuseport/migrate: md->migrating_sk (5.14)
  Have bpfLoop = Have::kUnknown;      // the bpf_loop helper (5.17)
  Have mmapableMaps = Have::kUnknown; // BPF_F_MMAPABLE array maps (5.5)
  Have btf = Have::kUnknown;          // the kernel's BTF, /sys/kernel/btf/vmlinux (tracing)
};

KernelFeatures probeKernelFeatures();

// "kernel 6.1.0-30-amd64: reuseport yes, migrate yes, bpf_loop yes, mmapable maps yes, BTF yes"
std::string describeKernelFeatures(const KernelFeatures &features);

} // namespace sockdispatch
