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
// (RFC 9113 §8.2.3); "te" (but "te: trailers") and any connection-specific field are dropped;
// without content-length a body is sent chunked. Returns false with `error` naming the problem
// for a request HTTP/1.1 cannot carry: missing or repeated pseudo-header, CONNECT, unknown
// pseudo-header, or a field name or value with bytes not allowed in HTTP/1.1.

bool toHttp1Request(const std::vector<HeaderField>& fields, bool body_follows, Http1Request& out,
                    std::string& error);

// The HTTP/2 response header list (":status" first) of an HTTP/1.1 response head: names in
// lower case, hop-by-hop fields (Connection and what it names, Keep-Alive, Proxy-Connection,
// Transfer-Encoding, Upgrade, TE, Trailer) dropped.
std::vector<std::pair<std::string, std::string>> toHttp2Response(
    const boost::beast::http::response_header<>& head);

// Whether a TE field value lists "trailers", the only TE HTTP/2 allows (RFC 9113 §8.2.2) and
// what gRPC servers expect: "te: trailers" passes the proxy end to end; the rest of TE is dropped
// as hop-by-hop.
bool teListsTrailers(std::string_view value);

// Whether a field may be forwarded in a trailer section (RFC 9110 §6.5.1): not framing, routing,
// connection or pseudo fields. `name` in lower case.
bool allowedInTrailers(std::string_view name);

// The last chunk of a chunked HTTP/1.1 body carrying `trailers` (names in lower case; fields not
// allowed in trailers are left out): "0\r\n", the fields, "\r\n".
std::string lastChunk(const std::vector<std::pair<std::string, std::string>>& trailers);

// How many fields `fields` holds: taken once a head is parsed, it tells trailersOf where a
// chunked body's trailer section (appended later by the parser) begins.
size_t fieldCount(const boost::beast::http::fields& fields);

// The trailer fields of a message whose HTTP/1.1 parser appended a chunked body's trailer section
// to `fields` after its first `head_fields` (the head's): names in lower case, fields not allowed
// in trailers dropped.
std::vector<std::pair<std::string, std::string>> trailersOf(
    const boost::beast::http::fields& fields, size_t head_fields);

// trailersOf, and every field past the first `head_fields` is erased from `fields`: a recipient
// must not merge trailers into the head (RFC 9110 §6.5.1), which Beast's parser does.
std::vector<std::pair<std::string, std::string>> takeTrailers(boost::beast::http::fields& fields,
                                                              size_t head_fields);

}  // namespace clrk::egress::h2
