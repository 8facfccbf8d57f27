// unit_sandbox UNIT -- COMMAND [ARG...]
//
// Runs COMMAND inside the sandbox that a systemd service unit's [Service] section describes,
// applied the way systemd 252 (Debian 12) applies it, for tests on a machine whose PID 1 is
// not systemd: a private mount namespace (ProtectSystem=strict with ReadWritePaths= and
// RuntimeDirectory=, ReadOnlyPaths=, PrivateTmp=, ProtectHome=), UMask=, the capability
// bounding set, no_new_privs, and seccomp filters for SystemCallFilter= (groups expanded by
// `systemd-analyze syscall-filter`, @default added to an allow list as systemd does),
// SystemCallErrorNumber=, SystemCallArchitectures=native, RestrictAddressFamilies= and
// MemoryDenyWriteExecute=.
//
// Every key of the section is either applied or named in kNotApplied (process management,
// or a protection this tool does not rebuild: the VM test runs those under the real systemd,
// packaging/test-kernel.sh); any other key fails with exit 2, so a setting added to the unit
// is never silently left out of the test. Exit 1: the sandbox could not be set up.
#include <fcntl.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

const std::set<std::string> kApplied = {"CapabilityBoundingSet",
                                        "NoNewPrivileges",
                                        "UMask",
                                        "SystemCallFilter",
                                        "SystemCallErrorNumber",
                                        "SystemCallArchitectures",
                                        "RestrictAddressFamilies",
                                        "MemoryDenyWriteExecute",
                                        "ProtectSystem",
                                        "ReadWritePaths",
                                        "ReadOnlyPaths",
                                        "PrivateTmp",
                                        "PrivateMounts",
                                        "ProtectHome",
                                        "RuntimeDirectory"};

const std::set<std::string> kNotApplied = {
    // how the service is run, not what it may do
    "Type", "NotifyAccess", "ExecStartPre", "ExecStart", "ExecReload", "KillSignal", "KillMode",
    "TimeoutStopSec", "Restart", "RestartSec", "RestartPreventExitStatus",
    "RuntimeDirectoryPreserve",
    // protections left to the real systemd (packaging/test-kernel.sh)
    "PrivateDevices", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
    "ProtectClock", "ProtectHostname", "ProtectProc", "RestrictNamespaces", "RestrictRealtime",
    "RestrictSUIDSGID", "LockPersonality"};

[[noreturn]] void fail(int code, const std::string &what) {
  std::fprintf(stderr, "unit_sandbox: %s\n", what.c_str());
  std::exit(code);
}

[[noreturn]] void failErrno(const std::string &what) {
  fail(1, what + ": " + std::strerror(errno));
}

std::vector<std::string> words(const std::string &text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string word; in >> word;) {
    out.push_back(word);
  }
  return out;
}

// The [Service] section's assignments, in order (a key may repeat).
std::vector<std::pair<std::string, std::string>> serviceSection(const std::string &path) {
  std::ifstream in(path);
  if (!in) {
    fail(2, "cannot read " + path);
  }
  std::vector<std::pair<std::string, std::string>> entries;
  std::string section;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line[0] == ';') {
      continue;
    }
    if (line[0] == '[') {
      section = line;
      continue;
    }
    auto equals = line.find('=');
    if (section != "[Service]" || equals == std::string::npos) {
      continue;
    }
    entries.emplace_back(line.substr(0, equals), line.substr(equals + 1));
  }
  return entries;
}

// systemd's system-call groups, by name, from `systemd-analyze syscall-filter`.
std::map<std::string, std::vector<std::string>> syscallGroups() {
  std::unique_ptr<FILE, int (*)(FILE *)> out(
      ::popen("systemd-analyze syscall-filter 2>/dev/null", "r"), ::pclose);
  if (!out) {
    failErrno("run systemd-analyze syscall-filter");
  }
  std::map<std::string, std::vector<std::string>> groups;
  std::string current;
  std::array<char, 512> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), out.get()) != nullptr) {
    auto item = words(buffer.data());
    if (item.empty() || item[0][0] == '#') {
      continue;
    }
    if (buffer[0] == '@') {
      current = item[0];
    } else if (!current.empty()) {
      groups[current].push_back(item[0]);
    }
  }
  if (groups.empty()) {
    fail(1, "systemd-analyze syscall-filter listed no group");
  }
  return groups;
}

