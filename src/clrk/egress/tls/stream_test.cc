#include "clrk/egress/tls/stream.h"

#include "clrk/egress/tls/authority.h"
#include "clrk/egress/tls/leaf_cache.h"
#include "clrk/egress/tls/upstream.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

namespace clrk::egress::tls {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using boost::system::error_code;
using net::use_awaitable;
using namespace std::chrono_literals;

static_assert(
    std::is_same_v<
        std::remove_reference_t<decltype(beast::get_lowest_layer(std::declval<Stream&>()))>,
        Stream>,
    "a Stream is its own lowest layer");

// A server context with a leaf for "stream.test", a client context trusting its CA, and a
// connected loopback socket pair.
TEST(GatherTest, OneBufferIsUsedInPlaceAndSeveralAreCopiedUpToTheScratchSize) {
  std::array<char, 8> scratch{};
  std::string one = "abc";
  std::string two = "defgh";
  std::string three = "ijklmn";
  std::string empty;
  // A single non-empty piece, empty ones around it: no copy.
  std::array<net::const_buffer, 3> single = {net::buffer(empty), net::buffer(one),
                                             net::buffer(empty)};
  net::const_buffer got = detail::gather(single, scratch.data(), scratch.size());
  EXPECT_EQ(got.data(), one.data());
  EXPECT_EQ(got.size(), one.size());
  // Several pieces are concatenated into the scratch, cut at its size.
  std::array<net::const_buffer, 4> several = {net::buffer(one), net::buffer(empty),
                                              net::buffer(two), net::buffer(three)};
  got = detail::gather(several, scratch.data(), scratch.size());
  EXPECT_EQ(got.data(), scratch.data());
  EXPECT_EQ(std::string(static_cast<const char*>(got.data()), got.size()), "abcdefgh");
  std::array<net::const_buffer, 2> nothing = {net::buffer(empty), net::buffer(empty)};
  EXPECT_EQ(detail::gather(nothing, scratch.data(), scratch.size()).size(), 0u);
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = CertificateAuthority::generate("stream-test CA", std::chrono::hours(24));
    ASSERT_TRUE(ca.ok()) << ca.status().toString();
    cache_ = std::make_unique<LeafCache>(*ca);
    auto server = cache_->serverContext("stream.test");
    ASSERT_TRUE(server.ok()) << server.status().toString();
    server_context_ = *server;
    auto client = makeUpstreamContext((*ca)->certPem());
    ASSERT_TRUE(client.ok()) << client.status().toString();
    client_context_ = *client;

    tcp::acceptor acceptor(io_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    client_socket_.connect(acceptor.local_endpoint());
    acceptor.accept(server_socket_);
  }

  // Runs `task` on io_ until it and everything it spawned finished (or 20 s passed).
  void run(net::awaitable<void> task) {
    bool finished = false;
    net::co_spawn(io_, std::move(task), [&](std::exception_ptr e) {
      finished = true;
      if (e) std::rethrow_exception(e);
    });
    io_.run_for(20s);
    EXPECT_TRUE(finished) << "timed out";
  }

  Stream client() {
    Stream stream(std::move(client_socket_), *client_context_);
    EXPECT_TRUE(prepareUpstreamSsl(stream.native_handle(), "stream.test").ok());
    return stream;
  }
  Stream server() { return Stream(std::move(server_socket_), *server_context_); }

  net::io_context io_;
  std::unique_ptr<LeafCache> cache_;
  std::shared_ptr<net::ssl::context> server_context_;
  std::shared_ptr<net::ssl::context> client_context_;
  tcp::socket client_socket_{io_};
  tcp::socket server_socket_{io_};
};

net::awaitable<error_code> handshake(Stream& stream, net::ssl::stream_base::handshake_type type) {
  error_code ec;
  co_await stream.async_handshake(type, net::redirect_error(use_awaitable, ec));
  co_return ec;
}

TEST_F(StreamTest, HandshakeWithSniffedPrefixThenLargeTransfersBothWays) {
  Stream c = client();
  tcp::socket raw = std::move(server_socket_);
  std::string sent(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>(i * 131 % 251);
  std::string client_got;
  std::string server_got;
  error_code client_ec;
  error_code server_ec;
  error_code shutdown_ec;
  size_t used = 0;

  auto serverSide = [&]() -> net::awaitable<void> {
    // Read the start of the ClientHello off the socket first, as the sniffer does.
    std::array<char, 40> head{};
    co_await net::async_read(raw, net::buffer(head), use_awaitable);
    Stream s(std::move(raw), *server_context_);
    used = co_await s.async_handshake(net::ssl::stream_base::server, net::buffer(head),
                                      net::redirect_error(use_awaitable, server_ec));
    if (server_ec) co_return;
    // Echo everything back in pieces of whatever size arrives.
    std::vector<char> buffer(10000);
    for (;;) {
      error_code ec;
      size_t n =
          co_await s.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, ec));
      if (ec) {
        server_ec = ec;
        break;
      }
      server_got.append(buffer.data(), n);
      co_await net::async_write(s, net::buffer(buffer.data(), n), use_awaitable);
    }
    co_await s.async_shutdown(net::redirect_error(use_awaitable, shutdown_ec));
  };
  auto clientSide = [&]() -> net::awaitable<void> {
    client_ec = co_await handshake(c, net::ssl::stream_base::client);
    if (client_ec) co_return;
    // The writer gathers three buffers per write; the reader runs concurrently.
    auto writer = [&]() -> net::awaitable<void> {
      for (size_t at = 0; at < sent.size(); at += 3000) {
        size_t n = std::min<size_t>(3000, sent.size() - at);
        size_t a = n / 3;
        std::array<net::const_buffer, 3> pieces = {
            net::buffer(sent.data() + at, a), net::buffer(sent.data() + at + a, a),
            net::buffer(sent.data() + at + 2 * a, n - 2 * a)};
        co_await net::async_write(c, pieces, use_awaitable);
      }
      co_await c.async_shutdown(use_awaitable);
    };
    net::co_spawn(co_await net::this_coro::executor, writer(), net::detached);
    std::vector<char> buffer(65536);
    for (;;) {
      error_code ec;
      size_t n =
          co_await c.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, ec));
      client_got.append(buffer.data(), n);
      if (ec) {
        client_ec = ec;
        break;
      }
    }
  };
  auto both = [&]() -> net::awaitable<void> {
    auto executor = co_await net::this_coro::executor;
    net::co_spawn(executor, serverSide(), net::detached);
    co_await clientSide();
  };
  run(both());
  EXPECT_EQ(used, 40u);
  EXPECT_EQ(server_ec, net::error::eof) << server_ec.message();  // the client's close_notify
  EXPECT_EQ(client_ec, net::error::eof) << client_ec.message();  // and the server's
  EXPECT_FALSE(shutdown_ec) << shutdown_ec.message();
  EXPECT_EQ(server_got.size(), sent.size());
  EXPECT_TRUE(server_got == sent);
  EXPECT_TRUE(client_got == sent);
}

