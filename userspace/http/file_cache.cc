#include "http/file_cache.h"

#include <fcntl.h>
#include <time.h>

#include <algorithm>

namespace sockdispatch {

bool FileCache::sameFile(const struct stat &a, const struct stat &b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mode == b.st_mode && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
         a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

size_t FileCache::weight(const std::string &key, const Entry &entry) {
  return key.size() + entry.name.size() + entry.body.size() + entry.etag.size() +
         entry.lastModified.size() + sizeof(Entry);
}

const FileCache::Entry *FileCache::lookup(int rootFd, const std::string &key) {
  auto found = index_.find(key);
  if (found == index_.end()) {
    return nullptr;
  }
  Order::iterator where = found->second;
  Entry &entry = where->second;
  // The clock is read only when a checked copy may be trusted for a while.
  bool trusted = false;
  std::chrono::steady_clock::time_point now{};
  if (bounds_.valid.count() != 0) {
    now = std::chrono::steady_clock::now();
    trusted = now - entry.checked < bounds_.valid;
  }
  if (!trusted) {
    struct stat current {};
    if (::fstatat(rootFd, entry.name.c_str(), &current, 0) != 0 || !sameFile(current, entry.info)) {
      erase(where);
      return nullptr;
    }
    entry.checked = now;
  }
  order_.splice(order_.begin(), order_, where);
  return &where->second;
}

bool FileCache::settled(const struct stat &info) const {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  auto nanos = [](const timespec &t) {
    return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
  };
  auto latest = std::max(nanos(info.st_mtim), nanos(info.st_ctim));
  return nanos(now) - latest >= bounds_.settle;
}

bool FileCache::insert(const std::string &key, Entry entry) {
  if (auto found = index_.find(key); found != index_.end()) {
    erase(found->second);
  }
  size_t added = weight(key, entry);
  if (added > bounds_.maxBytes || bounds_.maxEntries == 0 || !settled(entry.info)) {
    return false;
  }
  while (!order_.empty() &&
         (bytes_ + added > bounds_.maxBytes || index_.size() >= bounds_.maxEntries)) {
    erase(std::prev(order_.end()));
  }
  entry.checked = std::chrono::steady_clock::now();
  order_.emplace_front(key, std::move(entry));
  index_.emplace(order_.front().first, order_.begin());
  bytes_ += added;
  return true;
}

void FileCache::erase(Order::iterator where) {
  bytes_ -= weight(where->first, where->second);
  index_.erase(where->first);
  order_.erase(where);
}

} // namespace sockdispatch
