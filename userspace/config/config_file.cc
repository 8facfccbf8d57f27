#include "config/config_file.h"

#include "config/option_table.h"
#include "core/unique_fd.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <toml++/toml.h>

namespace sockdispatch {

namespace {

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

// Applies a TOML value to the options as the row says; returns the problem when the value is
// refused (the same range and checks the flag has).
std::optional<std::string> apply(const OptionSpec &spec, const toml::node &node,
                                 AttachOptions &options) {
  switch (spec.type) {
  case OptionType::integer:
  case OptionType::seconds: {
    if (!node.is_integer()) {
      return wrongType(spec.type == OptionType::seconds ? "an integer (seconds)" : "an integer",
                       node);
    }
    int64_t value = node.as_integer()->get();
    if (!spec.integers.contains(value)) {
      return fmt::format("{} is not in range {} to {}", value, spec.integers.min,
                         spec.integers.max);
    }
    spec.setInteger(options, value);
    return std::nullopt;
  }
  case OptionType::timeout: {
    if (!node.is_integer() && !node.is_floating_point()) {
      return wrongType("a number (seconds)", node);
    }
    double value = node.is_integer() ? static_cast<double>(node.as_integer()->get())
                                     : node.as_floating_point()->get();
    if (!spec.fractional.contains(value)) {
      return fmt::format("{} is not in range {} to {}", value, spec.fractional.min,
                         spec.fractional.max);
    }
    spec.setSeconds(options, value);
    return std::nullopt;
  }
  case OptionType::boolean: {
    if (!node.is_boolean()) {
      return wrongType("a boolean", node);
    }
    spec.setBoolean(options, node.as_boolean()->get());
    return std::nullopt;
  }
  case OptionType::words: {
    const toml::array *array = node.as_array();
    if (array == nullptr) {
      return wrongType("an array of strings", node);
    }
    std::vector<std::string> words;
    for (const toml::node &word : *array) {
      if (!word.is_string()) {
        return "expected an array of strings, got " + std::string(typeName(word.type())) + " in it";
      }
      words.push_back(word.as_string()->get());
    }
    if (words.empty() || words.front().empty()) {
      return std::string("expected the program and its arguments, got an empty list");
    }
    spec.setWords(options, std::move(words));
    return std::nullopt;
  }
  case OptionType::string:
  case OptionType::choice: break;
  }
  if (!node.is_string()) {
    return wrongType("a string", node);
  }
  return spec.setText(options, node.as_string()->get());
}

ConfigKey keyOf(const OptionSpec &spec) {
  return {spec.key, spec.flag(), spec.typeName()};
}

std::string knownKeys() {
  std::string names;
  for (const auto &spec : optionTable()) {
    names += (names.empty() ? "" : ", ") + std::string(spec.key);
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
    const OptionSpec *spec = findOption(entry.name);
    if (spec == nullptr) {
      return logicError(context, fmt::format("line {}: unknown key '{}' (known keys: {})",
                                             entry.line, entry.name, knownKeys()));
    }
    if (auto problem = apply(*spec, *entry.node, file.options)) {
      return logicError(context,
                        fmt::format("line {}: key '{}': {}", entry.line, entry.name, *problem));
    }
    file.keys.push_back(keyOf(*spec));
  }
  return file;
}

std::vector<ConfigKey> configKeys() {
  std::vector<ConfigKey> keys;
  for (const auto &spec : optionTable()) {
    keys.push_back(keyOf(spec));
  }
  return keys;
}

void copyConfigKey(std::string_view key, const AttachOptions &from, AttachOptions &to) {
  const OptionSpec *spec = findOption(key);
  if (spec == nullptr) {
    throw std::logic_error("copyConfigKey: no key '" + std::string(key) + "'");
  }
  spec->copy(from, to);
}

} // namespace sockdispatch
