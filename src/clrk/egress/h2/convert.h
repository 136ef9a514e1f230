// Translation between HTTP/2 header lists and HTTP/1.1 message heads (RFC 9113 §8.3, RFC 9110),
// used to serve HTTP/2 streams with the HTTP/1.1 filter chain.
#pragma once

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clrk::egress::h2 {

struct HeaderField {
  std::string name;  // lower case as received (HTTP/2 requires it)
  std::string value;
};

struct Http1Request {
  std::string head;  // "METHOD target HTTP/1.1\r\n" fields "\r\n"
  std::string method;
  bool chunked = false;  // the body must be sent chunked (no content-length, body follows)
};

// Builds the HTTP/1.1 head of an HTTP/2 request. `body_follows` is false when the HEADERS frame
// ended the stream. The :authority (or host) becomes Host; cookie fields are joined with "; "
// (RFC 9113 §8.2.3); "te" and any connection-specific field are dropped; without content-length
// a body is sent chunked. Returns false with `error` naming the problem for a request HTTP/1.1
// cannot carry: missing or repeated pseudo-header, CONNECT, unknown pseudo-header, or a field
// name or value with bytes not allowed in HTTP/1.1.

bool toHttp1Request(const std::vector<HeaderField>& fields, bool body_follows, Http1Request& out,
                    std::string& error);

// The HTTP/2 response header list (":status" first) of an HTTP/1.1 response head: names in
// lower case, hop-by-hop fields (Connection and what it names, Keep-Alive, Proxy-Connection,
// Transfer-Encoding, Upgrade, TE, Trailer) dropped.
std::vector<std::pair<std::string, std::string>> toHttp2Response(
    const boost::beast::http::response_header<>& head);

}  // namespace clrk::egress::h2
