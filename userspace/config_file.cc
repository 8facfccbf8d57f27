#include "config_file.h"

#include "address.h"
#include "names.h"
#include "option_ranges.h"
#include "privileges.h"
#include "unique_fd.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <toml++/toml.h>
#include <type_traits>

namespace sockdispatch {

namespace {

// Applies a TOML value to the options; returns the problem when the value is refused.
using Apply = std::function<std::optional<std::string>(const toml::node &, AttachOptions &)>;
using Copy = std::function<void(const AttachOptions &, AttachOptions &)>;

struct KeySpec {
  ConfigKey key;
  Apply apply;
  Copy copy;
};

std::string_view typeName(toml::node_type type) {
  switch (type) {
  case toml::node_type::table: return "a table";
  case toml::node_type::array: return "an array";
  case toml::node_type::string: return "a string";
  case toml::node_type::integer: return "an integer";
  case toml::node_type::floating_point: return "a floating-point number";
  case toml::node_type::boolean: return "a boolean";
  case toml::node_type::date: return "a date";
  case toml::node_type::time: return "a time";
  case toml::node_type::date_time: return "a date-time";
  case toml::node_type::none: break;
  }
  return "nothing";
}

std::string wrongType(std::string_view expected, const toml::node &node) {
  return fmt::format("expected {}, got {}", expected, typeName(node.type()));
}

// `field` is a pointer to an AttachOptions member, or a generic lambda `[](auto &o) -> auto &`
// for a nested one (`o.limits.maxBodyBytes`): std::invoke reaches the setting either way.
template <typename Field> Copy copier(Field field) {
  return [field](const AttachOptions &from, AttachOptions &to) {
    std::invoke(field, to) = std::invoke(field, from);
  };
}

template <typename Field>
KeySpec integer(std::string_view name, std::string_view flag, Field field, IntRange range) {
  Apply apply = [field, range](const toml::node &node,
                               AttachOptions &options) -> std::optional<std::string> {
    if (!node.is_integer()) {
      return wrongType("an integer", node);
    }
    int64_t value = node.as_integer()->get();
    if (!range.contains(value)) {
      return fmt::format("{} is not in range {} to {}", value, range.min, range.max);
    }
    auto &target = std::invoke(field, options);
    target = static_cast<std::remove_reference_t<decltype(target)>>(value);
    return std::nullopt;
  };
  return {{name, flag, "integer"}, std::move(apply), copier(field)};
}

template <typename Field>
KeySpec seconds(std::string_view name, std::string_view flag, Field field, IntRange range) {
  Apply apply = [field, range](const toml::node &node,
                               AttachOptions &options) -> std::optional<std::string> {
    if (!node.is_integer()) {
      return wrongType("an integer (seconds)", node);
    }
    int64_t value = node.as_integer()->get();
    if (!range.contains(value)) {
      return fmt::format("{} is not in range {} to {}", value, range.min, range.max);
    }
    std::invoke(field, options) = std::chrono::seconds(value);
    return std::nullopt;
  };
  return {{name, flag, "integer (seconds)"}, std::move(apply), copier(field)};
}

// An HTTP timeout: seconds, integer or fractional, into a millisecond field.
template <typename Field>
KeySpec timeout(std::string_view name, std::string_view flag, Field field, SecondsRange range) {
  Apply apply = [field, range](const toml::node &node,
                               AttachOptions &options) -> std::optional<std::string> {
    if (!node.is_integer() && !node.is_floating_point()) {
      return wrongType("a number (seconds)", node);
    }
    double value = node.is_integer() ? static_cast<double>(node.as_integer()->get())
                                     : node.as_floating_point()->get();
    if (!range.contains(value)) {
      return fmt::format("{} is not in range {} to {}", value, range.min, range.max);
    }
    std::invoke(field, options) = std::chrono::milliseconds(std::llround(value * 1000.0));
    return std::nullopt;
  };
  return {{name, flag, "number (seconds)"}, std::move(apply), copier(field)};
}

template <typename Field>
KeySpec boolean(std::string_view name, std::string_view flag, Field field) {
  Apply apply = [field](const toml::node &node,
                        AttachOptions &options) -> std::optional<std::string> {
    if (!node.is_boolean()) {
      return wrongType("a boolean", node);
    }
    std::invoke(field, options) = node.as_boolean()->get();
    return std::nullopt;
  };
  return {{name, flag, "boolean"}, std::move(apply), copier(field)};
}

// A string setting; `check` returns the problem with a value, or nullopt.
template <typename Field, typename Check>
KeySpec string(std::string_view name, std::string_view flag, Field field, Check check) {
  Apply apply = [field, check](const toml::node &node,
                               AttachOptions &options) -> std::optional<std::string> {
    if (!node.is_string()) {
      return wrongType("a string", node);
    }
    const std::string &value = node.as_string()->get();
    if (auto problem = check(value)) {
      return problem;
    }
    std::invoke(field, options) = value;
    return std::nullopt;
  };
  return {{name, flag, "string"}, std::move(apply), copier(field)};
}

std::optional<std::string> numericAddress(const std::string &value) {
  if (parseAddress(value, 0)) {
    return std::nullopt;
  }
  return "'" + value + "' is not a numeric IPv4 or IPv6 address";
}

std::optional<std::string> existingDirectory(const std::string &value) {
  struct stat info {};
  if (::stat(value.c_str(), &info) != 0) {
    return fmt::format("directory '{}': {}", value, std::strerror(errno));
  }
  if (!S_ISDIR(info.st_mode)) {
    return fmt::format("'{}' is not a directory", value);
  }
  return std::nullopt;
}

// `mode`: auto, ebpf or line.
KeySpec modeKey() {
  Apply apply = [](const toml::node &node, AttachOptions &options) -> std::optional<std::string> {
    if (!node.is_string()) {
      return wrongType("a string", node);
    }
    const std::string &value = node.as_string()->get();
    auto mode = parseDispatchMode(value);
    if (!mode) {
      return fmt::format("'{}' is not a mode (auto, ebpf or line)", value);
    }
    options.mode = *mode;
    return std::nullopt;
  };
  return {{"mode", "--mode", "string"}, std::move(apply), copier(&AttachOptions::mode)};
}

// `policy`: a balancing policy's name.
KeySpec policyKey() {
  Apply apply = [](const toml::node &node, AttachOptions &options) -> std::optional<std::string> {
    if (!node.is_string()) {
      return wrongType("a string", node);
    }
    const std::string &value = node.as_string()->get();
    auto policy = policyFromName(value);
    if (!policy) {
      return fmt::format("'{}' is not a policy ({})", value, policyNames());
    }
    options.policy = *policy;
    return std::nullopt;
  };
  return {{"policy", "--policy", "string"}, std::move(apply), copier(&AttachOptions::policy)};
}

// Every key of the file: one line each. The ranges are the ones the flags check.
const std::vector<KeySpec> &keyTable() {
  static const std::vector<KeySpec> table{
      integer("port", "port", &AttachOptions::port, kPortRange),
      integer("workers", "--workers", &AttachOptions::workers, kWorkersRange),
      integer("min-workers", "--min-workers", &AttachOptions::minWorkers, kWorkersRange),
      integer("max-workers", "--max-workers", &AttachOptions::maxWorkers, kWorkersRange),
      integer("pool-busy-conns", "--pool-busy-conns", &AttachOptions::poolBusyConnections,
              kPoolBusyConnsRange),
      integer("pool-idle-seconds", "--pool-idle-seconds", &AttachOptions::poolIdleSeconds,
              kPoolIdleSecondsRange),
      string("bind", "--bind", &AttachOptions::bind, numericAddress),
      integer("backlog", "--backlog", &AttachOptions::backlog, kBacklogRange),
      modeKey(),
      policyKey(),
      integer("max-conns", "--max-conns", &AttachOptions::maxConnections, kMaxConnsRange),
      integer("line-batch", "--line-batch", &AttachOptions::lineBatch, kLineBatchRange),
      string("root", "--root", &AttachOptions::root, existingDirectory),
      seconds("shutdown-timeout", "--shutdown-timeout", &AttachOptions::shutdownTimeout,
              kShutdownTimeoutRange),
      integer(
          "max-target-bytes", "--max-target-bytes",
          [](auto &o) -> auto & { return o.limits.maxTargetBytes; }, kMaxTargetBytesRange),
      integer(
          "max-header-bytes", "--max-header-bytes",
          [](auto &o) -> auto & { return o.limits.maxHeaderBytes; }, kMaxHeaderBytesRange),
      integer(
          "max-header-fields", "--max-header-fields",
          [](auto &o) -> auto & { return o.limits.maxHeaderFields; }, kMaxHeaderFieldsRange),
      integer(
          "max-body-bytes", "--max-body-bytes",
          [](auto &o) -> auto & { return o.limits.maxBodyBytes; }, kMaxBodyBytesRange),
      integer(
          "max-pending-output", "--max-pending-output",
          [](auto &o) -> auto & { return o.limits.maxPendingOutput; }, kMaxPendingOutputRange),
      integer(
          "max-keepalive-requests", "--max-keepalive-requests",
          [](auto &o) -> auto & { return o.limits.maxRequestsPerConnection; },
          kMaxKeepaliveRequestsRange),
      timeout(
          "header-timeout", "--header-timeout",
          [](auto &o) -> auto & { return o.limits.headerTimeout; }, kTimeoutSecondsRange),
      timeout(
          "body-timeout", "--body-timeout", [](auto &o) -> auto & { return o.limits.bodyTimeout; },
          kTimeoutSecondsRange),
      timeout(
          "idle-timeout", "--idle-timeout", [](auto &o) -> auto & { return o.limits.idleTimeout; },
          kTimeoutSecondsRange),
      timeout(
          "write-timeout", "--write-timeout",
          [](auto &o) -> auto & { return o.limits.writeTimeout; }, kTimeoutSecondsRange),
      string("user", "--user", &AttachOptions::user, checkUser),
      boolean("dotfiles", "--dotfiles", &AttachOptions::dotfiles),
      boolean("verbose", "--verbose", &AttachOptions::verbose),
  };
  return table;
}

const KeySpec *findKey(std::string_view name) {
  const auto &table = keyTable();
  auto found = std::find_if(table.begin(), table.end(),
                            [name](const KeySpec &spec) { return spec.key.name == name; });
  return found == table.end() ? nullptr : &*found;
}

std::string knownKeys() {
  std::string names;
  for (const auto &spec : keyTable()) {
    names += (names.empty() ? "" : ", ") + std::string(spec.key.name);
  }
  return names;
}

Result<std::string> readWhole(const std::string &path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return osError("read configuration " + path);
  }
  std::string text;
  char buffer[8192];
  for (;;) {
    ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return osError("read configuration " + path);
    }
    if (got == 0) {
      return text;
    }
    text.append(buffer, static_cast<size_t>(got));
  }
}

} // namespace