void expand(const std::map<std::string, std::vector<std::string>> &groups, const std::string &item,
            std::set<std::string> &into) {
  if (item[0] != '@') {
    into.insert(item);
    return;
  }
  auto group = groups.find(item);
  if (group == groups.end()) {
    fail(2, "unknown system-call group " + item);
  }
  for (const std::string &member : group->second) {
    expand(groups, member, into);
  }
}

std::string lastValue(const std::vector<std::pair<std::string, std::string>> &entries,
                      const std::string &key) {
  std::string value;
  for (const auto &[name, assigned] : entries) {
    if (name == key) {
      value = assigned;
    }
  }
  return value;
}

std::vector<std::string> allValues(const std::vector<std::pair<std::string, std::string>> &entries,
                                   const std::string &key) {
  std::vector<std::string> values;
  for (const auto &[name, assigned] : entries) {
    if (name == key) {
      for (const std::string &word : words(assigned)) {
        values.push_back(word);
      }
    }
  }
  return values;
}

bool under(const std::string &path, const std::string &top) {
  return path == top || (path.starts_with(top) && (top == "/" || path[top.size()] == '/'));
}

void bindOntoItself(const std::string &path) {
  if (::mount(path.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    failErrno("bind " + path + " onto itself");
  }
}

void setReadOnly(const std::string &path, unsigned int flags) {
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  if (::mount_setattr(AT_FDCWD, path.c_str(), flags, &attr, sizeof attr) != 0) {
    failErrno("make " + path + " read-only");
  }
}

// /proc/self/mountinfo's mount points (octal escapes decoded), outermost first.
std::vector<std::string> mountPoints() {
  std::ifstream in("/proc/self/mountinfo");
  std::vector<std::string> points;
  for (std::string line; std::getline(in, line);) {
    auto fields = words(line);
    if (fields.size() < 5) {
      continue;
    }
    std::string decoded;
    const std::string &raw = fields[4];
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\\' && i + 3 < raw.size()) {
        decoded += static_cast<char>(std::stoi(raw.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        decoded += raw[i];
      }
    }
    points.push_back(decoded);
  }
  return points;
}

void mountTmpfs(const std::string &path, const char *options, unsigned long flags) {
  if (::mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | flags, options) != 0) {
    failErrno("mount a tmpfs on " + path);
  }
}

bool exists(const std::string &path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

void applyMounts(const std::vector<std::pair<std::string, std::string>> &entries) {
  if (::unshare(CLONE_NEWNS) != 0) {
    failErrno("unshare the mount namespace");
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) {
    failErrno("make / a slave mount");
  }
  std::vector<std::string> writable{"/dev", "/proc", "/sys"};
  for (const std::string &path : allValues(entries, "ReadWritePaths")) {
    writable.push_back(path);
  }
  for (const std::string &name : allValues(entries, "RuntimeDirectory")) {
    std::string path = "/run/" + name;
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      failErrno("create " + path);
    }
    writable.push_back(path);
  }
  if (lastValue(entries, "ProtectSystem") == "strict") {
    for (size_t i = 3; i < writable.size(); ++i) {
      if (exists(writable[i])) {
        bindOntoItself(writable[i]);
      }
    }
    for (const std::string &point : mountPoints()) {
      bool keep = std::any_of(writable.begin(), writable.end(),
                              [&point](const std::string &top) { return under(point, top); });
      if (!keep && exists(point)) {
        setReadOnly(point, AT_SYMLINK_NOFOLLOW);
      }
    }
  } else if (!lastValue(entries, "ProtectSystem").empty()) {
    fail(2, "ProtectSystem=" + lastValue(entries, "ProtectSystem") + " is not applied (strict is)");
  }
  for (std::string path : allValues(entries, "ReadOnlyPaths")) {
    bool optional = path.starts_with("-");
    path = optional ? path.substr(1) : path;
    if (!exists(path)) {
      // systemd would refuse to start the unit; a container may lack the file (sysrq-trigger)
      if (!optional) {
        std::fprintf(stderr, "unit_sandbox: ReadOnlyPaths=%s does not exist here\n", path.c_str());
      }
      continue;
    }
    bindOntoItself(path);
    setReadOnly(path, AT_RECURSIVE);
  }
  if (lastValue(entries, "PrivateTmp") == "yes") {
    mountTmpfs("/tmp", "mode=1777", 0);
    mountTmpfs("/var/tmp", "mode=1777", 0);
  }
  if (lastValue(entries, "ProtectHome") == "yes") {
    for (const char *path : {"/home", "/root", "/run/user"}) {
      if (exists(path)) {
        mountTmpfs(path, "mode=0000", MS_RDONLY);
      }
    }
  }
}

