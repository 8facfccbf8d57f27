#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace sockdispatch::test {

// A temporary directory for a test's files, removed with everything in it afterwards.
class TempDir {
public:
  TempDir() {
    char base[] = "/tmp/sockdispatch-test-XXXXXX";
    if (::mkdtemp(base) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = base;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  // Writes (or replaces) the file `name` in the directory; returns its path.
  [[nodiscard]] std::string write(const std::string &name, const std::string &text) const {
    std::string file = path_ + "/" + name;
    std::ofstream(file) << text;
    return file;
  }
  [[nodiscard]] const std::string &path() const { return path_; }

private:
  std::string path_;
};

} // namespace sockdispatch::test
