#pragma once

// HAProxy's agent-check reply as HAProxy reads it (its configuration manual, "agent-check"):
// an ASCII line ended by the first '\r' or '\n', words delimited by spaces, tabs or commas,
// each one of: "<integer>%", "maxconn:<integer>", "ready", "drain", "maint", "up", or "down",
// "fail", "stopped" optionally followed by "#<description>" (the rest of the line).
// The tests parse every answer with it, so what the agent port writes is what HAProxy takes.

#include <cctype>
#include <optional>
#include <string>
#include <string_view>

namespace sockdispatch::test {

struct AgentReply {
  std::optional<int> weightPercent;
  std::optional<std::string> adminState;     // ready, drain, maint
  std::optional<std::string> operatingState; // up, down, fail, stopped
  std::string description;
};

// The reply, or nullopt with `problem` set when a word is not HAProxy's.
inline std::optional<AgentReply> parseAgentReply(std::string_view text, std::string *problem) {
  size_t end = text.find_first_of("\r\n");
  if (end == std::string_view::npos) {
    *problem = "no line end";
    return std::nullopt;
  }
  std::string_view line = text.substr(0, end);
  AgentReply reply;
  size_t at = 0;
  while (at < line.size()) {
    if (line[at] == ' ' || line[at] == '\t' || line[at] == ',') {
      ++at;
      continue;
    }
    size_t stop = line.find_first_of(" \t,", at);
    std::string_view word =
        line.substr(at, stop == std::string_view::npos ? line.size() - at : stop - at);
    at += word.size();
    auto digits = [](std::string_view s) {
      if (s.empty()) {
        return false;
      }
      for (char c : s) {
        if (std::isdigit(static_cast<unsigned char>(c)) == 0) {
          return false;
        }
      }
      return true;
    };
    std::string_view state = word.substr(0, word.find('#'));
    if (word.size() > 1 && word.back() == '%' && digits(word.substr(0, word.size() - 1))) {
      reply.weightPercent = std::stoi(std::string(word.substr(0, word.size() - 1)));
    } else if (word.rfind("maxconn:", 0) == 0 && digits(word.substr(8))) {
      continue;
    } else if (word == "ready" || word == "drain" || word == "maint") {
      reply.adminState = std::string(word);
    } else if (word == "up") {
      reply.operatingState = "up";
    } else if (state == "down" || state == "fail" || state == "stopped") {
      reply.operatingState = std::string(state);
      if (state.size() < word.size()) {
        reply.description = std::string(line.substr(at - word.size() + state.size() + 1));
        break; // the description is the rest of the line
      }
    } else {
      *problem = "word '" + std::string(word) + "' is not in HAProxy's agent syntax";
      return std::nullopt;
    }
  }
  return reply;
}

} // namespace sockdispatch::test
