#pragma once

#include "core/result.h"

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>

namespace sockdispatch {

// The account workers run as (`--user NAME`): its ids, looked up in the user database.
struct UserIdentity {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Looks `name` up (getpwnam_r). An unknown user, or root itself (a worker
// running as uid 0 would keep root's files), is an Error whose message names the value.
Result<UserIdentity> lookupUser(const std::string &name);

// The problem with `--user NAME`, for a usage error ("user 'x': no such user"), or nullopt.
std::optional<std::string> checkUser(const std::string &name);

// Makes the calling process `user` for good, in a freshly forked worker that holds everything
// root-only it needs (its listener, the scoreboard mapping): supplementary groups
// (initgroups), gid, uid (real, effective and saved), then every capability cleared
// (effective, permitted, inheritable, ambient and the bounding set), PR_SET_NO_NEW_PRIVS set
// and PR_SET_PDEATHSIG (which the uid change clears) set again to `deathSignal` (0: none, for
// a worker that outlives its master). Then it
// checks the drop held: ids are the user's, no capability is left and setuid(0) fails.
// Must run before the process starts any thread: the set*id calls change this thread only.
Result<void> dropPrivileges(const UserIdentity &user, int deathSignal);

// What a worker calls right after fork: nothing when `name` is empty, else lookupUser and
// dropPrivileges.
Result<void> becomeUser(const std::string &name, int deathSignal);

// Raises this process's soft RLIMIT_NOFILE to its hard limit (workers inherit it): each
// connection is a descriptor, and the usual soft default of 1024 caps a worker far below
// what its memory allows. Returns the new soft limit.
Result<rlim_t> raiseDescriptorLimit();

} // namespace sockdispatch
