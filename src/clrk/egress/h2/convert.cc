#include "clrk/egress/h2/convert.h"

#include "clrk/base/ascii.h"

#include <algorithm>
#include <cctype>
#include <iterator>

namespace clrk::egress::h2 {
namespace {

namespace http = boost::beast::http;

// RFC 9110 §5.6.2 token characters.
bool tokenChar(unsigned char c) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool validName(std::string_view name) {
  return !name.empty() &&
         std::all_of(name.begin(), name.end(), [](char c) { return tokenChar(c); });
}

// RFC 9110 §5.5 field-value bytes: visible ASCII, obs-text, SP and HTAB; no CR, LF, NUL (RFC 9113
// §8.2.1) nor any other control byte.
bool validValue(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) {
    auto byte = static_cast<unsigned char>(c);
    return byte == '\t' || (byte >= 0x20 && byte != 0x7f);
  });
}

// Request-target bytes: visible ASCII only.
bool validTarget(std::string_view target) {
  return std::all_of(target.begin(), target.end(), [](char c) {
    auto byte = static_cast<unsigned char>(c);
    return byte > 0x20 && byte < 0x7f;
  });
}

bool connectionSpecific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade" || name == "te" || name == "host";
}

}  // namespace

bool toHttp1Request(const std::vector<HeaderField>& fields, bool body_follows, Http1Request& out,
                    std::string& error) {
  const std::string* method = nullptr;
  const std::string* path = nullptr;
  const std::string* scheme = nullptr;
  const std::string* authority = nullptr;
  const std::string* host = nullptr;
  bool has_length = false;
  std::string cookies;
  for (const auto& field : fields) {
    const std::string& name = field.name;
    if (!name.empty() && name.front() == ':') {
      const std::string** slot = name == ":method"      ? &method
                                 : name == ":path"      ? &path
                                 : name == ":scheme"    ? &scheme
                                 : name == ":authority" ? &authority
                                                        : nullptr;
      if (slot == nullptr) {
        error = "unknown pseudo-header " + name;
        return false;
      }
      if (*slot != nullptr) {
        error = "repeated pseudo-header " + name;
        return false;
      }
      *slot = &field.value;
      continue;
    }
    if (!validName(name)) {
      error = "invalid header field name";
      return false;
    }
    // RFC 9113 §8.2.1: upper case makes the request malformed (nghttp2 refuses it on the wire).
    // Checked here too: the names below are compared in lower case, and "Content-Length" must not
    // slip past the content-length check into a head the HTTP/1.1 parser refuses.
    if (std::any_of(name.begin(), name.end(), [](char c) { return asciiLower(c) != c; })) {
      error = "header field name " + name + " has upper case letters";
      return false;
    }
    if (!validValue(field.value)) {
      error = "header field " + name + " has a control byte (CR, LF, NUL...) in its value";
      return false;
    }
    if (name == "host" && host == nullptr) host = &field.value;
    if (name == "content-length") {
      // nghttp2 already refuses these; checked again so the head always parses (RFC 9110 §8.6).
      if (has_length) {
        error = "repeated content-length";
        return false;
      }
      if (field.value.empty() || field.value.size() > 18 ||
          !std::all_of(field.value.begin(), field.value.end(),
                       [](char c) { return c >= '0' && c <= '9'; })) {
        error = "invalid content-length";
        return false;
      }
      has_length = true;
    }
  }
  if (method == nullptr) {
    error = "missing :method";
    return false;
  }
  if (*method == "CONNECT") {
    error = "CONNECT over HTTP/2 is not supported by the egress";
    return false;
  }
  if (!validName(*method)) {
    error = "invalid :method";
    return false;
  }
  if (path == nullptr || path->empty() || scheme == nullptr) {
    error = path == nullptr || path->empty() ? "missing :path" : "missing :scheme";
    return false;
  }
  if ((path->front() != '/' && *path != "*") || !validTarget(*path)) {
    error = "invalid :path";
    return false;
  }
  const std::string* host_value = authority != nullptr ? authority : host;
  if (host_value == nullptr || host_value->empty() || !validTarget(*host_value) ||
      host_value->find_first_of("/@?#") != std::string::npos) {
    error =
        host_value == nullptr || host_value->empty() ? "missing :authority" : "invalid :authority";
    return false;
  }

  out.method = *method;
  out.chunked = body_follows && !has_length;
  std::string& head = out.head;
  head.clear();
  head.reserve(256);
  head.append(*method).append(" ").append(*path).append(" HTTP/1.1\r\nhost: ");
  head.append(asciiLowerCopy(*host_value)).append("\r\n");
  for (const auto& field : fields) {
    const std::string& name = field.name;
    if (name.front() == ':') continue;
    if (name == "te" && teListsTrailers(field.value)) {
      head.append("te: trailers\r\n");
      continue;
    }
    if (connectionSpecific(name)) continue;
    if (name == "cookie") {
      if (!cookies.empty()) cookies += "; ";
      cookies += field.value;
      continue;
    }
    head.append(name).append(": ").append(field.value).append("\r\n");
  }
  if (!cookies.empty()) head.append("cookie: ").append(cookies).append("\r\n");
  if (out.chunked) head.append("transfer-encoding: chunked\r\n");
  head.append("\r\n");
  return true;
}

