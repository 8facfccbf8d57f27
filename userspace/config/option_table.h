#pragma once

#include "config/option_ranges.h"
#include "config/options.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sockdispatch {

struct ServerOptions; // sockdispatch/server.h

// Every setting of `attach`, written once: its configuration key, its flag, its help text, the
// values it accepts and where it goes in AttachOptions. The command line
// (cli/attach_command.cc) and the configuration file (config_file.cc) are both built from
// this table, so a flag and its key can never disagree on a name, a range or a meaning, and a
// new setting is one row here plus its field. The library's ServerOptions fields that are the
// same settings are bound to their rows too (`serverOptionsField`), and checked by the same ranges.
enum class OptionType {
  integer, // a whole number in `integers`
  seconds, // a whole number of seconds in `integers`, into a std::chrono::seconds field
  timeout, // seconds, fractions allowed, in `fractional`, into a millisecond field
  boolean, // a flag: present (or `true` in the file) sets it
  string,  // any text `check` accepts
  choice,  // one of `choices`
  words,   // a list of strings: the positional words after `--`, an array in the file
};

struct OptionSpec {
  std::string_view key;   // the configuration key: "max-header-bytes"
  std::string_view names; // the flag and its short form, as CLI11 takes them: "--workers,-w";
                          // a name without dashes is the positional ("port")
  std::string_view help;
  OptionType type = OptionType::integer;
  IntRange integers{0, 0};
  SecondsRange fractional{0, 0};
  std::vector<std::string> choices;
  std::string_view valueName = "VALUE"; // what help calls a string's value: ADDRESS, DIR
  // Whether the help shows the default value (--workers' depends on the machine: no).
  bool showDefault = true;

  // Set the value, already checked against the range or the choices. For strings, `set`
  // checks as well: it returns the problem, and sets nothing, when the value is refused.
  std::function<void(AttachOptions &, int64_t)> setInteger; // integer, seconds
  std::function<void(AttachOptions &, double)> setSeconds;  // timeout
  std::function<void(AttachOptions &, bool)> setBoolean;    // boolean
  std::function<std::optional<std::string>(AttachOptions &, const std::string &)> setText;
  std::function<void(AttachOptions &, std::vector<std::string>)> setWords; // words
  std::function<std::string(const AttachOptions &)> show; // the value as help prints it ("":
                                                          // no default worth printing)
  std::function<void(const AttachOptions &, AttachOptions &)> copy; // from one to another
  // The ServerOptions field that is this setting ("limits.maxBodyBytes"; empty: the library
  // has none), and how its value is checked and set: the problem, naming the field, or
  // nullopt.
  std::string_view serverOptionsField;
  std::function<std::optional<std::string>(const ServerOptions &, AttachOptions &)> fromLibrary;

  // The flag's long name ("--workers"), or the positional's ("port").
  [[nodiscard]] std::string_view flag() const;
  // What the configuration file's value must be: "integer", "string", ...
  [[nodiscard]] std::string_view typeName() const;
};

// The table, in the order of the documentation.
const std::vector<OptionSpec> &optionTable();
// The row of a configuration key, or null.
const OptionSpec *findOption(std::string_view key);
// Every library field bound to a row, checked and set into `to`: the first problem, or
// nullopt (then every bound field is set).
std::optional<std::string> applyLibraryOptions(const ServerOptions &from, AttachOptions &to);

} // namespace sockdispatch
