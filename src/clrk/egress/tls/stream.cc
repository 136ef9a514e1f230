#include "clrk/egress/tls/stream.h"

#include <boost/asio/ssl/error.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <sys/socket.h>

namespace clrk::egress::tls {
namespace detail {
namespace {

namespace net = boost::asio;

StreamCore* coreOf(BIO* bio) { return static_cast<StreamCore*>(BIO_get_data(bio)); }

bool wouldBlock(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == EINTR; }

int bioWrite(BIO* bio, const char* data, int size) {
  BIO_clear_retry_flags(bio);
  StreamCore* core = coreOf(bio);
  int fd = core->socket.is_open() ? core->socket.native_handle() : -1;
  if (fd < 0) {
    core->last_errno = EBADF;
    return -1;
  }
  ssize_t n = ::send(fd, data, static_cast<size_t>(size), MSG_NOSIGNAL);
  if (n >= 0) return static_cast<int>(n);
  if (wouldBlock(errno)) {
    BIO_set_retry_write(bio);
  } else {
    core->last_errno = errno;
  }
  return -1;
}

int bioRead(BIO* bio, char* data, int size) {
  BIO_clear_retry_flags(bio);
  StreamCore* core = coreOf(bio);
  if (core->prefix_used < core->prefix.size()) {
    size_t n = std::min(static_cast<size_t>(size), core->prefix.size() - core->prefix_used);
    std::memcpy(data, core->prefix.data() + core->prefix_used, n);
    core->prefix_used += n;
    if (core->prefix_used == core->prefix.size()) {
      std::string().swap(core->prefix);  // give the memory back
      core->prefix_used = 0;
    }
    return static_cast<int>(n);
  }
  int fd = core->socket.is_open() ? core->socket.native_handle() : -1;
  if (fd < 0) {
    core->last_errno = EBADF;
    return -1;
  }
  ssize_t n = ::recv(fd, data, static_cast<size_t>(size), 0);
  if (n >= 0) return static_cast<int>(n);  // 0: the peer closed its side
  if (wouldBlock(errno)) {
    BIO_set_retry_read(bio);
  } else {
    core->last_errno = errno;
  }
  return -1;
}

long bioControl(BIO*, int command, long, void*) {
  return command == BIO_CTRL_FLUSH ? 1 : 0;  // nothing buffered here
}

int bioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* socketMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* made = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "clrk socket");
    if (made == nullptr) return made;
    BIO_meth_set_write(made, bioWrite);
    BIO_meth_set_read(made, bioRead);
    BIO_meth_set_ctrl(made, bioControl);
    BIO_meth_set_create(made, bioCreate);
    return made;
  }();
  return method;
}

}  // namespace

char* gatherScratch() {
  thread_local char scratch[kGatherBytes];
  return scratch;
}

StreamCore::StreamCore(net::ip::tcp::socket s, net::ssl::context& context)
    : socket(std::move(s)), timer(socket.get_executor()) {
  BIO_METHOD* method = socketMethod();
  ssl = SSL_new(context.native_handle());
  BIO* bio = method ? BIO_new(method) : nullptr;
  if (ssl == nullptr || bio == nullptr) {
    BIO_free(bio);
    SSL_free(ssl);
    throw std::runtime_error("tls::Stream: cannot create an SSL object");
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl, bio, bio);  // the SSL owns the BIO
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Without read-ahead every record costs two recv() calls (its 5-byte header, then the rest);
  // with it one recv() takes whatever has arrived. Safe here: a read always tries SSL_read before
  // it waits for the socket, so bytes OpenSSL holds are never waited for.
  SSL_set_read_ahead(ssl, 1);
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
}

StreamCore::~StreamCore() { SSL_free(ssl); }

void StreamCore::beginCall() {
  // Clearing walks all of the queue's slots (~1k instructions in OpenSSL 3); it is almost
  // always empty already.
  if (ERR_peek_error() != 0) ERR_clear_error();
  last_errno = 0;
}

Want StreamCore::classify(int ret, boost::system::error_code& ec) {
  switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
      return Want::kRead;
    case SSL_ERROR_WANT_WRITE:
      return Want::kWrite;
    case SSL_ERROR_ZERO_RETURN:
      ec = net::error::eof;
      break;
    case SSL_ERROR_SYSCALL:
      if (last_errno != 0) {
        ec = boost::system::error_code(last_errno, boost::system::system_category());
      } else {
        ec = net::ssl::error::stream_truncated;  // the peer closed without close_notify
      }
      break;
    case SSL_ERROR_SSL: {
      unsigned long error = ERR_peek_last_error();
      if (ERR_GET_LIB(error) == ERR_LIB_SSL &&
          ERR_GET_REASON(error) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ec = net::ssl::error::stream_truncated;
      } else {
        ec = boost::system::error_code(static_cast<int>(error), net::error::get_ssl_category());
      }
      break;
    }
    default:
      ec = boost::system::error_code(static_cast<int>(ERR_peek_last_error()),
                                     net::error::get_ssl_category());
      if (!ec) ec = net::error::fault;
      break;
  }
  ERR_clear_error();
  return Want::kFailed;
}

void StreamCore::setDeadline(std::chrono::steady_clock::time_point when) {
  deadline = when;
  // A pending wait must not outlive an earlier deadline; a later one is followed when the armed
  // timer fires.
  if (armed_for != std::chrono::steady_clock::time_point::max() && when < armed_for) {
    armDeadline();
  }
}

bool StreamCore::deadlinePassed() const {
  return deadline != std::chrono::steady_clock::time_point::max() &&
         std::chrono::steady_clock::now() >= deadline;
}

void StreamCore::armDeadline() {
  if (deadline == std::chrono::steady_clock::time_point::max() || armed_for == deadline) return;
  armed_for = deadline;
  timer.expires_at(deadline);
  timer.async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // re-armed or destroyed: `this` may be gone, touch nothing
    armed_for = std::chrono::steady_clock::time_point::max();
    if (!deadlinePassed()) {  // moved later meanwhile (or removed): follow it
      armDeadline();
      return;
    }
    boost::system::error_code ignored;
    socket.cancel(ignored);
  });
}

}  // namespace detail

Stream::Stream(boost::beast::tcp_stream&& tcp, boost::asio::ssl::context& context)
    : Stream(tcp.release_socket(), context) {}

Stream::Stream(boost::asio::ip::tcp::socket&& socket, boost::asio::ssl::context& context)
    : core_(std::make_unique<detail::StreamCore>(std::move(socket), context)) {}

}  // namespace clrk::egress::tls