std::vector<std::pair<std::string, std::string>> toHttp2Response(
    const http::response_header<>& head) {
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back(":status", std::to_string(head.result_int()));
  std::vector<std::string> named;  // fields the Connection header lists
  for (const auto& field : head) {
    if (field.name() != http::field::connection) continue;
    anyListElement(std::string_view(field.value().data(), field.value().size()),
                   [&](std::string_view token) {
                     named.push_back(asciiLowerCopy(token));
                     return false;
                   });
  }
  for (const auto& field : head) {
    std::string name =
        asciiLowerCopy(std::string_view(field.name_string().data(), field.name_string().size()));
    if (name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
        name == "transfer-encoding" || name == "upgrade" || name == "te" || name == "trailer" ||
        std::find(named.begin(), named.end(), name) != named.end()) {
      continue;
    }
    out.emplace_back(std::move(name), std::string(field.value().data(), field.value().size()));
  }
  return out;
}

bool teListsTrailers(std::string_view value) {
  return anyListElement(value, [](std::string_view element) {
    // "trailers" takes no weight, but be lenient.
    return asciiEqualsIgnoreCase(trimOptionalWhitespace(element.substr(0, element.find(';'))),
                                 "trailers");
  });
}

bool allowedInTrailers(std::string_view name) {
  static constexpr std::string_view kForbidden[] = {"authorization",
                                                    "connection",
                                                    "content-encoding",
                                                    "content-length",
                                                    "content-range",
                                                    "content-type",
                                                    "expect",
                                                    "host",
                                                    "keep-alive",
                                                    "max-forwards",
                                                    "proxy-authenticate",
                                                    "proxy-authorization",
                                                    "proxy-connection",
                                                    "set-cookie",
                                                    "te",
                                                    "trailer",
                                                    "transfer-encoding",
                                                    "upgrade"};
  if (name.empty() || name.front() == ':') return false;
  return std::find(std::begin(kForbidden), std::end(kForbidden), name) == std::end(kForbidden);
}

std::string lastChunk(const std::vector<std::pair<std::string, std::string>>& trailers) {
  std::string last = "0\r\n";
  for (const auto& [name, value] : trailers) {
    if (allowedInTrailers(name)) last.append(name).append(": ").append(value).append("\r\n");
  }
  last += "\r\n";
  return last;
}

size_t fieldCount(const boost::beast::http::fields& fields) {
  return static_cast<size_t>(std::distance(fields.begin(), fields.end()));
}

std::vector<std::pair<std::string, std::string>> trailersOf(
    const boost::beast::http::fields& fields, size_t head_fields) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t index = 0;
  for (const auto& field : fields) {
    if (index++ < head_fields) continue;
    std::string name =
        asciiLowerCopy(std::string_view(field.name_string().data(), field.name_string().size()));
    if (!allowedInTrailers(name)) continue;
    out.emplace_back(std::move(name), std::string(field.value().data(), field.value().size()));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> takeTrailers(boost::beast::http::fields& fields,
                                                              size_t head_fields) {
  auto out = trailersOf(fields, head_fields);
  auto it = fields.begin();
  for (size_t index = 0; index < head_fields && it != fields.end(); ++index) ++it;
  while (it != fields.end()) it = fields.erase(it);
  return out;
}

}  // namespace clrk::egress::h2
