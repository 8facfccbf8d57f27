// Static files: target resolution (decoding, normalisation, traversal) and the handler on a
// real directory tree with real symlinks.
#include "http/static_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <ostream>

namespace sockdispatch {
namespace {

struct ResolveCase {
  const char *name;
  const char *target;
  bool ok;
  const char *relative;
};

// Names the case in test listings instead of dumping its bytes.
void PrintTo(const ResolveCase &c, std::ostream *os) {
  *os << c.name;
}

class ResolveTarget : public testing::TestWithParam<ResolveCase> {};

TEST_P(ResolveTarget, Resolves) {
  const auto &c = GetParam();
  auto resolved = resolveTarget(c.target);
  ASSERT_EQ(resolved.has_value(), c.ok) << c.target;
  if (c.ok) {
    EXPECT_EQ(resolved->relative, c.relative) << c.target;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ResolveTarget,
    testing::Values(ResolveCase{"root", "/", true, ""},
                    ResolveCase{"file", "/a/b.txt", true, "a/b.txt"},
                    ResolveCase{"query_dropped", "/a.txt?x=../../etc", true, "a.txt"},
                    ResolveCase{"fragment_dropped", "/a.txt#top", true, "a.txt"},
                    ResolveCase{"dot_segments", "/./a/./b", true, "a/b"},
                    ResolveCase{"double_slashes", "//a///b", true, "a/b"},
                    ResolveCase{"dotdot_inside", "/a/../b", true, "b"},
                    ResolveCase{"dotdot_escape", "/../etc/passwd", false, ""},
                    ResolveCase{"dotdot_escape_deep", "/a/../../etc/passwd", false, ""},
                    ResolveCase{"encoded_dotdot", "/%2e%2e/etc/passwd", false, ""},
                    ResolveCase{"encoded_dotdot_mixed_case", "/%2E%2e/%2e%2E/etc", false, ""},
                    ResolveCase{"encoded_slash_dotdot", "/a%2f..%2f..%2fetc", false, ""},
                    ResolveCase{"decoded_once_only", "/%252e%252e/x", true, "%2e%2e/x"},
                    ResolveCase{"encoded_space", "/my%20file.txt", true, "my file.txt"},
                    ResolveCase{"nul_byte", "/a%00.txt", false, ""},
                    ResolveCase{"bad_escape", "/a%zz", false, ""},
                    ResolveCase{"truncated_escape", "/a%2", false, ""},
                    ResolveCase{"relative_target", "a/b", false, ""},
                    ResolveCase{"absolute_form", "http://example.com/a/b", true, "a/b"},
                    ResolveCase{"absolute_form_no_path", "http://example.com", true, ""},
                    ResolveCase{"backslash_dotdot", "/..\\..\\etc\\passwd", false, ""},
                    ResolveCase{"encoded_backslash", "/a%5c..%5c..%5cetc", false, ""},
                    ResolveCase{"encoded_newline", "/a%0a.txt", false, ""},
                    ResolveCase{"encoded_del", "/a%7f.txt", false, ""},
                    ResolveCase{"double_encoded_slash", "/a%252f..%252fb", true, "a%2f..%2fb"},
                    ResolveCase{"dotfile_kept", "/.env", true, ".env"},
                    ResolveCase{"dot_dir_kept", "/a/.git/config", true, "a/.git/config"}),
    [](const testing::TestParamInfo<ResolveCase> &p) { return p.param.name; });

class StaticFiles : public testing::Test {
protected:
  void SetUp() override {
    char base[] = "/tmp/sockdispatch-static-XXXXXX";
    ASSERT_NE(::mkdtemp(base), nullptr);
    dir_ = base;
    root_ = dir_ / "root";
    std::filesystem::create_directories(root_ / "docs");
    std::filesystem::create_directories(root_ / "empty");
    write(root_ / "index.html", "<h1>home</h1>");
    write(root_ / "hello.txt", "Hello, World!");
    write(root_ / "docs" / "index.html", "docs");
    write(dir_ / "secret.txt", "outside the root");
    std::filesystem::create_symlink(dir_ / "secret.txt", root_ / "escape.txt");
    std::filesystem::create_symlink("../secret.txt", root_ / "escape_relative.txt");
    std::filesystem::create_symlink("hello.txt", root_ / "alias.txt");
    auto handler = StaticFileHandler::open(root_.string());
    ASSERT_TRUE(handler) << handler.error().message();
    handler_ = std::move(handler.value());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static void write(const std::filesystem::path &path, const std::string &text) {
    std::ofstream(path) << text;
  }

  Response get(const std::string &target, const std::string &method = "GET") {
    Request request;
    request.method = method;
    request.target = target;
    Response response;
    handler_->handle(request, response);
    return response;
  }

  // The body, whether it was inlined or is to be sent from the file.
  static std::string fileText(Response &response) {
    if (!response.file.valid()) {
      return response.body;
    }
    std::string text(response.fileLength, '\0');
    EXPECT_EQ(::pread(response.file.get(), text.data(), text.size(), response.fileOffset),
              static_cast<ssize_t>(text.size()));
    return text;
  }

  static std::string headerOf(const Response &response, const std::string &name) {
    for (const auto &[key, value] : response.headers) {
      if (key == name) {
        return value;
      }
    }
    return {};
  }

  std::filesystem::path dir_;
  std::filesystem::path root_;
  std::unique_ptr<StaticFileHandler> handler_;
};

TEST_F(StaticFiles, ServesASmallFileInlineWithItsType) {
  auto response = get("/hello.txt");
  EXPECT_EQ(response.status, 200);
  EXPECT_FALSE(response.file.valid()) << "small files travel with the headers";
  EXPECT_EQ(fileText(response), "Hello, World!");
  EXPECT_EQ(headerOf(response, "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_FALSE(headerOf(response, "Last-Modified").empty());
}

TEST_F(StaticFiles, LargeFilesAreSentZeroCopy) {
  std::string big(100 * 1024, 'q');
  write(root_ / "big.bin", big);
  auto response = get("/big.bin");
  EXPECT_EQ(response.status, 200);
  ASSERT_TRUE(response.file.valid()) << "large files go out with sendfile";
  EXPECT_EQ(response.fileLength, big.size());
  EXPECT_EQ(headerOf(response, "Content-Type"), "application/octet-stream");
  EXPECT_EQ(fileText(response), big);
}

TEST_F(StaticFiles, HeadTellsTheLengthGetWouldSend) {
  auto response = get("/hello.txt", "HEAD");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.contentLength(), 13U); // the writer sends no body for HEAD
  std::string big(100UL * 1024, 'q');
  write(root_ / "big.bin", big);
  auto large = get("/big.bin", "HEAD");
  EXPECT_EQ(large.status, 200);
  EXPECT_EQ(large.contentLength(), big.size());
}

TEST_F(StaticFiles, DirectoryServesItsIndex) {
  auto response = get("/");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(fileText(response), "<h1>home</h1>");
  auto docs = get("/docs/");
  EXPECT_EQ(docs.status, 200);
  EXPECT_EQ(fileText(docs), "docs");
}

TEST_F(StaticFiles, DirectoryWithoutSlashRedirects) {
  auto response = get("/docs?x=1");
  EXPECT_EQ(response.status, 301);
  EXPECT_EQ(headerOf(response, "Location"), "/docs/");
}

TEST_F(StaticFiles, DirectoryWithoutIndexIsForbidden) {
  EXPECT_EQ(get("/empty/").status, 403);
}

TEST_F(StaticFiles, MissingIs404) {
  EXPECT_EQ(get("/nope.txt").status, 404);
  EXPECT_EQ(get("/hello.txt/child").status, 404);
}

TEST_F(StaticFiles, TraversalIsRefused) {
  EXPECT_EQ(get("/../secret.txt").status, 400);
  EXPECT_EQ(get("/%2e%2e/secret.txt").status, 400);
  EXPECT_EQ(get("/docs/../../secret.txt").status, 400);
}

TEST_F(StaticFiles, SymlinksOutOfTheRootAreRefused) {
  EXPECT_EQ(get("/escape.txt").status, 403);
  EXPECT_EQ(get("/escape_relative.txt").status, 403);
}

TEST_F(StaticFiles, SymlinksInsideTheRootAreFollowed) {
  auto response = get("/alias.txt");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(fileText(response), "Hello, World!");
}

TEST_F(StaticFiles, OnlyGetAndHead) {
  EXPECT_EQ(get("/hello.txt", "HEAD").status, 200);
  auto post = get("/hello.txt", "POST");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(headerOf(post, "Allow"), "GET, HEAD");
  EXPECT_EQ(get("/hello.txt", "DELETE").status, 405);
}

TEST(ResolveTargetHidden, FlagsAnySegmentStartingWithADot) {
  EXPECT_TRUE(resolveTarget("/.env")->hidden);
  EXPECT_TRUE(resolveTarget("/a/.git/config")->hidden);
  EXPECT_TRUE(resolveTarget("/%2egit/HEAD")->hidden);
  EXPECT_FALSE(resolveTarget("/a/b.txt")->hidden);
  EXPECT_FALSE(resolveTarget("/a/./b/../c.txt")->hidden);
}

TEST_F(StaticFiles, DotfilesAreHiddenByDefault) {
  write(root_ / ".env", "SECRET=1");
  std::filesystem::create_directories(root_ / ".git");
  write(root_ / ".git" / "config", "[core]");
  EXPECT_EQ(get("/.env").status, 404);
  EXPECT_EQ(get("/%2eenv").status, 404);
  EXPECT_EQ(get("/.git/config").status, 404);
  EXPECT_EQ(get("/docs/../.env").status, 404);
  StaticFileHandler::Options withDotfiles;
  withDotfiles.serveDotfiles = true;
  auto shown = StaticFileHandler::open(root_.string(), withDotfiles);
  ASSERT_TRUE(shown) << shown.error().message();
  Request request;
  request.method = "GET";
  request.target = "/.env";
  Response response;
  shown.value()->handle(request, response);
  EXPECT_EQ(response.status, 200);
}

class StaticFilesConditional : public StaticFiles {
protected:
  Response getWith(const std::string &target, HeaderList headers,
                   const std::string &method = "GET") {
    Request request;
    request.method = method;
    request.target = target;
    request.headers = std::move(headers);
    Response response;
    handler_->handle(request, response);
    return response;
  }
};

TEST_F(StaticFilesConditional, EtagAndIfNoneMatchGive304) {
  auto first = get("/hello.txt");
  std::string etag = headerOf(first, "ETag");
  ASSERT_FALSE(etag.empty());
  EXPECT_EQ(headerOf(first, "Accept-Ranges"), "bytes");
  auto again = getWith("/hello.txt", {{"If-None-Match", etag}});
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
  EXPECT_EQ(headerOf(again, "ETag"), etag);
  EXPECT_EQ(getWith("/hello.txt", {{"If-None-Match", "\"other\", " + etag}}).status, 304);
  EXPECT_EQ(getWith("/hello.txt", {{"If-None-Match", "*"}}).status, 304);
  EXPECT_EQ(getWith("/hello.txt", {{"If-None-Match", "\"other\""}}).status, 200);
  EXPECT_EQ(getWith("/hello.txt", {{"If-None-Match", etag}}, "HEAD").status, 304);
}

TEST_F(StaticFilesConditional, IfModifiedSince) {
  auto first = get("/hello.txt");
  std::string lastModified = headerOf(first, "Last-Modified");
  EXPECT_EQ(getWith("/hello.txt", {{"If-Modified-Since", lastModified}}).status, 304);
  EXPECT_EQ(getWith("/hello.txt", {{"If-Modified-Since", httpDate(::time(nullptr) + 3600)}}).status,
            304);
  EXPECT_EQ(getWith("/hello.txt", {{"If-Modified-Since", "Thu, 01 Jan 1998 00:00:00 GMT"}}).status,
            200);
  EXPECT_EQ(getWith("/hello.txt", {{"If-Modified-Since", "yesterday"}}).status, 200);
  // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
  EXPECT_EQ(
      getWith("/hello.txt", {{"If-None-Match", "\"other\""}, {"If-Modified-Since", lastModified}})
          .status,
      200);
}

TEST_F(StaticFilesConditional, SingleRangeGives206) {
  auto part = getWith("/hello.txt", {{"Range", "bytes=7-11"}});
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(headerOf(part, "Content-Range"), "bytes 7-11/13");
  EXPECT_EQ(fileText(part), "World");
  auto tail = getWith("/hello.txt", {{"Range", "bytes=-6"}});
  EXPECT_EQ(tail.status, 206);
  EXPECT_EQ(fileText(tail), "World!");
}

TEST_F(StaticFilesConditional, RangeOfALargeFileIsSentFromTheFile) {
  std::string big(100 * 1024, 'q');
  big[50000] = 'X';
  write(root_ / "big.bin", big);
  auto part = getWith("/big.bin", {{"Range", "bytes=50000-99999"}});
  EXPECT_EQ(part.status, 206);
  ASSERT_TRUE(part.file.valid());
  EXPECT_EQ(part.fileOffset, 50000);
  EXPECT_EQ(part.fileLength, 50000U);
  EXPECT_EQ(fileText(part), big.substr(50000, 50000));
}

TEST_F(StaticFilesConditional, UnsatisfiableRangeGives416) {
  auto response = getWith("/hello.txt", {{"Range", "bytes=13-"}});
  EXPECT_EQ(response.status, 416);
  EXPECT_EQ(headerOf(response, "Content-Range"), "bytes */13");
}

TEST_F(StaticFilesConditional, IgnoredRangesServeTheWholeFile) {
  EXPECT_EQ(getWith("/hello.txt", {{"Range", "bytes=0-1,3-4"}}).status, 200);
  EXPECT_EQ(getWith("/hello.txt", {{"Range", "lines=1-2"}}).status, 200);
  EXPECT_EQ(getWith("/hello.txt", {{"Range", "bytes=0-1"}}, "HEAD").status, 200);
  auto stale = getWith("/hello.txt", {{"Range", "bytes=0-1"}, {"If-Range", "\"old\""}});
  EXPECT_EQ(stale.status, 200);
  EXPECT_EQ(fileText(stale), "Hello, World!");
  std::string etag = headerOf(get("/hello.txt"), "ETag");
  EXPECT_EQ(getWith("/hello.txt", {{"Range", "bytes=0-1"}, {"If-Range", etag}}).status, 206);
}

TEST_F(StaticFiles, UnreadableFileIsForbidden) {
  // Root reads any file, so the check runs in a child that becomes "nobody" first.
  write(root_ / "locked.txt", "x");
  ASSERT_EQ(::chmod((root_ / "locked.txt").c_str(), 0), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::geteuid() == 0 &&
        (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)) {
      ::_exit(2);
    }
    auto handler = StaticFileHandler::open(root_.string());
    if (!handler) {
      ::_exit(3);
    }
    Request request;
    request.method = "GET";
    request.target = "/locked.txt";
    Response response;
    handler.value()->handle(request, response);
    ::_exit(response.status == 403 ? 0 : 4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: could not drop privileges, 3: root unopenable, "
                                       "4: the locked file was not answered 403";
}

// The small-file cache, through the handler: a handler whose files count as settled at once,
// so what it reads is kept; every change below must still be answered from the disk.
class CachedStaticFiles : public StaticFiles {
protected:
  void SetUp() override {
    StaticFiles::SetUp();
    StaticFileHandler::Options options;
    options.cache.settle = std::chrono::nanoseconds(0);
    auto handler = StaticFileHandler::open(root_.string(), options);
    ASSERT_TRUE(handler) << handler.error().message();
    handler_ = std::move(handler.value());
  }
};

TEST_F(CachedStaticFiles, AnEditedFileIsAnsweredWithItsNewBytes) {
  EXPECT_EQ(get("/hello.txt").body, "Hello, World!");
  EXPECT_EQ(get("/hello.txt").body, "Hello, World!"); // from the cache
  write(root_ / "hello.txt", "Hello, Earth! And more.");
  auto edited = get("/hello.txt");
  EXPECT_EQ(edited.body, "Hello, Earth! And more.");
  EXPECT_EQ(edited.contentLength(), 23U);
}

TEST_F(CachedStaticFiles, AFileReplacedByRenameIsAnsweredWithTheNewOne) {
  EXPECT_EQ(get("/").body, "<h1>home</h1>");
  write(dir_ / "new.html", "<h1>new</h1>!");                        // the same size
  std::filesystem::rename(dir_ / "new.html", root_ / "index.html"); // another inode
  EXPECT_EQ(get("/").body, "<h1>new</h1>!");
}

TEST_F(CachedStaticFiles, ARemovedFileIsNotFound) {
  EXPECT_EQ(get("/docs/").status, 200);
  std::filesystem::remove(root_ / "docs" / "index.html");
  EXPECT_EQ(get("/docs/").status, 403); // a directory without an index
}

TEST_F(CachedStaticFiles, ASymlinkSwappedInToLeaveTheRootIsRefused) {
  EXPECT_EQ(get("/hello.txt").status, 200);
  std::filesystem::remove(root_ / "hello.txt");
  std::filesystem::create_symlink(dir_ / "secret.txt", root_ / "hello.txt");
  EXPECT_EQ(get("/hello.txt").status, 403);
}

TEST_F(CachedStaticFiles, ConditionalsAndRangesAreAnsweredFromTheCache) {
  auto first = get("/hello.txt");
  std::string etag = headerOf(first, "ETag");
  Request request;
  request.method = "GET";
  request.target = "/hello.txt";
  request.headers.emplace_back("If-None-Match", etag);
  Response notModified;
  handler_->handle(request, notModified);
  EXPECT_EQ(notModified.status, 304);
  Request ranged;
  ranged.method = "GET";
  ranged.target = "/hello.txt";
  ranged.headers.emplace_back("Range", "bytes=7-11");
  Response part;
  handler_->handle(ranged, part);
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, "World");
  EXPECT_EQ(headerOf(part, "Content-Range"), "bytes 7-11/13");
}

TEST(StaticFilesOpen, MissingRootFails) {
  auto handler = StaticFileHandler::open("/nonexistent/sockdispatch-root");
  ASSERT_FALSE(handler);
  EXPECT_NE(handler.error().message().find("/nonexistent/sockdispatch-root"), std::string::npos);
}

} // namespace
} // namespace sockdispatch
