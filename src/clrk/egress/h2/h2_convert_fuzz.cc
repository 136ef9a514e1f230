// Fuzzes the HTTP/2 -> HTTP/1.1 request translation: input is NUL-separated name/value pairs
// (what an HPACK decoder hands over). A produced head must parse as one HTTP/1.1 request head.
#include "clrk/egress/h2/convert.h"

#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace http = boost::beast::http;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<clrk::egress::h2::HeaderField> fields;
  bool body_follows = !input.empty() && (input.front() & 1);
  if (!input.empty()) input.remove_prefix(1);
  while (!input.empty() && fields.size() < 64) {
    size_t name_end = input.find('\0');
    std::string_view name = input.substr(0, name_end);
    input = name_end == std::string_view::npos ? std::string_view() : input.substr(name_end + 1);
    size_t value_end = input.find('\0');
    std::string_view value = input.substr(0, value_end);
    input = value_end == std::string_view::npos ? std::string_view() : input.substr(value_end + 1);
    fields.push_back({std::string(name), std::string(value)});
  }
  clrk::egress::h2::Http1Request out;
  std::string error;
  if (!clrk::egress::h2::toHttp1Request(fields, body_follows, out, error)) {
    if (error.empty()) std::abort();
    return 0;
  }
  // What we hand the chain must be exactly one well-formed head (no smuggled second request).
  http::request_parser<http::empty_body> parser;
  parser.eager(false);
  boost::system::error_code ec;
  size_t used = parser.put(boost::asio::buffer(out.head), ec);
  if (ec || !parser.is_header_done() || used != out.head.size()) std::abort();
  return 0;
}
