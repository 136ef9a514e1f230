#include "clrk/base/status.h"

namespace clrk {

std::string_view codeName(Code code) {
  switch (code) {
    case Code::Ok:
      return "OK";
    case Code::InvalidArgument:
      return "InvalidArgument";
    case Code::NotFound:
      return "NotFound";
    case Code::AlreadyExists:
      return "AlreadyExists";
    case Code::Conflict:
      return "Conflict";
    case Code::Gone:
      return "Gone";
    case Code::Unauthenticated:
      return "Unauthenticated";
    case Code::Forbidden:
      return "Forbidden";
    case Code::Unavailable:
      return "Unavailable";
    case Code::Timeout:
      return "Timeout";
    case Code::Internal:
      return "Internal";
  }
  return "Unknown";
}

std::string Status::toString() const {
  if (ok()) return "OK";
  std::string out(codeName(code_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::withContext(std::string_view context) const {
  if (ok()) return *this;
  std::string message(context);
  message += ": ";
  message += message_;
  return {code_, std::move(message)};
}

}  // namespace clrk
