// Bridge: an in-memory, full-duplex byte stream between two coroutines on one single-threaded
// executor, so an HTTP/2 stream can be served by the HTTP/1.1 filter chain unchanged.
//
//   Bridge::near() --writes--> [pipe A: bounded] --reads--> Bridge::far()
//   Bridge::near() <--reads--- [pipe B: bounded] <--writes-- Bridge::far()
//
// Each end is an Asio AsyncReadStream + AsyncWriteStream that Beast's HTTP algorithms accept
// (and a lowest layer with expires_after/expires_never, the deadline of its pending operations).
// * Reads complete with what is buffered (at most the buffer size), wait while the pipe is empty,
//   and fail with the pipe's close reason (net::error::eof after an orderly close) once it is
//   empty and closed.
// * Writes copy what fits under the pipe's capacity, wait while it is full, and fail with
//   net::error::broken_pipe when the reading end closed the pipe.
// * An end's deadline (expires_after) fails its pending and later operations with
//   beast::error::timeout once passed; cancel() fails its pending ones that would otherwise wait
//   with net::error::operation_aborted (like a socket's cancel).
// * push() appends bytes without waiting (the producer bounds them, e.g. by HTTP/2 flow control)
//   and attaches a credit: a number handed to the pipe's on_credit callback once the reader has
//   consumed those bytes (how consumed DATA is acknowledged with WINDOW_UPDATE).
//
// Not thread-safe: both ends must be used from the executor's single thread. Completions are
// always posted, never invoked inside the initiating call.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace clrk::egress::h2 {

namespace net = boost::asio;

// One direction: bytes written by one end and read by the other.
class Pipe {
 public:
  Pipe(const net::any_io_executor& executor, size_t capacity);

  size_t size() const { return data_.size() - head_; }
  size_t capacity() const { return capacity_; }
  std::string_view readable() const { return std::string_view(data_).substr(head_); }
  bool closed() const { return closed_; }
  const boost::system::error_code& reason() const { return reason_; }

  // Appends bytes whatever the capacity; `credit` is reported through on_credit once they are
  // consumed. Ignored after close().
  void push(std::string_view bytes, size_t credit = 0);
  // Drops n readable bytes; reports the credits they complete.
  void consume(size_t n);
  // Ends the pipe: readers drain what is buffered, then fail with `reason`; writers fail. The
  // first reason stays.
  void close(boost::system::error_code reason);
  // Ends the pipe at once: buffered bytes are dropped and readers fail with `reason`. Returns the
  // credits of the dropped bytes (never reported through on_credit).
  size_t abort(boost::system::error_code reason);
  // Credits not yet reported (bytes pushed but not consumed), for flow-control clean-up.
  size_t outstandingCredit() const;

  std::function<void(size_t)> on_credit;

 private:
  friend class BridgeEnd;
  std::string data_;
  size_t head_ = 0;
  uint64_t pushed_ = 0;                              // total bytes ever pushed
  uint64_t consumed_ = 0;                            // total bytes ever consumed
  std::deque<std::pair<uint64_t, size_t>> credits_;  // (end offset, credit)
  size_t capacity_;
  bool closed_ = false;
  boost::system::error_code reason_;
  net::steady_timer reader_wake_;  // the reading end waits here for data or close
  net::steady_timer writer_wake_;  // the writing end waits here for room or close
};

class BridgeEnd {
 public:
  using executor_type = net::any_io_executor;
  using clock = std::chrono::steady_clock;

  BridgeEnd(net::any_io_executor executor, Pipe& in, Pipe& out)
      : executor_(std::move(executor)), in_(in), out_(out) {}

  executor_type get_executor() const { return executor_; }
  Pipe& in() { return in_; }
  Pipe& out() { return out_; }

  // Deadline of pending and later operations (like beast::tcp_stream's).
  void expires_after(clock::duration d) { deadline_ = clock::now() + d; }
  void expires_never() { deadline_ = clock::time_point::max(); }
  // So generic code that half-closes `get_lowest_layer(stream).socket()` works: shutdown_send
  // (or both) closes the outgoing pipe with eof.
  BridgeEnd& socket() { return *this; }
  void shutdown(net::socket_base::shutdown_type what, boost::system::error_code& ec);
  void close(boost::system::error_code reason);  // closes both pipes
  // Fails this end's pending read and write that have to wait, with operation_aborted.
  void cancel();

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return net::async_compose<Token, void(boost::system::error_code, size_t)>(
        Op<MutableBuffers, true>{this, buffers}, token, executor_);
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return net::async_compose<Token, void(boost::system::error_code, size_t)>(
        Op<ConstBuffers, false>{this, buffers}, token, executor_);
  }

 private:
  // Outcome of one attempt: done (ec, n) or must wait.
  struct Step {
    bool done = false;
    boost::system::error_code ec;
    size_t n = 0;
  };
  Step tryRead(const net::mutable_buffer* first, size_t count, size_t total);
  Step tryWrite(const net::const_buffer* first, size_t count, size_t total);
  net::steady_timer& waitTimer(bool read) { return read ? in_.reader_wake_ : out_.writer_wake_; }

  template <class Buffers, bool kRead>
  struct Op {
    BridgeEnd* end;
    Buffers buffers;
    bool posted = false;
    uint64_t cancels = 0;  // end->cancels_ when the operation started

    template <class Self>
    void operator()(Self& self, boost::system::error_code = {}) {
      if (!posted) {  // never complete inside the initiating function
        posted = true;
        cancels = end->cancels_;
        net::post(end->executor_, std::move(self));
        return;
      }
      Step step = attempt();
      if (!step.done && clock::now() >= end->deadline_) {
        step = {true, boost::beast::error::timeout, 0};
      }
      if (!step.done && end->cancels_ != cancels) {
        step = {true, net::error::operation_aborted, 0};
      }
      if (step.done) {
        self.complete(step.ec, step.n);
        return;
      }
      // Woken by cancel() (data, room or close) or by the deadline.
      net::steady_timer& timer = end->waitTimer(kRead);
      timer.expires_at(end->deadline_);
      timer.async_wait(std::move(self));
    }

    Step attempt() {
      // Flatten up to 16 buffers (Beast passes one or two).
      constexpr size_t kMax = 16;
      using Flat = std::conditional_t<kRead, net::mutable_buffer, net::const_buffer>;
      Flat flat[kMax];
      size_t count = 0;
      size_t total = 0;
      for (auto it = net::buffer_sequence_begin(buffers);
           it != net::buffer_sequence_end(buffers) && count < kMax; ++it) {
        Flat piece(*it);
        if (piece.size() == 0) continue;
        flat[count++] = piece;
        total += piece.size();
      }
      if constexpr (kRead) {
        return end->tryRead(flat, count, total);
      } else {
        return end->tryWrite(flat, count, total);
      }
    }
  };

  net::any_io_executor executor_;
  Pipe& in_;
  Pipe& out_;
  clock::time_point deadline_ = clock::time_point::max();
  uint64_t cancels_ = 0;  // cancel() calls so far
};

// Two pipes and their two ends. `near` writes what `far` reads and the reverse.
class Bridge {
 public:
  Bridge(const net::any_io_executor& executor, size_t capacity)
      : to_far_(executor, capacity),
        to_near_(executor, capacity),
        near_(executor, to_near_, to_far_),
        far_(executor, to_far_, to_near_) {}
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  BridgeEnd& near() { return near_; }
  BridgeEnd& far() { return far_; }

 private:
  Pipe to_far_;
  Pipe to_near_;
  BridgeEnd near_;
  BridgeEnd far_;
};

}  // namespace clrk::egress::h2
