#include "clrk/telemetry/otlp_exporter.h"

#include "clrk/base/log.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <optional>

namespace clrk::telemetry {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;

constexpr size_t kMaxResponseBody = 1u << 20;
constexpr size_t kMaxErrorExcerpt = 300;

std::shared_ptr<spdlog::logger> log() {
  static std::shared_ptr<spdlog::logger> instance = clrk::logger("telemetry");
  return instance;
}

struct Endpoint {
  bool tls = false;
  std::string host;  // without brackets
  std::string port;
  std::string host_header;
  std::string prefix;  // path without trailing '/', may be empty
  bool host_is_ip = false;
};

Result<Endpoint> parseEndpoint(std::string_view url) {
  Endpoint out;
  std::string_view rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    out.tls = true;
    rest = url.substr(8);
  } else {
    return invalidArgument("endpoint \"" + std::string(url) +
                           "\": must start with http:// or https://");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (path.find_first_of("?#") != std::string_view::npos) {
    return invalidArgument("endpoint: query and fragment are not allowed");
  }
  if (authority.empty()) return invalidArgument("endpoint: missing host");
  if (authority.find('@') != std::string_view::npos) {
    return invalidArgument("endpoint: user info is not allowed (use headers for credentials)");
  }
  std::string_view port;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return invalidArgument("endpoint: unterminated '['");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalidArgument("endpoint: junk after ']'");
      port = after.substr(1);
    }
    out.host_is_ip = true;
  } else {
    size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      out.host = std::string(authority.substr(0, colon));
      port = authority.substr(colon + 1);
    } else {
      out.host = std::string(authority);
    }
    boost::system::error_code ec;
    net::ip::make_address(out.host, ec);
    out.host_is_ip = !ec;
  }
  if (out.host.empty()) return invalidArgument("endpoint: missing host");
  for (char c : out.host) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '\\') {
      return invalidArgument("endpoint: invalid character in host");
    }
  }
  if (!port.empty()) {
    if (port.size() > 5) return invalidArgument("endpoint: invalid port");
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return invalidArgument("endpoint: invalid port");
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return invalidArgument("endpoint: port out of range");
    out.port = std::string(port);
  } else {
    out.port = out.tls ? "443" : "80";
  }
  bool default_port = out.port == (out.tls ? "443" : "80");
  std::string host_part = authority.front() == '[' ? "[" + out.host + "]" : out.host;
  out.host_header = default_port ? host_part : host_part + ":" + out.port;
  std::string prefix(path);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  out.prefix = prefix;
  return out;
}

std::string excerpt(std::string_view body) {
  std::string out(body.substr(0, kMaxErrorExcerpt));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '.';
  }
  if (body.size() > kMaxErrorExcerpt) out += "...";
  return out;
}

