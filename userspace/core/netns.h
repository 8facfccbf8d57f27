#pragma once

#include <optional>
#include <string>

namespace sockdispatch {

// The name iproute2 gives the network namespace this process runs in (`ip netns add NAME`
// keeps it at /run/netns/NAME), or nullopt: the host's namespace, or one without a name.
// Read once per process (a process does not change namespaces here).
const std::optional<std::string> &namedNetworkNamespace();

// The same lookup in `dir` for the namespace `/proc/self/ns/net` is (tests).
std::optional<std::string> findNetworkNamespaceName(const std::string &dir);

} // namespace sockdispatch
