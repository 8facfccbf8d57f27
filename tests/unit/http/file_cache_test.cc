// FileCache on real files: an entry is answered only while a stat of its path shows the same
// file, unchanged; bounds and the settle time decide what is kept.
#include "http/file_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace sockdispatch {
namespace {

class FileCacheTest : public testing::Test {
protected:
  void SetUp() override {
    char base[] = "/tmp/sockdispatch-cache-XXXXXX";
    ASSERT_NE(::mkdtemp(base), nullptr);
    dir_ = base;
    root_ = ::open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(root_, 0);
  }
  void TearDown() override {
    ::close(root_);
    std::filesystem::remove_all(dir_);
  }

  void write(const std::string &name, const std::string &text) {
    std::ofstream(dir_ / name) << text;
  }
  FileCache::Entry read(const std::string &name) {
    FileCache::Entry entry;
    entry.name = name;
    EXPECT_EQ(::fstatat(root_, name.c_str(), &entry.info, 0), 0);
    std::ifstream in(dir_ / name);
    entry.body.assign(std::istreambuf_iterator<char>(in), {});
    return entry;
  }
  static FileCache::Bounds unsettled(size_t bytes = 1 << 20, size_t entries = 16) {
    return FileCache::Bounds{bytes, entries, std::chrono::nanoseconds(0)};
  }

  std::filesystem::path dir_;
  int root_ = -1;
};

TEST_F(FileCacheTest, AnUnchangedFileIsAnsweredFromTheCache) {
  write("a.txt", "alpha");
  FileCache cache(unsettled());
  EXPECT_EQ(cache.lookup(root_, "a.txt"), nullptr);
  ASSERT_TRUE(cache.insert("a.txt", read("a.txt")));
  const FileCache::Entry *hit = cache.lookup(root_, "a.txt");
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->body, "alpha");
}

TEST_F(FileCacheTest, AChangedRemovedOrReplacedFileMisses) {
  write("a.txt", "alpha");
  write("b.txt", "beta");
  write("c.txt", "gamma");
  FileCache cache(unsettled());
  ASSERT_TRUE(cache.insert("a.txt", read("a.txt")));
  ASSERT_TRUE(cache.insert("b.txt", read("b.txt")));
  ASSERT_TRUE(cache.insert("c.txt", read("c.txt")));
  write("a.txt", "alpha, longer");                         // size and times
  std::filesystem::remove(dir_ / "b.txt");                 // gone
  write("d.txt", "GAMMA");                                 // same size,
  std::filesystem::rename(dir_ / "d.txt", dir_ / "c.txt"); // another inode
  EXPECT_EQ(cache.lookup(root_, "a.txt"), nullptr);
  EXPECT_EQ(cache.lookup(root_, "b.txt"), nullptr);
  EXPECT_EQ(cache.lookup(root_, "c.txt"), nullptr);
  EXPECT_EQ(cache.size(), 0U) << "stale entries are dropped";
  EXPECT_EQ(cache.bytes(), 0U);
}

TEST_F(FileCacheTest, APermissionChangeMisses) {
  write("a.txt", "alpha");
  FileCache cache(unsettled());
  FileCache::Entry entry = read("a.txt");
  entry.info.st_ctim.tv_nsec ^= 1; // as if chmod had stamped a new change time
  ASSERT_TRUE(cache.insert("a.txt", entry));
  EXPECT_EQ(cache.lookup(root_, "a.txt"), nullptr);
  ASSERT_TRUE(cache.insert("a.txt", read("a.txt")));
  ASSERT_EQ(::chmod((dir_ / "a.txt").c_str(), 0), 0);
  EXPECT_EQ(cache.lookup(root_, "a.txt"), nullptr) << "the mode is part of the check";
}

TEST_F(FileCacheTest, AFileJustWrittenIsNotKept) {
  write("a.txt", "alpha");
  FileCache cache(FileCache::Bounds{}); // settles after 2 s
  EXPECT_FALSE(cache.insert("a.txt", read("a.txt")));
  EXPECT_EQ(cache.lookup(root_, "a.txt"), nullptr);
  // Stamped 10 s ago (utimens stamps the change time now, which is what the check reads
  // too, so the entry's own times are set back instead).
  FileCache::Entry old = read("a.txt");
  old.info.st_mtim.tv_sec -= 10;
  old.info.st_ctim.tv_sec -= 10;
  EXPECT_TRUE(cache.insert("a.txt", old));
}

TEST_F(FileCacheTest, WithinTheValidTimeTheFileIsNotLookedAtAgain) {
  write("a.txt", "alpha");
  FileCache::Bounds trusting = unsettled();
  trusting.valid = std::chrono::hours(1);
  FileCache cache(trusting);
  ASSERT_TRUE(cache.insert("a.txt", read("a.txt")));
  std::filesystem::remove(dir_ / "a.txt");
  const FileCache::Entry *hit = cache.lookup(root_, "a.txt");
  ASSERT_NE(hit, nullptr) << "answered from memory for up to an hour, as configured";
  EXPECT_EQ(hit->body, "alpha");
  FileCache checking(unsettled());
  write("b.txt", "beta");
  ASSERT_TRUE(checking.insert("b.txt", read("b.txt")));
  std::filesystem::remove(dir_ / "b.txt");
  EXPECT_EQ(checking.lookup(root_, "b.txt"), nullptr);
}

TEST_F(FileCacheTest, TheLeastRecentlyUsedLeavesFirst) {
  write("a.txt", "alpha");
  write("b.txt", "beta");
  write("c.txt", "gamma");
  FileCache cache(unsettled(1 << 20, 2));
  ASSERT_TRUE(cache.insert("a.txt", read("a.txt")));
  ASSERT_TRUE(cache.insert("b.txt", read("b.txt")));
  ASSERT_NE(cache.lookup(root_, "a.txt"), nullptr); // a is now the most recent
  ASSERT_TRUE(cache.insert("c.txt", read("c.txt")));
  EXPECT_EQ(cache.size(), 2U);
  EXPECT_NE(cache.lookup(root_, "a.txt"), nullptr);
  EXPECT_EQ(cache.lookup(root_, "b.txt"), nullptr);
  EXPECT_NE(cache.lookup(root_, "c.txt"), nullptr);
}

TEST_F(FileCacheTest, TheByteBoundHolds) {
  write("a.txt", std::string(4000, 'a'));
  write("b.txt", std::string(4000, 'b'));
  write("big.txt", std::string(9000, 'c'));
  FileCache cache(unsettled(8000, 16));
  ASSERT_TRUE(cache.insert("a.txt", read("a.txt")));
  ASSERT_TRUE(cache.insert("b.txt", read("b.txt")));
  EXPECT_LE(cache.bytes(), 8000U);
  EXPECT_EQ(cache.size(), 1U) << "a made room for b";
  EXPECT_FALSE(cache.insert("big.txt", read("big.txt"))) << "larger than the whole cache";
  EXPECT_LE(cache.bytes(), 8000U);
}

} // namespace
} // namespace sockdispatch