bool validHeaderToken(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool validHeaderValue(std::string_view value) {
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

}  // namespace

class OtlpHttpExporter::Impl {
 public:
  Impl(OtlpExporterOptions options, Endpoint endpoint)
      : options_(std::move(options)), endpoint_(std::move(endpoint)) {
    target_ =
        endpoint_.prefix + (options_.signal == OtlpSignal::Traces ? "/v1/traces" : "/v1/logs");
    resource_.attributes = options_.resource_attributes;
    bool has_service = false;
    for (const Attribute& attribute : resource_.attributes) {
      if (attribute.key == "service.name") has_service = true;
    }
    if (!has_service) {
      resource_.attributes.push_back(Attribute{"service.name", std::string("clrk-egress")});
    }
    resource_.scope_name = options_.scope_name;
    resource_.scope_version = options_.scope_version;
    if (options_.name.empty()) {
      options_.name = options_.signal == OtlpSignal::Traces ? "otlp-traces" : "otlp-logs";
    }
  }

  Status initTls() {
    if (!endpoint_.tls) return {};
    ssl_ctx_.emplace(ssl::context::tls_client);
    ssl_ctx_->set_options(ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1);
    ssl_ctx_->set_verify_mode(ssl::verify_peer);
    boost::system::error_code ec;
    if (options_.ca_pem.empty()) {
      ssl_ctx_->set_default_verify_paths(ec);
      if (ec) return internalError("otlp: cannot load the system CA store: " + ec.message());
    } else {
      ssl_ctx_->add_certificate_authority(net::buffer(options_.ca_pem), ec);
      if (ec) return invalidArgument("otlp: ca_pem: " + ec.message());
    }
    return {};
  }

  const std::string& name() const { return options_.name; }

  Status deliver(std::span<const Record> batch) {
    std::string body;
    bool json = options_.encoding == OtlpEncoding::Json;
    if (options_.signal == OtlpSignal::Traces) {
      body = json ? encodeTracesJson(resource_, batch) : encodeTracesProtobuf(resource_, batch);
    } else {
      body = json ? encodeLogsJson(resource_, batch) : encodeLogsProtobuf(resource_, batch);
    }
    Status result = internalError("otlp: export did not run");
    net::co_spawn(ioc_, exportOnce(std::move(body), batch.size(), result), net::detached);
    ioc_.restart();
    ioc_.run_for(options_.timeout + std::chrono::seconds(1));
    if (!ioc_.stopped()) {
      // Overall deadline (covers name resolution, which the stream timeout does not). Sockets
      // are closed, not destroyed: the coroutine still refers to them and unwinds first.
      cancelConnection();
      resolver_.cancel();
      ioc_.run();
      result = {Code::Unavailable, "otlp: export to " + endpoint_.host_header + " timed out"};
    }
    return result;
  }

 private:
  bool connected() const { return endpoint_.tls ? tls_ != nullptr : plain_ != nullptr; }

  void cancelConnection() {
    beast::error_code ignored;
    if (plain_) plain_->socket().close(ignored);
    if (tls_) beast::get_lowest_layer(*tls_).socket().close(ignored);
  }

  // REQUIRES: no operation pending on the streams.
  void closeConnection() {
    cancelConnection();
    plain_.reset();
    tls_.reset();
    buffer_.clear();
  }

  net::awaitable<void> connect(beast::error_code& ec, std::string& what) {
    auto results = co_await resolver_.async_resolve(endpoint_.host, endpoint_.port,
                                                    net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      what = "resolve";
      co_return;
    }
    if (!endpoint_.tls) {
      plain_ = std::make_unique<beast::tcp_stream>(ioc_);
      plain_->expires_after(options_.timeout);
      co_await plain_->async_connect(results, net::redirect_error(net::use_awaitable, ec));
      if (ec) what = "connect";
      co_return;
    }
    tls_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc_, *ssl_ctx_);
    SSL* ssl_handle = tls_->native_handle();
    if (!endpoint_.host_is_ip) {
      // SSL_set_tlsext_host_name() without its C-style cast.
      SSL_ctrl(ssl_handle, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(endpoint_.host.c_str()));
      SSL_set1_host(ssl_handle, endpoint_.host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_handle), endpoint_.host.c_str());
    }
    auto& lowest = beast::get_lowest_layer(*tls_);
    lowest.expires_after(options_.timeout);
    co_await lowest.async_connect(results, net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      what = "connect";
      co_return;
    }
    lowest.expires_after(options_.timeout);
    co_await tls_->async_handshake(ssl::stream_base::client,
                                   net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      what = "TLS handshake";
      long verify = SSL_get_verify_result(ssl_handle);
      if (verify != X509_V_OK)
        what += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
    }
  }

  template <typename Stream>
  net::awaitable<void> roundTrip(Stream& stream, http::request<http::string_body>& request,
                                 http::response_parser<http::string_body>& parser,
                                 beast::error_code& ec) {
    beast::get_lowest_layer(stream).expires_after(options_.timeout);
    co_await http::async_write(stream, request, net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
    co_await http::async_read(stream, buffer_, parser, net::redirect_error(net::use_awaitable, ec));
  }

  net::awaitable<void> exportOnce(std::string body, size_t count, Status& result) {
    try {
      result = co_await exportWithRetry(std::move(body), count);
    } catch (const std::exception& e) {
      closeConnection();
      result = internalError(std::string("otlp: ") + e.what());
    }
  }

  net::awaitable<Status> exportWithRetry(std::string body, size_t count) {
    http::request<http::string_body> request{http::verb::post, target_, 11};
    request.set(http::field::host, endpoint_.host_header);
    request.set(http::field::user_agent, "clrk-telemetry/0.1");
    request.set(http::field::content_type, options_.encoding == OtlpEncoding::Json
                                               ? "application/json"
                                               : "application/x-protobuf");
    for (const auto& [name, value] : options_.headers) request.set(name, value);
    request.keep_alive(true);
    request.body() = std::move(body);
    request.prepare_payload();

    for (int attempt = 0; attempt < 2; ++attempt) {
      bool reused = connected();
      beast::error_code ec;
      if (!reused) {
        std::string what;
        co_await connect(ec, what);
        if (ec) {
          closeConnection();
          co_return Status{Code::Unavailable,
                           "otlp: " + what + " " + endpoint_.host_header + ": " + ec.message()};
        }
      }
      http::response_parser<http::string_body> parser;
      parser.body_limit(kMaxResponseBody);
      if (endpoint_.tls) {
        co_await roundTrip(*tls_, request, parser, ec);
      } else {
        co_await roundTrip(*plain_, request, parser, ec);
      }
      if (ec) {
        closeConnection();
        // A kept-alive connection the collector closed meanwhile: retry once on a fresh one.
        if (reused && attempt == 0) continue;
        co_return Status{Code::Unavailable,
                         "otlp: POST " + endpoint_.host_header + target_ + ": " + ec.message()};
      }
      const auto& response = parser.get();
      if (!response.keep_alive()) closeConnection();
      co_return classify(response, count);
    }
    co_return Status{Code::Unavailable, "otlp: unreachable"};
  }

  Status classify(const http::response<http::string_body>& response, size_t count) {
    unsigned status = response.result_int();
    if (status >= 200 && status < 300) {
      checkPartialSuccess(response);
      return {};
    }
    std::string message = "otlp: POST " + endpoint_.host_header + target_ + ": HTTP " +
                          std::to_string(status) + ": " + excerpt(response.body());
    if (status == 400) {
      return invalidArgument(message + " (" + std::to_string(count) + " record(s) rejected)");
    }
    return {Code::Unavailable, message};
  }

  void checkPartialSuccess(const http::response<http::string_body>& response) {
    auto content_type = response[http::field::content_type];
    if (content_type.find("json") == std::string_view::npos || response.body().empty()) return;
    auto json = nlohmann::json::parse(response.body(), nullptr, false);
    if (json.is_discarded() || !json.is_object()) return;
    auto partial = json.find("partialSuccess");
    if (partial == json.end() || !partial->is_object()) return;
    for (const char* key : {"rejectedSpans", "rejectedLogRecords"}) {
      auto it = partial->find(key);
      if (it == partial->end()) continue;
      std::string rejected = it->is_string()   ? it->get<std::string>()
                             : it->is_number() ? it->dump()
                                               : "";
      if (!rejected.empty() && rejected != "0") {
        std::string error_message;
        if (auto em = partial->find("errorMessage"); em != partial->end() && em->is_string()) {
          error_message = excerpt(em->get<std::string>());
        }
        log()->warn("otlp: collector {} rejected {} {}: {}", endpoint_.host_header, rejected, key,
                    error_message);
      }
    }
  }

  OtlpExporterOptions options_;
  Endpoint endpoint_;
  std::string target_;
  OtlpResource resource_;
  net::io_context ioc_{1};
  tcp::resolver resolver_{ioc_};
  std::optional<ssl::context> ssl_ctx_;
  std::unique_ptr<beast::tcp_stream> plain_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls_;
  beast::flat_buffer buffer_;
};

