#include "clrk/egress/h2/bridge.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include <string>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange

namespace clrk::egress::h2 {
namespace {

namespace http = boost::beast::http;
using boost::system::error_code;
using net::use_awaitable;

// Runs the io_context until every spawned coroutine finished; fails on an exception.
void runAll(net::io_context& io) {
  io.run();
  io.restart();
}

void spawn(net::io_context& io, net::awaitable<void> task) {
  net::co_spawn(io, std::move(task), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
}

net::awaitable<void> writeAll(BridgeEnd& end, std::string data, error_code* result) {
  error_code ec;
  co_await net::async_write(end, net::buffer(data), net::redirect_error(use_awaitable, ec));
  *result = ec;
}

net::awaitable<void> readToEnd(BridgeEnd& end, std::string* out, error_code* result,
                               size_t* max_buffered) {
  char buffer[1000];
  for (;;) {
    error_code ec;
    if (max_buffered) *max_buffered = std::max(*max_buffered, end.in().size());
    size_t n =
        co_await end.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, ec));
    out->append(buffer, n);
    if (ec) {
      *result = ec;
      co_return;
    }
  }
}

TEST(BridgeTest, BytesCrossBothWaysAndTheWriterWaitsForRoom) {
  net::io_context io;
  Bridge bridge(io.get_executor(), 4096);
  std::string big(100000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  error_code write_ec, read_ec, back_write_ec, back_read_ec;
  std::string got, back;
  size_t max_buffered = 0;
  spawn(io, writeAll(bridge.near(), big, &write_ec));
  spawn(io, readToEnd(bridge.far(), &got, &read_ec, &max_buffered));
  spawn(io, writeAll(bridge.far(), "pong", &back_write_ec));
  spawn(io, readToEnd(bridge.near(), &back, &back_read_ec, nullptr));
  // Nobody closes yet: run until both writes are done, then close and finish.
  while (got.size() < big.size() || back.size() < 4) io.run_one();
  error_code ignored;
  bridge.near().shutdown(net::socket_base::shutdown_send, ignored);
  bridge.far().shutdown(net::socket_base::shutdown_send, ignored);
  runAll(io);
  EXPECT_FALSE(write_ec);
  EXPECT_EQ(got, big);
  EXPECT_EQ(read_ec, net::error::eof);
  EXPECT_LE(max_buffered, 4096u);  // bounded by the capacity, never the whole 100 kB
  EXPECT_EQ(back, "pong");
  EXPECT_EQ(back_read_ec, net::error::eof);
}

TEST(BridgeTest, WriterFailsWhenTheReaderIsGoneAndAbortDropsBufferedBytes) {
  net::io_context io;
  Bridge bridge(io.get_executor(), 8);
  error_code write_ec;
  spawn(io, writeAll(bridge.near(), std::string(100, 'x'), &write_ec));
  while (bridge.far().in().size() < 8) io.run_one();
  EXPECT_EQ(bridge.far().in().abort(net::error::connection_reset), 0u);
  runAll(io);
  EXPECT_EQ(write_ec, net::error::broken_pipe);
  error_code read_ec;
  std::string got;
  spawn(io, readToEnd(bridge.far(), &got, &read_ec, nullptr));
  runAll(io);
  EXPECT_EQ(got, "");
  EXPECT_EQ(read_ec, net::error::connection_reset);
}

TEST(BridgeTest, DeadlineFailsAPendingRead) {
  net::io_context io;
  Bridge bridge(io.get_executor(), 64);
  bridge.far().expires_after(std::chrono::milliseconds(20));
  error_code read_ec;
  std::string got;
  spawn(io, readToEnd(bridge.far(), &got, &read_ec, nullptr));
  runAll(io);
  EXPECT_EQ(read_ec, boost::beast::error::timeout);
}

TEST(BridgeTest, CancelFailsThePendingReadAndWriteOfOneEndOnly) {
  net::io_context io;
  Bridge bridge(io.get_executor(), 4);
  error_code read_ec, write_ec;
  std::string got;
  spawn(io, readToEnd(bridge.near(), &got, &read_ec, nullptr));
  spawn(io, writeAll(bridge.near(), "too long for the pipe", &write_ec));
  io.poll();  // the write filled the pipe and waits for room; the read waits for data
  EXPECT_EQ(bridge.far().in().size(), 4u);
  EXPECT_FALSE(read_ec);
  EXPECT_FALSE(write_ec);
  bridge.near().cancel();
  runAll(io);
  EXPECT_EQ(read_ec, net::error::operation_aborted);
  EXPECT_EQ(write_ec, net::error::operation_aborted);
  EXPECT_EQ(got, "");
  // The other end is untouched, and a later operation is not affected by the earlier cancel.
  error_code far_read_ec, ignored;
  std::string far_got;
  spawn(io, readToEnd(bridge.far(), &far_got, &far_read_ec, nullptr));
  spawn(io, readToEnd(bridge.near(), &got, &read_ec, nullptr));
  bridge.far().out().push("after");
  bridge.near().shutdown(net::socket_base::shutdown_send, ignored);
  bridge.far().shutdown(net::socket_base::shutdown_send, ignored);
  runAll(io);
  EXPECT_EQ(far_got, "too ");
  EXPECT_EQ(far_read_ec, net::error::eof);
  EXPECT_EQ(got, "after");
  EXPECT_EQ(read_ec, net::error::eof);
}

TEST(BridgeTest, CreditsAreReportedOnceTheirBytesAreConsumed) {
  net::io_context io;
  Bridge bridge(io.get_executor(), 64);
  size_t credited = 0;
  bridge.far().out().on_credit = [&](size_t n) { credited += n; };
  bridge.far().out().push("hello", 5);
  bridge.far().out().push("\r\n");
  bridge.far().out().push("world", 5);
  EXPECT_EQ(bridge.far().out().outstandingCredit(), 10u);
  bridge.near().in().consume(3);
  EXPECT_EQ(credited, 0u);
  bridge.near().in().consume(2);
  EXPECT_EQ(credited, 5u);
  bridge.near().in().consume(4);
  EXPECT_EQ(credited, 5u);
  bridge.near().in().consume(100);
  EXPECT_EQ(credited, 10u);
  bridge.far().out().push("more", 4);
  EXPECT_EQ(bridge.far().out().abort(net::error::connection_reset), 4u);
  EXPECT_EQ(credited, 10u);  // dropped bytes are returned by abort, not reported
}

net::awaitable<void> serveOne(BridgeEnd& end, std::string* seen) {
  boost::beast::flat_buffer buffer;
  http::request<http::string_body> req;
  co_await http::async_read(end, buffer, req, use_awaitable);
  *seen = std::string(req.target()) + " " + req.body();
  http::response<http::string_body> res{http::status::ok, 11};
  res.body() = "answer";
  res.prepare_payload();
  co_await http::async_write(end, res, use_awaitable);
}

net::awaitable<void> askOne(BridgeEnd& end, std::string* answer) {
  http::request<http::string_body> req{http::verb::post, "/v1/x", 11};
  req.set(http::field::host, "example.com");
  req.body() = std::string(20000, 'b');
  req.prepare_payload();
  co_await http::async_write(end, req, use_awaitable);
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> res;
  co_await http::async_read(end, buffer, res, use_awaitable);
  *answer = res.body();
}

TEST(BridgeTest, BeastHttpRunsOverIt) {
  net::io_context io;
  Bridge bridge(io.get_executor(), 1024);
  std::string seen, answer;
  spawn(io, serveOne(bridge.near(), &seen));
  spawn(io, askOne(bridge.far(), &answer));
  runAll(io);
  EXPECT_EQ(seen, "/v1/x " + std::string(20000, 'b'));
  EXPECT_EQ(answer, "answer");
}

}  // namespace
}  // namespace clrk::egress::h2