int capabilityByName(const std::string &name) {
  static const std::map<std::string, int> kNames = {{"CAP_CHOWN", CAP_CHOWN},
                                                    {"CAP_DAC_OVERRIDE", CAP_DAC_OVERRIDE},
                                                    {"CAP_KILL", CAP_KILL},
                                                    {"CAP_SETGID", CAP_SETGID},
                                                    {"CAP_SETUID", CAP_SETUID},
                                                    {"CAP_SETPCAP", CAP_SETPCAP},
                                                    {"CAP_NET_BIND_SERVICE", CAP_NET_BIND_SERVICE},
                                                    {"CAP_NET_ADMIN", CAP_NET_ADMIN},
                                                    {"CAP_SYS_PTRACE", CAP_SYS_PTRACE},
                                                    {"CAP_SYS_ADMIN", CAP_SYS_ADMIN},
                                                    {"CAP_SYS_RESOURCE", CAP_SYS_RESOURCE},
                                                    {"CAP_PERFMON", CAP_PERFMON},
                                                    {"CAP_BPF", CAP_BPF}};
  auto known = kNames.find(name);
  if (known == kNames.end()) {
    fail(2, "CapabilityBoundingSet: " + name + " is not in this tool's table: add it");
  }
  return known->second;
}

void applyCapabilities(const std::vector<std::pair<std::string, std::string>> &entries) {
  auto kept = allValues(entries, "CapabilityBoundingSet");
  if (kept.empty()) {
    return;
  }
  std::set<int> keep;
  for (const std::string &name : kept) {
    keep.insert(capabilityByName(name));
  }
  // Up to the kernel's last capability (EINVAL beyond it).
  for (int cap = 0; cap < 64; ++cap) {
    if (keep.count(cap) == 0 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL) {
        break;
      }
      failErrno("drop capability " + std::to_string(cap) + " from the bounding set");
    }
  }
}

using Filter = std::unique_ptr<void, decltype(&seccomp_release)>;

void loadFilter(const Filter &filter, const char *what) {
  if (int rc = seccomp_load(filter.get()); rc != 0) {
    errno = -rc;
    failErrno(std::string("load the ") + what + " filter");
  }
}

void addRule(const Filter &filter, uint32_t action, const char *name, unsigned count,
             const scmp_arg_cmp *conditions) {
  int number = seccomp_syscall_resolve_name(name);
  if (number == __NR_SCMP_ERROR) {
    return; // not a call of this architecture, as systemd skips it
  }
  if (int rc = seccomp_rule_add_array(filter.get(), action, number, count, conditions); rc != 0) {
    errno = -rc;
    failErrno(std::string("add ") + name + " to a filter");
  }
}

int errnoByName(const std::string &name) {
  static const std::map<std::string, int> kErrnos = {
      {"EPERM", EPERM}, {"EACCES", EACCES}, {"ENOSYS", ENOSYS}};
  auto known = kErrnos.find(name);
  if (known == kErrnos.end()) {
    fail(2, "SystemCallErrorNumber=" + name + " is not applied (EPERM, EACCES, ENOSYS are)");
  }
  return known->second;
}

void applySystemCallFilter(const std::vector<std::pair<std::string, std::string>> &entries) {
  std::vector<std::string> assignments;
  for (const auto &[name, value] : entries) {
    if (name == "SystemCallFilter") {
      assignments.push_back(value);
    }
  }
  if (assignments.empty()) {
    return;
  }
  if (assignments.front().starts_with("~")) {
    fail(2, "a SystemCallFilter= starting with a deny list is not applied (an allow list is)");
  }
  auto groups = syscallGroups();
  std::set<std::string> allowed;
  expand(groups, "@default", allowed); // what systemd adds to an allow list
  for (const std::string &value : assignments) {
    bool deny = value.starts_with("~");
    std::set<std::string> items;
    for (const std::string &item : words(deny ? value.substr(1) : value)) {
      expand(groups, item, items);
    }
    for (const std::string &item : items) {
      if (deny) {
        allowed.erase(item);
      } else {
        allowed.insert(item);
      }
    }
  }
  std::string errorName = lastValue(entries, "SystemCallErrorNumber");
  uint32_t refuse = errorName.empty()
                        ? SCMP_ACT_KILL_PROCESS
                        : SCMP_ACT_ERRNO(static_cast<uint32_t>(errnoByName(errorName)));
  Filter filter(seccomp_init(refuse), seccomp_release);
  if (!filter) {
    fail(1, "seccomp_init failed");
  }
  for (const std::string &name : allowed) {
    addRule(filter, SCMP_ACT_ALLOW, name.c_str(), 0, nullptr);
  }
  loadFilter(filter, "SystemCallFilter=");
}

