// The filter interface: what a filter may see and change of an HTTP request or response head.
// The data plane adapts its HTTP message type to Headers; filters never see the wire.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace clrk::egress::filters {

// Case-insensitive header access. Values are views valid until the next mutation.
class Headers {
 public:
  virtual ~Headers() = default;
  virtual std::optional<std::string_view> get(std::string_view name) const = 0;
  // Replaces every value of `name` with one value.
  virtual void set(std::string_view name, std::string_view value) = 0;
  // Appends a value (a repeated header).
  virtual void add(std::string_view name, std::string_view value) = 0;
  // Removes every value of `name`; no-op when absent.
  virtual void remove(std::string_view name) = 0;
};

}  // namespace clrk::egress::filters