TEST_F(StreamTest, DeadlineFailsAWaitWithTimeoutAndCanBeMovedAgain) {
  Stream c = client();
  Stream s = server();
  error_code first;
  error_code second;
  std::string got;
  auto task = [&]() -> net::awaitable<void> {
    auto executor = co_await net::this_coro::executor;
    net::co_spawn(executor, handshake(s, net::ssl::stream_base::server), net::detached);
    EXPECT_FALSE(co_await handshake(c, net::ssl::stream_base::client));
    std::array<char, 16> buffer{};
    auto started = std::chrono::steady_clock::now();
    beast::get_lowest_layer(c).expires_after(100ms);
    co_await c.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, first));
    EXPECT_GE(std::chrono::steady_clock::now() - started, 90ms);
    // A new deadline makes the stream usable again; a later one is followed while waiting.
    c.expires_after(50ms);
    c.expires_after(5s);
    net::steady_timer later(executor, 150ms);
    auto sender = [&]() -> net::awaitable<void> {
      co_await later.async_wait(use_awaitable);
      co_await net::async_write(s, net::buffer(std::string_view("late")), use_awaitable);
    };
    net::co_spawn(executor, sender(), net::detached);
    size_t n =
        co_await c.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, second));
    got.assign(buffer.data(), n);
    // An earlier deadline applies to a wait already pending.
    error_code third;
    c.expires_never();
    net::steady_timer shorten(executor, 50ms);
    auto shortener = [&]() -> net::awaitable<void> {
      co_await shorten.async_wait(use_awaitable);
      c.expires_after(10ms);
    };
    net::co_spawn(executor, shortener(), net::detached);
    co_await c.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, third));
    EXPECT_EQ(third, beast::error::timeout) << third.message();
    s.close();
  };
  run(task());
  EXPECT_EQ(first, beast::error::timeout) << first.message();
  EXPECT_FALSE(second) << second.message();
  EXPECT_EQ(got, "late");
}

