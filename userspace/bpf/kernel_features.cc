#include "bpf/kernel_features.h"

#include "core/unique_fd.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fmt/format.h>
#include <linux/bpf.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace sockdispatch {

namespace {

using Have = KernelFeatures::Have;

// A refusal for want of privilege says nothing about the kernel.
Have fromErrno(int err) {
  return err == EPERM || err == EACCES ? Have::kUnknown : Have::kNo;
}

// libbpf's probes answer 1 (yes), 0 (no) or a negative errno.
Have fromProbe(int answer) {
  if (answer == 1) {
    return Have::kYes;
  }
  return answer == 0 ? Have::kNo : fromErrno(-answer);
}

// An sk_reuseport program that reads md->migrating_sk, loaded as SELECT_OR_MIGRATE: a kernel
// before 5.14 refuses the context offset. EACCES is the verifier's answer here, so only
// EPERM means "not allowed to ask".
Have probeMigrate() {
  const bpf_insn program[] = {
      // r2 = *(u64 *)(r1 + offsetof(struct sk_reuseport_md, migrating_sk))
      {.code = BPF_LDX | BPF_MEM | BPF_DW,
       .dst_reg = BPF_REG_2,
       .src_reg = BPF_REG_1,
       .off = offsetof(sk_reuseport_md, migrating_sk),
       .imm = 0},
      // r0 = SK_PASS
      {.code = BPF_ALU64 | BPF_MOV | BPF_K,
       .dst_reg = BPF_REG_0,
       .src_reg = 0,
       .off = 0,
       .imm = SK_PASS},
      {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
  };
  bpf_prog_load_opts options{};
  options.sz = sizeof(options);
  options.expected_attach_type = BPF_SK_REUSEPORT_SELECT_OR_MIGRATE;
  UniqueFd fd(bpf_prog_load(BPF_PROG_TYPE_SK_REUSEPORT, "sd_probe", "Dual MIT/GPL", program,
                            sizeof(program) / sizeof(program[0]), &options));
  if (fd) {
    return Have::kYes;
  }
  int err = errno;
  return err == EPERM ? Have::kUnknown : Have::kNo;
}

Have probeMmapableArray() {
  bpf_map_create_opts options{};
  options.sz = sizeof(options);
  options.map_flags = BPF_F_MMAPABLE;
  UniqueFd fd(
      bpf_map_create(BPF_MAP_TYPE_ARRAY, "sd_probe", sizeof(__u32), sizeof(__u64), 1, &options));
  return fd ? Have::kYes : fromErrno(errno);
}

const char *word(Have have) {
  switch (have) {
  case Have::kYes: return "yes";
  case Have::kNo: return "no";
  case Have::kUnknown: break;
  }
  return "unknown";
}

} // namespace

KernelFeatures probeKernelFeatures() {
  KernelFeatures features;
  utsname name{};
  features.release = ::uname(&name) == 0 ? name.release : "unknown";
  features.reuseport = fromProbe(
      libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_REUSEPORT, BPF_FUNC_sk_select_reuseport, nullptr));
  features.migrate = features.reuseport == Have::kYes ? probeMigrate() : features.reuseport;
  features.bpfLoop =
      fromProbe(libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_REUSEPORT, BPF_FUNC_loop, nullptr));
  features.mmapableMaps = probeMmapableArray();
  features.btf = ::access("/sys/kernel/btf/vmlinux", R_OK) == 0 ? Have::kYes : Have::kNo;
  return features;
}

std::string describeKernelFeatures(const KernelFeatures &features) {
  return fmt::format("kernel {}: reuseport {}, migrate {}, bpf_loop {}, mmapable maps {}, BTF {}",
                     features.release, word(features.reuseport), word(features.migrate),
                     word(features.bpfLoop), word(features.mmapableMaps), word(features.btf));
}

} // namespace sockdispatch
