#include "clrk/egress/h2/bridge.h"

#include <algorithm>
#include <cstring>

namespace clrk::egress::h2 {

Pipe::Pipe(const net::any_io_executor& executor, size_t capacity)
    : capacity_(capacity), reader_wake_(executor), writer_wake_(executor) {}

void Pipe::push(std::string_view bytes, size_t credit) {
  if (closed_) return;
  if (head_ > 0 && head_ >= data_.size() / 2) {  // compact before growing
    data_.erase(0, head_);
    head_ = 0;
  }
  data_.append(bytes);
  pushed_ += bytes.size();
  if (credit > 0) credits_.emplace_back(pushed_, credit);
  reader_wake_.cancel();
}

void Pipe::consume(size_t n) {
  n = std::min(n, size());
  head_ += n;
  consumed_ += n;
  if (head_ == data_.size()) {
    data_.clear();
    head_ = 0;
  }
  size_t released = 0;
  while (!credits_.empty() && credits_.front().first <= consumed_) {
    released += credits_.front().second;
    credits_.pop_front();
  }
  if (released > 0 && on_credit) on_credit(released);
  writer_wake_.cancel();
}

void Pipe::close(boost::system::error_code reason) {
  if (closed_) return;
  closed_ = true;
  reason_ = reason;
  reader_wake_.cancel();
  writer_wake_.cancel();
}

size_t Pipe::abort(boost::system::error_code reason) {
  close(reason);
  size_t dropped = outstandingCredit();
  credits_.clear();
  consumed_ += size();
  data_.clear();
  head_ = 0;
  return dropped;
}

size_t Pipe::outstandingCredit() const {
  size_t total = 0;
  for (const auto& entry : credits_) total += entry.second;
  return total;
}

void BridgeEnd::shutdown(net::socket_base::shutdown_type what, boost::system::error_code& ec) {
  ec = {};
  if (what != net::socket_base::shutdown_receive) out_.close(net::error::eof);
  if (what != net::socket_base::shutdown_send) in_.close(net::error::eof);
}

void BridgeEnd::close(boost::system::error_code reason) {
  out_.close(reason);
  in_.close(reason);
}

void BridgeEnd::cancel() {
  ++cancels_;
  waitTimer(true).cancel();
  waitTimer(false).cancel();
}

BridgeEnd::Step BridgeEnd::tryRead(const net::mutable_buffer* first, size_t count, size_t total) {
  if (total == 0) return {true, {}, 0};
  if (in_.size() == 0) {
    if (in_.closed()) return {true, in_.reason() ? in_.reason() : net::error::eof, 0};
    return {};
  }
  std::string_view source = in_.readable();
  size_t copied = 0;
  for (size_t i = 0; i < count && copied < source.size(); ++i) {
    size_t n = std::min(first[i].size(), source.size() - copied);
    std::memcpy(first[i].data(), source.data() + copied, n);
    copied += n;
  }
  in_.consume(copied);
  return {true, {}, copied};
}

BridgeEnd::Step BridgeEnd::tryWrite(const net::const_buffer* first, size_t count, size_t total) {
  if (out_.closed()) return {true, net::error::broken_pipe, 0};
  if (total == 0) return {true, {}, 0};
  size_t room = out_.capacity() > out_.size() ? out_.capacity() - out_.size() : 0;
  if (room == 0) return {};
  size_t written = 0;
  for (size_t i = 0; i < count && written < room; ++i) {
    size_t n = std::min(first[i].size(), room - written);
    out_.push(std::string_view(static_cast<const char*>(first[i].data()), n));
    written += n;
  }
  return {true, {}, written};
}

}  // namespace clrk::egress::h2