// A read never waits for the socket while OpenSSL already holds bytes: a decrypted rest of a
// record, or a whole record read ahead. Waiting for those would hang, since no more bytes come.
// (Any "wait for readiness first after a write" shortcut must keep this.)
TEST_F(StreamTest, ReadAfterWriteServesWhatIsHeldThenWaitsForTheAnswer) {
  Stream c = client();
  Stream s = server();
  std::string got;
  std::string server_got;
  auto readSome = [](Stream& stream, size_t limit) -> net::awaitable<std::string> {
    std::array<char, 64> buffer{};
    size_t n = co_await stream.async_read_some(net::buffer(buffer.data(), limit), use_awaitable);
    co_return std::string(buffer.data(), n);
  };
  auto serverSide = [&]() -> net::awaitable<void> {
    EXPECT_FALSE(co_await handshake(s, net::ssl::stream_base::server));
    co_await net::async_write(s, net::buffer(std::string_view("ab")), use_awaitable);  // a record
    co_await net::async_write(s, net::buffer(std::string_view("cd")), use_awaitable);  // another
    while (server_got.size() < 2) server_got += co_await readSome(s, 64);
    auto executor = co_await net::this_coro::executor;
    net::steady_timer later(executor, 50ms);
    co_await later.async_wait(use_awaitable);
    co_await net::async_write(s, net::buffer(std::string_view("z")), use_awaitable);
  };
  auto task = [&]() -> net::awaitable<void> {
    auto executor = co_await net::this_coro::executor;
    net::co_spawn(executor, serverSide(), net::detached);
    EXPECT_FALSE(co_await handshake(c, net::ssl::stream_base::client));
    net::steady_timer settle(executor, 100ms);  // both records arrive before the first read
    co_await settle.async_wait(use_awaitable);
    c.expires_after(5s);
    got += co_await readSome(c, 1);  // "a"; "b" stays decrypted in OpenSSL, "cd" read ahead
    co_await net::async_write(c, net::buffer(std::string_view("x")), use_awaitable);
    got += co_await readSome(c, 1);  // "b", held
    co_await net::async_write(c, net::buffer(std::string_view("y")), use_awaitable);
    got += co_await readSome(c, 2);   // "cd", read ahead
    got += co_await readSome(c, 64);  // "z", sent 50 ms after "xy" arrived
  };
  run(task());
  EXPECT_EQ(got, "abcdz");
  EXPECT_EQ(server_got, "xy");
}

TEST_F(StreamTest, AbruptCloseIsTruncationAndGarbageIsAnSslError) {
  Stream c = client();
  Stream s = server();
  error_code truncated;
  auto task = [&]() -> net::awaitable<void> {
    auto executor = co_await net::this_coro::executor;
    bool server_done = false;
    auto serverSide = [&]() -> net::awaitable<void> {
      EXPECT_FALSE(co_await handshake(s, net::ssl::stream_base::server));
      server_done = true;
    };
    net::co_spawn(executor, serverSide(), net::detached);
    EXPECT_FALSE(co_await handshake(c, net::ssl::stream_base::client));
    net::steady_timer poll(executor);
    while (!server_done) {
      poll.expires_after(1ms);
      co_await poll.async_wait(use_awaitable);
    }
    s.close();  // no close_notify (and nothing unread, so a FIN rather than a reset)
    std::array<char, 16> buffer{};
    co_await c.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, truncated));
  };
  run(task());
  EXPECT_EQ(truncated, net::ssl::error::stream_truncated) << truncated.message();

  // A "client" that sends plaintext HTTP to a TLS server: the handshake fails with a TLS error.
  io_.restart();
  tcp::acceptor acceptor(io_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  tcp::socket plain(io_);
  plain.connect(acceptor.local_endpoint());
  tcp::socket accepted(io_);
  acceptor.accept(accepted);
  Stream victim(std::move(accepted), *server_context_);
  error_code garbage;
  auto task2 = [&]() -> net::awaitable<void> {
    co_await net::async_write(plain, net::buffer(std::string_view("GET / HTTP/1.1\r\n\r\n")),
                              use_awaitable);
    garbage = co_await handshake(victim, net::ssl::stream_base::server);
  };
  run(task2());
  EXPECT_TRUE(garbage);
  EXPECT_EQ(garbage.category(), net::error::get_ssl_category()) << garbage.message();
}

TEST_F(StreamTest, CancelAbortsAPendingReadAndClosedSocketFailsCleanly) {
  Stream c = client();
  Stream s = server();
  error_code aborted;
  error_code after_close;
  auto task = [&]() -> net::awaitable<void> {
    auto executor = co_await net::this_coro::executor;
    net::co_spawn(executor, handshake(s, net::ssl::stream_base::server), net::detached);
    EXPECT_FALSE(co_await handshake(c, net::ssl::stream_base::client));
    net::steady_timer soon(executor, 20ms);
    auto canceller = [&]() -> net::awaitable<void> {
      co_await soon.async_wait(use_awaitable);
      c.cancel();
    };
    net::co_spawn(executor, canceller(), net::detached);
    std::array<char, 16> buffer{};
    co_await c.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, aborted));
    c.close();
    co_await net::async_write(c, net::buffer(std::string_view("x")),
                              net::redirect_error(use_awaitable, after_close));
    s.close();
  };
  run(task());
  EXPECT_EQ(aborted, net::error::operation_aborted) << aborted.message();
  EXPECT_TRUE(after_close);
}

}  // namespace
}  // namespace clrk::egress::tls
