// Status and Result<T>: the error model used across clrk.
//
// A Status is either ok or carries a Code and a human-readable message. Result<T> holds either a
// value or a non-ok Status. Neither throws; callers check ok() before reading value().
// Thread model: plain values, no shared state.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace clrk {

// Codes mirror the Kubernetes Status reasons the API server maps them to.
enum class Code {
  Ok,
  InvalidArgument,  // 400/422: malformed or invalid input
  NotFound,         // 404
  AlreadyExists,    // 409 AlreadyExists
  Conflict,         // 409 Conflict (stale resourceVersion)
  Gone,             // 410: resourceVersion too old
  Unauthenticated,  // 401
  Forbidden,        // 403
  Unavailable,      // 503: try again later
  Timeout,          // 504
  Internal,         // 500: a bug or an environment failure
};

std::string_view codeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status okStatus() { return {}; }

  bool ok() const { return code_ == Code::Ok; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "NotFound: taskagents \"x\" not found"; "OK" when ok.
  std::string toString() const;

  // Returns a copy whose message is prefixed with `context: `.
  Status withContext(std::string_view context) const;

 private:
  Code code_ = Code::Ok;
  std::string message_;
};

inline Status invalidArgument(std::string message) {
  return {Code::InvalidArgument, std::move(message)};
}
inline Status notFound(std::string message) { return {Code::NotFound, std::move(message)}; }
inline Status internalError(std::string message) { return {Code::Internal, std::move(message)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : state_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(state_).ok() && "Result built from an ok Status has no value");
  }

  bool ok() const { return std::holds_alternative<T>(state_); }
  // REQUIRES: !ok()
  const Status& status() const& { return std::get<Status>(state_); }
  Status status() && { return ok() ? Status{} : std::get<Status>(std::move(state_)); }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace clrk

// Propagates a non-ok Status from an expression returning Status.
#define CLRK_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::clrk::Status clrk_status_ = (expr);        \
    if (!clrk_status_.ok()) return clrk_status_; \
  } while (false)

#define CLRK_CONCAT_INNER_(a, b) a##b
#define CLRK_CONCAT_(a, b) CLRK_CONCAT_INNER_(a, b)
// `CLRK_ASSIGN_OR_RETURN(auto x, makeX());` binds the value or returns the Status.
#define CLRK_ASSIGN_OR_RETURN(lhs, expr)                             \
  auto CLRK_CONCAT_(clrk_result_, __LINE__) = (expr);                \
  if (!CLRK_CONCAT_(clrk_result_, __LINE__).ok())                    \
    return std::move(CLRK_CONCAT_(clrk_result_, __LINE__)).status(); \
  lhs = std::move(CLRK_CONCAT_(clrk_result_, __LINE__)).value()
