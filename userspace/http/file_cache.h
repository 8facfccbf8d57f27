#pragma once

#include <sys/stat.h>

#include <chrono>
#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sockdispatch {

// A worker's copy of the small files it serves, so a request for one costs a stat(2) of its
// path rather than an open, a stat, a read and a close.
//
// An entry is good only while the path still names the same file, unchanged: the same device
// and inode, size, modification and change time (to the nanosecond). `lookup` checks that
// against a fresh fstatat(2) of the path on every request, so an edited, replaced, removed or
// re-permissioned file is never answered from the copy; the caller then opens it again (with
// openat2 and RESOLVE_BENEATH, as for any file) and stores the new contents. A path that now
// leads somewhere else (a symlink swapped in) stats as another inode, so it misses too.
//
// A file changed within `settle` of its reading is not kept. File systems stamp times from a
// coarse clock (a tick of 1 to 10 ms; whole seconds on some), so a second write in the same
// tick as the first can leave size and times as they were. Once the clock has moved past the
// stamped times, any later change stamps later times, and the stat tells it.
//
// With `valid` set, an entry checked less than that long ago is answered without the stat (as
// nginx's open_file_cache_valid): a change is then seen up to `valid` late.
//
// Bounded by bytes and entries; the least recently used entry leaves first. Used on one
// loop thread.
class FileCache {
public:
  struct Entry {
    std::string name; // as opened, relative to the root ("docs/index.html")
    struct stat info {};
    std::string body;
    std::string etag;
    std::string lastModified;
    std::chrono::steady_clock::time_point checked{}; // last found unchanged (set by the cache)
  };

  struct Bounds {
    size_t maxBytes = 4UL * 1024 * 1024;
    size_t maxEntries = 1024;
    std::chrono::nanoseconds settle = std::chrono::seconds(2);
    // An entry checked less than this long ago is answered without a stat (0: always stat).
    std::chrono::nanoseconds valid{0};
  };

  explicit FileCache(Bounds bounds) : bounds_(bounds) {}

  // The entry for `key` if its file is unchanged, stat'ed relative to `rootFd`; a stale entry
  // is dropped. The pointer is good until the next insert.
  const Entry *lookup(int rootFd, const std::string &key);
  // Keeps `entry` for `key`, read just now, if it fits the bounds and its file has settled
  // (replacing an older one for the key). Whether it was kept.
  bool insert(const std::string &key, Entry entry);

  [[nodiscard]] size_t bytes() const { return bytes_; }
  [[nodiscard]] size_t size() const { return index_.size(); }
  [[nodiscard]] static bool sameFile(const struct stat &a, const struct stat &b);

private:
  using Order = std::list<std::pair<std::string, Entry>>; // most recently used first
  void erase(Order::iterator where);
  static size_t weight(const std::string &key, const Entry &entry);

  [[nodiscard]] bool settled(const struct stat &info) const;

  Bounds bounds_;
  size_t bytes_ = 0;
  Order order_;
  std::unordered_map<std::string_view, Order::iterator> index_; // views into order_'s keys
};

} // namespace sockdispatch