Result<std::unique_ptr<OtlpHttpExporter>> OtlpHttpExporter::create(OtlpExporterOptions options) {
  try {
    CLRK_ASSIGN_OR_RETURN(Endpoint endpoint, parseEndpoint(options.endpoint));
    if (options.timeout.count() <= 0) return invalidArgument("otlp: timeout must be > 0");
    for (const auto& [name, value] : options.headers) {
      if (!validHeaderToken(name)) {
        return invalidArgument("otlp: headers: invalid header name \"" + excerpt(name) + "\"");
      }
      if (!validHeaderValue(value)) {
        return invalidArgument("otlp: headers: value of \"" + name + "\" contains CR, LF or NUL");
      }
    }
    if (!options.ca_pem.empty() && !endpoint.tls) {
      return invalidArgument("otlp: ca_pem is set but the endpoint is not https://");
    }
    auto impl = std::make_unique<Impl>(std::move(options), std::move(endpoint));
    CLRK_RETURN_IF_ERROR(impl->initTls());
    return std::unique_ptr<OtlpHttpExporter>(new OtlpHttpExporter(std::move(impl)));
  } catch (const std::exception& e) {
    return internalError(std::string("otlp: ") + e.what());
  }
}

OtlpHttpExporter::OtlpHttpExporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OtlpHttpExporter::~OtlpHttpExporter() = default;

std::string OtlpHttpExporter::name() const { return impl_->name(); }

Status OtlpHttpExporter::deliver(std::span<const Record> batch) {
  try {
    return impl_->deliver(batch);
  } catch (const std::exception& e) {
    return internalError(std::string("otlp: ") + e.what());
  }
}

}  // namespace clrk::telemetry
