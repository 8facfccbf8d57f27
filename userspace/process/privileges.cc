#include "process/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <vector>

namespace sockdispatch {

namespace {

using CapabilityData = std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3>;

// capget/capset have no glibc wrapper (libcap is one more dependency for four words).
Result<CapabilityData> readCapabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  CapabilityData data{};
  if (::syscall(SYS_capget, &header, data.data()) != 0) {
    return osError("read the process capabilities");
  }
  return data;
}

Result<void> clearCapabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  CapabilityData none{};
  if (::syscall(SYS_capset, &header, none.data()) != 0) {
    return osError("clear the process capabilities");
  }
  return {};
}

// Drops every capability still in the bounding set; PR_CAPBSET_READ fails past the kernel's
// last capability. Needs CAP_SETPCAP, so it runs before the uid changes.
Result<void> clearBoundingSet() {
  for (int cap = 0;; ++cap) {
    int present = ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (present < 0) {
      return {};
    }
    if (present == 1 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return osError("drop capability " + std::to_string(cap) + " from the bounding set");
    }
  }
}

Result<void> verifyDrop(const UserIdentity &user) {
  const std::string context = "drop privileges to user " + user.name;
  uid_t ruid = 0;
  uid_t euid = 0;
  uid_t suid = 0;
  gid_t rgid = 0;
  gid_t egid = 0;
  gid_t sgid = 0;
  if (::getresuid(&ruid, &euid, &suid) != 0 || ::getresgid(&rgid, &egid, &sgid) != 0) {
    return osError(context);
  }
  if (ruid != user.uid || euid != user.uid || suid != user.uid || rgid != user.gid ||
      egid != user.gid || sgid != user.gid) {
    return logicError(context, "the process ids are not the user's after the change");
  }
  if (::setuid(0) == 0 || ::setgid(0) == 0) {
    return logicError(context, "the process could become root again");
  }
  auto caps = readCapabilities();
  if (!caps) {
    return caps.error();
  }
  for (const auto &word : caps.value()) {
    if (word.effective != 0 || word.permitted != 0 || word.inheritable != 0) {
      return logicError(context, "capabilities are left after clearing them");
    }
  }
  for (int cap = 0; ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap) {
    if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 0 ||
        ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) != 0) {
      return logicError(context, "capability " + std::to_string(cap) +
                                     " is left in the bounding or ambient set");
    }
  }
  if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
    return logicError(context, "no_new_privs is not set");
  }
  return {};
}

} // namespace

Result<UserIdentity> lookupUser(const std::string &name) {
  const std::string context = "look up user '" + name + "'";
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(size > 0 ? static_cast<size_t>(size) : 16384);
  passwd entry{};
  passwd *found = nullptr;
  int rc = 0;
  while ((rc = ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found)) ==
         ERANGE) {
    buffer.resize(buffer.size() * 2);
  }
  if (rc != 0) {
    return osError(rc, context);
  }
  if (found == nullptr) {
    return logicError(context, "no such user");
  }
  if (entry.pw_uid == 0) {
    return logicError(context, "uid 0 is root; workers must run as an unprivileged user");
  }
  return UserIdentity{entry.pw_name, entry.pw_uid, entry.pw_gid};
}

std::optional<std::string> checkUser(const std::string &name) {
  auto user = lookupUser(name);
  if (!user) {
    const Error &error = user.error();
    return error.code != 0 ? error.message() : "user '" + name + "': " + error.detail;
  }
  return std::nullopt;
}

Result<void> dropPrivileges(const UserIdentity &user, int deathSignal) {
  const std::string who = " for user " + user.name;
  pid_t parent = ::getppid();
  if (::initgroups(user.name.c_str(), user.gid) != 0) {
    return osError("set the supplementary groups" + who);
  }
  if (::setresgid(user.gid, user.gid, user.gid) != 0) {
    return osError("set gid " + std::to_string(user.gid) + who);
  }
  if (auto bounded = clearBoundingSet(); !bounded) {
    return bounded;
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return osError("clear the ambient capabilities");
  }
  // Leaving uid 0 clears the permitted and effective sets (no SECBIT_KEEP_CAPS here).
  if (::setresuid(user.uid, user.uid, user.uid) != 0) {
    return osError("set uid " + std::to_string(user.uid) + who);
  }
  if (auto cleared = clearCapabilities(); !cleared) {
    return cleared;
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return osError("set no_new_privs");
  }
  // The credential change cleared the parent-death signal: set it again, then make sure
  // the parent did not die in between (its signal would have been missed).
  if (deathSignal != 0) {
    if (::prctl(PR_SET_PDEATHSIG, deathSignal, 0, 0, 0) != 0) {
      return osError("set the parent-death signal");
    }
    if (::getppid() != parent) {
      return logicError("drop privileges" + who, "the master exited meanwhile");
    }
  }
  return verifyDrop(user);
}

Result<void> becomeUser(const std::string &name, int deathSignal) {
  if (name.empty()) {
    return {};
  }
  auto user = lookupUser(name);
  if (!user) {
    return user.error();
  }
  return dropPrivileges(user.value(), deathSignal);
}

Result<rlim_t> raiseDescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return osError("read the descriptor limit");
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      return osError("raise the descriptor limit to " + std::to_string(limit.rlim_max));
    }
  }
  return limit.rlim_cur;
}

} // namespace sockdispatch
