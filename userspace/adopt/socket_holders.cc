#include "adopt/socket_holders.h"

#include "core/pidfd.h"
#include "core/unique_fd.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

namespace sockdispatch {

namespace {

struct DirCloser {
  void operator()(DIR *dir) const { ::closedir(dir); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

template <typename T> std::optional<T> parseNumber(std::string_view text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  return value;
}

// "socket:[12345]" -> 12345.
std::optional<uint64_t> socketInode(std::string_view link) {
  constexpr std::string_view kPrefix = "socket:[";
  if (link.substr(0, kPrefix.size()) != kPrefix || link.back() != ']') {
    return std::nullopt;
  }
  return parseNumber<uint64_t>(link.substr(kPrefix.size(), link.size() - kPrefix.size() - 1));
}

// The descriptors an epoll set watches: its fdinfo's "tfd:" lines.
void addPolledFds(const std::string &fdinfoPath, std::set<int> &polled) {
  std::ifstream in(fdinfoPath);
  std::string line;
  while (std::getline(in, line)) {
    int fd = -1;
    if (std::sscanf(line.c_str(), "tfd: %d", &fd) == 1) {
      polled.insert(fd);
    }
  }
}

// One process's descriptors of `inodes`, marked with whether it polls them.
void scanProcess(pid_t pid, const std::set<uint64_t> &inodes, SocketHolders &out,
                 std::vector<pid_t> *hidden) {
  std::string base = "/proc/" + std::to_string(pid);
  DirPtr fds(::opendir((base + "/fd").c_str()));
  if (!fds) {
    if ((errno == EACCES || errno == EPERM) && hidden != nullptr) {
      hidden->push_back(pid);
    }
    return; // exited, or not ours to inspect
  }
  std::vector<SocketHolder> found;
  std::vector<uint64_t> foundInodes;
  std::vector<int> epolls;
  int dirFd = ::dirfd(fds.get());
  char link[64];
  while (dirent *entry = ::readdir(fds.get())) {
    auto fd = parseNumber<int>(entry->d_name);
    if (!fd) {
      continue;
    }
    ssize_t length = ::readlinkat(dirFd, entry->d_name, link, sizeof(link) - 1);
    if (length <= 0) {
      if ((errno == EACCES || errno == EPERM) && hidden != nullptr) {
        hidden->push_back(pid); // the directory lists, its links are ptrace-checked
        return;
      }
      continue;
    }
    std::string_view target(link, static_cast<size_t>(length));
    if (target == "anon_inode:[eventpoll]") {
      epolls.push_back(*fd);
    } else if (auto inode = socketInode(target); inode && inodes.count(*inode) != 0) {
      found.push_back(SocketHolder{pid, *fd, false});
      foundInodes.push_back(*inode);
    }
  }
  if (found.empty()) {
    return;
  }
  std::set<int> polled;
  for (int epoll : epolls) {
    addPolledFds(base + "/fdinfo/" + std::to_string(epoll), polled);
  }
  for (size_t i = 0; i < found.size(); ++i) {
    found[i].polls = polled.count(found[i].fd) != 0;
    out[foundInodes[i]].push_back(found[i]);
  }
}

} // namespace

SocketHolders findSocketHolders(const std::set<uint64_t> &inodes, pid_t exclude,
                                std::vector<pid_t> *hidden) {
  SocketHolders holders;
  DirPtr proc(::opendir("/proc"));
  if (!proc || inodes.empty()) {
    return holders;
  }
  while (dirent *entry = ::readdir(proc.get())) {
    auto pid = parseNumber<pid_t>(entry->d_name);
    if (pid && *pid != exclude) {
      scanProcess(*pid, inodes, holders, hidden);
    }
  }
  return holders;
}

std::optional<SocketHolder> workerOf(uint64_t inode, const SocketHolders &holders) {
  auto found = holders.find(inode);
  if (found == holders.end() || found->second.empty()) {
    return std::nullopt;
  }
  const std::vector<SocketHolder> &candidates = found->second;
  for (const SocketHolder &holder : candidates) {
    if (holder.polls) {
      return holder;
    }
  }
  auto listenersHeldBy = [&holders](pid_t pid) {
    size_t count = 0;
    for (const auto &[other, list] : holders) {
      for (const SocketHolder &holder : list) {
        if (holder.pid == pid) {
          ++count;
          break;
        }
      }
    }
    return count;
  };
  SocketHolder best = candidates.front();
  size_t bestCount = listenersHeldBy(best.pid);
  for (const SocketHolder &holder : candidates) {
    size_t count = listenersHeldBy(holder.pid);
    if (count < bestCount || (count == bestCount && holder.pid > best.pid)) {
      best = holder;
      bestCount = count;
    }
  }
  return best;
}

Result<UniqueFd> copyHeldSocket(uint64_t inode, const SocketHolders &holders) {
  std::string what = "copy socket:[" + std::to_string(inode) + "]";
  auto found = holders.find(inode);
  if (found == holders.end() || found->second.empty()) {
    return logicError(what, "no process this one may inspect holds it");
  }
  Error last;
  for (const SocketHolder &holder : found->second) {
    auto pidfd = openPidfd(holder.pid);
    if (!pidfd) {
      last = pidfd.error();
      continue;
    }
    auto copy = copyDescriptor(pidfd->get(), holder.pid, holder.fd);
    if (!copy) {
      last = copy.error();
      if (last.code == EPERM) {
        return last;
      }
      continue;
    }
    struct stat status {};
    if (::fstat(copy->get(), &status) == 0 && status.st_ino == inode) {
      return std::move(copy.value());
    }
    last = logicError(what, "its descriptor changed while it was copied");
  }
  return last;
}

} // namespace sockdispatch