Result<ConfigFile> loadConfigFile(const std::string &path, const AttachOptions &defaults) {
  auto text = readWhole(path);
  if (!text) {
    return text.error();
  }
  const std::string context = "load configuration " + path;
  toml::table table;
  try {
    table = toml::parse(text.value(), path);
  } catch (const toml::parse_error &error) {
    return logicError(context, fmt::format("line {}: syntax error: {}", error.source().begin.line,
                                           error.description()));
  }

  // toml::table iterates in key order; report problems in file order.
  struct Entry {
    uint32_t line;
    std::string_view name;
    const toml::node *node;
  };
  std::vector<Entry> entries;
  for (const auto &[key, node] : table) {
    entries.push_back({key.source().begin.line, key.str(), &node});
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry &a, const Entry &b) { return a.line < b.line; });

  ConfigFile file{defaults, {}};
  for (const auto &entry : entries) {
    const KeySpec *spec = findKey(entry.name);
    if (spec == nullptr) {
      return logicError(context, fmt::format("line {}: unknown key '{}' (known keys: {})",
                                             entry.line, entry.name, knownKeys()));
    }
    if (auto problem = spec->apply(*entry.node, file.options)) {
      return logicError(context,
                        fmt::format("line {}: key '{}': {}", entry.line, entry.name, *problem));
    }
    file.keys.push_back(spec->key);
  }
  return file;
}

std::vector<ConfigKey> configKeys() {
  std::vector<ConfigKey> keys;
  for (const auto &spec : keyTable()) {
    keys.push_back(spec.key);
  }
  return keys;
}

void copyConfigKey(std::string_view key, const AttachOptions &from, AttachOptions &to) {
  const KeySpec *spec = findKey(key);
  if (spec == nullptr) {
    throw std::logic_error("copyConfigKey: no key '" + std::string(key) + "'");
  }
  spec->copy(from, to);
}

} // namespace sockdispatch
