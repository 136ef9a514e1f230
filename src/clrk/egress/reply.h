// Replies the data plane writes itself (refusals, the metadata endpoint) and the lingering close
// that follows one sent while the client may still be sending. Shared by session.cc and
// metadata_session.cc; every stream type of the data plane works (tcp_stream, tls::Stream,
// h2::BridgeEnd).
#pragma once

#include "clrk/egress/h2/bridge.h"
#include "clrk/egress/tls/stream.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <chrono>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange
#include <vector>

namespace clrk::egress::internal {

using ReplyHeaders = std::vector<std::pair<std::string, std::string>>;

// Writes a complete response: `server` names who made it, `headers` are set after the content
// type. True when it was written (within 30 s).
template <class Stream>
boost::asio::awaitable<bool> writeReply(Stream& stream, unsigned version, bool keep_alive,
                                        int status, std::string_view server,
                                        std::string_view content_type, std::string body,
                                        const ReplyHeaders& headers = {}) {
  namespace http = boost::beast::http;
  http::response<http::string_body> res{static_cast<http::status>(status), version};
  res.set(http::field::server, boost::beast::string_view(server.data(), server.size()));
  res.set(http::field::content_type,
          boost::beast::string_view(content_type.data(), content_type.size()));
  for (const auto& [name, value] : headers) res.set(name, value);
  res.body() = std::move(body);
  res.keep_alive(keep_alive);
  res.prepare_payload();
  boost::system::error_code ec;
  boost::beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
  co_await http::async_write(stream, res,
                             boost::asio::redirect_error(boost::asio::use_awaitable, ec));
  co_return !ec;
}

// Writes "100 Continue" (the client asked with Expect: 100-continue and its body is wanted);
// `ec` is the write's outcome.
template <class Stream>
boost::asio::awaitable<void> writeContinue(Stream& stream, unsigned version,
                                           boost::system::error_code& ec) {
  namespace http = boost::beast::http;
  http::response<http::empty_body> cont{http::status::continue_, version};
  co_await http::async_write(stream, cont,
                             boost::asio::redirect_error(boost::asio::use_awaitable, ec));
}

// Before closing a connection whose client may still be sending a request body: stop sending,
// then read and drop what still arrives, for at most kLingerTime and `max_bytes`. Closing a
// socket with unread bytes resets the connection, and a client that gets the reset before it read
// the response loses it (HTTP/1.1 "lingering close", RFC 9112 §9.6). HTTP/2 streams end in the
// HTTP/2 layer instead (a no-op for a bridge end).
inline constexpr auto kLingerTime = std::chrono::seconds(2);
inline constexpr size_t kLingerBytes = 4 * 1024 * 1024;

template <class Client>
boost::asio::awaitable<void> lingerBeforeClose(Client& client, size_t max_bytes = kLingerBytes) {
  using boost::asio::redirect_error;
  using boost::asio::use_awaitable;
  if constexpr (!std::is_same_v<Client, h2::BridgeEnd>) {
    boost::system::error_code ec;
    boost::beast::get_lowest_layer(client).expires_after(kLingerTime);
    if constexpr (std::is_same_v<Client, tls::Stream>) {
      co_await client.async_shutdown(redirect_error(use_awaitable, ec));  // close_notify
    }
    boost::beast::get_lowest_layer(client).socket().shutdown(
        boost::asio::socket_base::shutdown_send, ec);
    std::array<char, 16 * 1024> sink;
    size_t dropped = 0;
    while (!ec && dropped < max_bytes) {
      dropped += co_await client.async_read_some(boost::asio::buffer(sink),
                                                 redirect_error(use_awaitable, ec));
    }
  }
}

}  // namespace clrk::egress::internal