int familyByName(const std::string &name) {
  static const std::map<std::string, int> kFamilies = {{"AF_UNIX", AF_UNIX},
                                                       {"AF_INET", AF_INET},
                                                       {"AF_INET6", AF_INET6},
                                                       {"AF_NETLINK", AF_NETLINK},
                                                       {"AF_PACKET", AF_PACKET}};
  auto known = kFamilies.find(name);
  if (known == kFamilies.end()) {
    fail(2, "RestrictAddressFamilies: unknown family " + name);
  }
  return known->second;
}

// RestrictAddressFamilies= and MemoryDenyWriteExecute=: one more filter, allowing by default.
void applyRestrictions(const std::vector<std::pair<std::string, std::string>> &entries) {
  auto families = allValues(entries, "RestrictAddressFamilies");
  bool denyWriteExecute = lastValue(entries, "MemoryDenyWriteExecute") == "yes";
  if (families.empty() && !denyWriteExecute) {
    return;
  }
  Filter filter(seccomp_init(SCMP_ACT_ALLOW), seccomp_release);
  if (!filter) {
    fail(1, "seccomp_init failed");
  }
  if (!families.empty()) {
    std::set<int> allowed;
    for (const std::string &family : families) {
      allowed.insert(familyByName(family));
    }
    for (int family = 0; family < AF_MAX; ++family) {
      if (allowed.count(family) == 0) {
        const std::array is = {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family))};
        addRule(filter, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", is.size(), is.data());
      }
    }
    const std::array beyond = {SCMP_A0(SCMP_CMP_GE, static_cast<scmp_datum_t>(AF_MAX))};
    addRule(filter, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", beyond.size(), beyond.data());
  }
  if (denyWriteExecute) {
    const std::array writeExec = {
        SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC | PROT_WRITE, PROT_EXEC | PROT_WRITE)};
    addRule(filter, SCMP_ACT_ERRNO(EPERM), "mmap", writeExec.size(), writeExec.data());
    const std::array exec = {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)};
    addRule(filter, SCMP_ACT_ERRNO(EPERM), "mprotect", exec.size(), exec.data());
    addRule(filter, SCMP_ACT_ERRNO(EPERM), "pkey_mprotect", exec.size(), exec.data());
    const std::array shmExec = {SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)};
    addRule(filter, SCMP_ACT_ERRNO(EPERM), "shmat", shmExec.size(), shmExec.data());
  }
  loadFilter(filter, "RestrictAddressFamilies=/MemoryDenyWriteExecute=");
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 4 || std::string(argv[2]) != "--") {
    fail(2, "usage: unit_sandbox UNIT -- COMMAND [ARG...]");
  }
  auto entries = serviceSection(argv[1]);
  for (const auto &[name, value] : entries) {
    if (kApplied.count(name) == 0 && kNotApplied.count(name) == 0) {
      fail(2, name + "= is neither applied nor known to be left out: decide which");
    }
  }
  if (lastValue(entries, "SystemCallArchitectures") != "native" &&
      !lastValue(entries, "SystemCallArchitectures").empty()) {
    fail(2, "SystemCallArchitectures= other than native is not applied");
  }
  // Opened before the mount namespace is made: a build tree under /tmp, which PrivateTmp=
  // hides, still runs (the unit runs /usr/sbin/sockdispatch, which no setting hides).
  int command = ::open(argv[3], O_PATH | O_CLOEXEC);
  if (command < 0) {
    failErrno(std::string("open ") + argv[3]);
  }
  applyMounts(entries);
  if (std::string mask = lastValue(entries, "UMask"); !mask.empty()) {
    ::umask(static_cast<mode_t>(std::stoul(mask, nullptr, 8)));
  }
  applyCapabilities(entries);
  if (lastValue(entries, "NoNewPrivileges") == "yes" &&
      ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    failErrno("set no_new_privs");
  }
  // The filters come last, as systemd loads them just before the exec (libseccomp's filters
  // kill a call of another architecture: SystemCallArchitectures=native).
  applyRestrictions(entries);
  applySystemCallFilter(entries);
  ::execveat(command, "", argv + 3, environ, AT_EMPTY_PATH);
  failErrno(std::string("exec ") + argv[3]);
}
