#pragma once

#include "config/options.h"
#include "core/result.h"

#include <string>
#include <string_view>
#include <vector>

namespace sockdispatch {

// A configuration file for `attach`: TOML, one top-level key per `attach` flag, named like
// the flag without its dashes (`workers = 4` for `--workers 4`, `port = 8080` for PORT).
// Unknown keys, wrong types and out-of-range values are errors naming the file, line and key.

// One accepted key: its name, the `attach` flag it mirrors ("--workers", or "port" for the
// positional) and the TOML type it takes.
struct ConfigKey {
  std::string_view name;
  std::string_view flag;
  std::string_view type;
};

// A file read and checked.
struct ConfigFile {
  AttachOptions options;       // the defaults given, with every key of the file applied
  std::vector<ConfigKey> keys; // the keys the file sets, in file order
};

// Reads and validates `path` over `defaults`. Errors read
// "Failed to load configuration FILE: line N: key 'K': <problem>" (or
// "Failed to read configuration FILE: <strerror>" when it cannot be read).
Result<ConfigFile> loadConfigFile(const std::string &path, const AttachOptions &defaults);

// Every key the file accepts, in the order of the documentation.
std::vector<ConfigKey> configKeys();

// Copies the setting named by `key` (a name from configKeys()) from `from` to `to`: how
// `attach --config` lets the file fill in what the command line did not give.
void copyConfigKey(std::string_view key, const AttachOptions &from, AttachOptions &to);

} // namespace sockdispatch
