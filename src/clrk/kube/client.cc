#include "clrk/kube/client.h"

#include "clrk/base/log.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <limits>
#include <optional>

namespace clrk::kube {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kMaxResponseBytes = 256 * 1024 * 1024;
constexpr size_t kMaxIdleConnections = 4;
constexpr auto kStreamReadTimeout = std::chrono::minutes(15);

struct Endpoint {
  bool tls = true;
  std::string host;  // without brackets
  std::string port;
  std::string host_header;
  std::string base_path;  // "" or "/prefix"
};

Result<Endpoint> parseServer(std::string_view url) {
  Endpoint ep;
  std::string_view rest;
  if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    ep.tls = false;
    rest = url.substr(7);
  } else {
    return invalidArgument("server URL \"" + std::string(url) + "\" must start with https://");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    ep.base_path = std::string(rest.substr(slash));
    while (!ep.base_path.empty() && ep.base_path.back() == '/') ep.base_path.pop_back();
  }
  if (authority.empty())
    return invalidArgument("server URL \"" + std::string(url) + "\" has no host");
  ep.host_header = std::string(authority);
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return invalidArgument("server URL \"" + std::string(url) + "\" has a bad IPv6 host");
    }
    ep.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() == ':') ep.port = std::string(after.substr(1));
  } else {
    size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      ep.host = std::string(authority.substr(0, colon));
      ep.port = std::string(authority.substr(colon + 1));
    } else {
      ep.host = std::string(authority);
    }
  }
  if (ep.port.empty()) ep.port = ep.tls ? "443" : "80";
  for (char c : ep.port) {
    if (c < '0' || c > '9') {
      return invalidArgument("server URL \"" + std::string(url) + "\" has a bad port");
    }
  }
  return ep;
}

bool isIpAddress(const std::string& host) {
  beast::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

Code codeForHttp(int status, std::string_view reason) {
  if (reason == "AlreadyExists") return Code::AlreadyExists;
  if (reason == "Conflict") return Code::Conflict;
  if (reason == "Gone" || reason == "Expired") return Code::Gone;
  if (reason == "NotFound") return Code::NotFound;
  if (reason == "Timeout" || reason == "ServerTimeout") return Code::Timeout;
  switch (status) {
    case 400:
    case 405:
    case 406:
    case 413:
    case 415:
    case 422:
      return Code::InvalidArgument;
    case 401:
      return Code::Unauthenticated;
    case 403:
      return Code::Forbidden;
    case 404:
      return Code::NotFound;
    case 409:
      return Code::Conflict;
    case 410:
      return Code::Gone;
    case 429:
    case 502:
    case 503:
      return Code::Unavailable;
    case 504:
      return Code::Timeout;
    default:
      return Code::Internal;
  }
}

}  // namespace

Status statusFromResponse(int http_status, std::string_view body) {
  std::string reason;
  std::string message;
  try {
    Json parsed = Json::parse(body);
    if (parsed.is_object() && parsed.value("kind", "") == "Status") {
      if (parsed.contains("reason") && parsed["reason"].is_string()) reason = parsed["reason"];
      if (parsed.contains("message") && parsed["message"].is_string()) message = parsed["message"];
      if (parsed.contains("code") && parsed["code"].is_number_integer()) {
        int code = parsed["code"].get<int>();
        if (code >= 400) http_status = code;
      }
    }
  } catch (const Json::exception&) {
    // Not JSON: use the text below.
  }
  if (message.empty()) {
    std::string text(body.substr(0, 512));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    message = text.empty()
                  ? "the server returned HTTP " + std::to_string(http_status)
                  : "the server returned HTTP " + std::to_string(http_status) + ": " + text;
  }
  return {codeForHttp(http_status, reason), message};
}

std::string urlEncode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

struct Client::Impl {
  Endpoint endpoint;
  std::unique_ptr<ssl::context> ssl_ctx;
  std::string verify_name;
  std::string authorization;
};

// One HTTP/1.1 connection with its own io_context; used by one thread at a time.
class Connection {
 public:
  explicit Connection(const Client::Impl& impl) : impl_(impl) {
    if (impl_.endpoint.tls) {
      tls_ = std::make_unique<ssl::stream<beast::tcp_stream>>(ioc_, *impl_.ssl_ctx);
    } else {
      plain_ = std::make_unique<beast::tcp_stream>(ioc_);
    }
  }

  beast::tcp_stream& lowest() { return tls_ ? tls_->next_layer() : *plain_; }
  bool connected() const { return connected_; }
  asio::io_context& ioc() { return ioc_; }

  // Runs one asynchronous operation started by `start` to completion (or timeout).
  template <typename Start>
  beast::error_code run(Start start, std::chrono::milliseconds timeout) {
    beast::error_code result = asio::error::would_block;
    if (timeout.count() > 0) {
      lowest().expires_after(timeout);
    } else {
      lowest().expires_never();
    }
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
  }

  Status connect(std::chrono::milliseconds timeout) {
    tcp::resolver resolver(ioc_);
    beast::error_code ec;
    auto results = resolver.resolve(impl_.endpoint.host, impl_.endpoint.port, ec);
    std::string where = impl_.endpoint.host_header;
    if (ec) return {Code::Unavailable, "resolving " + where + ": " + ec.message()};
    ec = run([&](auto handler) { lowest().async_connect(results, std::move(handler)); }, timeout);
    if (ec) return {Code::Unavailable, "connecting to " + where + ": " + ec.message()};
    lowest().socket().set_option(tcp::no_delay(true), ec);
    if (tls_) {
      SSL* ssl_handle = tls_->native_handle();
      const std::string& name = impl_.verify_name;
      if (!isIpAddress(name)) {
        // SSL_set_tlsext_host_name without the macro's C-style cast.
        SSL_ctrl(ssl_handle, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(name.c_str()));
      }
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
      if (isIpAddress(name)) {
        X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
      } else {
        X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
      }
      ec = run(
          [&](auto handler) {
            tls_->async_handshake(ssl::stream_base::client, std::move(handler));
          },
          timeout);
      if (ec) {
        std::string detail = ec.message();
        long verify = SSL_get_verify_result(ssl_handle);
        if (verify != X509_V_OK) detail = X509_verify_cert_error_string(verify);
        return {Code::Unavailable, "TLS handshake with " + where + ": " + detail};
      }
    }
    connected_ = true;
    return {};
  }

  template <typename Fn>
  auto withStream(Fn&& fn) {
    if (tls_) return fn(*tls_);
    return fn(*plain_);
  }

  beast::error_code write(http::request<http::string_body>& req,
                          std::chrono::milliseconds timeout) {
    return withStream([&](auto& stream) {
      return run([&](auto handler) { http::async_write(stream, req, std::move(handler)); },
                 timeout);
    });
  }

  template <typename Parser>
  beast::error_code readHeader(Parser& parser, std::chrono::milliseconds timeout) {
    return withStream([&](auto& stream) {
      return run(
          [&](auto handler) {
            http::async_read_header(stream, buffer_, parser, std::move(handler));
          },
          timeout);
    });
  }

  template <typename Parser>
  beast::error_code read(Parser& parser, std::chrono::milliseconds timeout) {
    return withStream([&](auto& stream) {
      return run(
          [&](auto handler) { http::async_read(stream, buffer_, parser, std::move(handler)); },
          timeout);
    });
  }

  template <typename Parser>
  beast::error_code readSome(Parser& parser, std::chrono::milliseconds timeout) {
    return withStream([&](auto& stream) {
      return run(
          [&](auto handler) { http::async_read_some(stream, buffer_, parser, std::move(handler)); },
          timeout);
    });
  }

  void close() {
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().socket().close(ec);
    connected_ = false;
  }

 private:
  const Client::Impl& impl_;
  asio::io_context ioc_;
  std::unique_ptr<beast::tcp_stream> plain_;
  std::unique_ptr<ssl::stream<beast::tcp_stream>> tls_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
};

Client::Client(RestConfig config) : config_(std::move(config)), impl_(std::make_unique<Impl>()) {}

Client::~Client() {
  std::lock_guard lock(mutex_);
  idle_.clear();
}

Result<std::shared_ptr<Client>> Client::create(RestConfig config) {
  CLRK_ASSIGN_OR_RETURN(Endpoint endpoint, parseServer(config.server));
  std::shared_ptr<Client> client(new Client(std::move(config)));
  Impl& impl = *client->impl_;
  const RestConfig& cfg = client->config_;
  impl.endpoint = endpoint;
  impl.verify_name = cfg.tls_server_name.empty() ? endpoint.host : cfg.tls_server_name;
  if (!cfg.token.empty()) impl.authorization = "Bearer " + cfg.token;
  if (endpoint.tls) {
    impl.ssl_ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
    ssl::context& ctx = *impl.ssl_ctx;
    beast::error_code ec;
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                    ec);
    if (cfg.insecure_skip_tls_verify) {
      ctx.set_verify_mode(ssl::verify_none, ec);
    } else {
      ctx.set_verify_mode(ssl::verify_peer, ec);
      if (!cfg.ca_pem.empty()) {
        ctx.add_certificate_authority(asio::buffer(cfg.ca_pem), ec);
        if (ec) {
          return invalidArgument("certificate authority of " + cfg.server +
                                 " is not a valid PEM certificate: " + ec.message());
        }
      } else {
        ctx.set_default_verify_paths(ec);
      }
    }
    if (!cfg.client_certificate_pem.empty()) {
      ctx.use_certificate_chain(asio::buffer(cfg.client_certificate_pem), ec);
      if (ec) return invalidArgument("client certificate is not valid PEM: " + ec.message());
      ctx.use_private_key(asio::buffer(cfg.client_key_pem), ssl::context::pem, ec);
      if (ec) return invalidArgument("client key is not valid PEM: " + ec.message());
    }
  } else if (!cfg.client_certificate_pem.empty()) {
    return invalidArgument("client certificates need an https:// server");
  }
  return client;
}

std::unique_ptr<Connection> Client::takeConnection() {
  {
    std::lock_guard lock(mutex_);
    if (!idle_.empty()) {
      auto connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
  }
  return std::make_unique<Connection>(*impl_);
}

void Client::returnConnection(std::unique_ptr<Connection> connection) {
  std::lock_guard lock(mutex_);
  if (idle_.size() < kMaxIdleConnections) idle_.push_back(std::move(connection));
}

namespace {

http::request<http::string_body> makeRequest(const Client::Impl& impl, std::string_view method,
                                             std::string_view target, std::string_view body,
                                             std::string_view content_type,
                                             std::string_view accept) {
  http::request<http::string_body> req;
  req.method(http::string_to_verb(beast::string_view(method.data(), method.size())));
  req.target(impl.endpoint.base_path + std::string(target));
  req.version(11);
  req.set(http::field::host, impl.endpoint.host_header);
  req.set(http::field::user_agent, "clrk/0.1.0");
  req.set(http::field::accept, beast::string_view(accept.data(), accept.size()));
  if (!impl.authorization.empty()) req.set(http::field::authorization, impl.authorization);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    std::string_view type = content_type.empty() ? "application/json" : content_type;
    req.set(http::field::content_type, beast::string_view(type.data(), type.size()));
    req.body() = std::string(body);
  }
  req.keep_alive(true);
  req.prepare_payload();
  return req;
}

bool isStaleConnectionError(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == ssl::error::stream_truncated;
}

}  // namespace

Result<HttpResponse> Client::request(std::string_view method, std::string_view target,
                                     std::string_view body, std::string_view content_type,
                                     std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) timeout = timeout_;
  auto req = makeRequest(*impl_, method, target, body, content_type, "application/json");
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto connection = takeConnection();
    bool reused = connection->connected();
    if (!reused) CLRK_RETURN_IF_ERROR(connection->connect(timeout));
    beast::error_code ec = connection->write(req, timeout);
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBytes);
    if (!ec) ec = connection->read(parser, timeout);
    if (ec) {
      connection->close();
      if (reused && isStaleConnectionError(ec)) continue;  // server closed an idle connection
      std::string what = std::string(method) + " " + config_.server + std::string(target);
      if (ec == beast::error::timeout) {
        return Status(Code::Timeout,
                      what + ": timed out after " + std::to_string(timeout.count()) + "ms");
      }
      return Status(Code::Unavailable, what + ": " + ec.message());
    }
    auto& res = parser.get();
    HttpResponse out;
    out.status = static_cast<int>(res.result_int());
    out.content_type = std::string(res[http::field::content_type]);
    out.body = std::move(res.body());
    if (res.keep_alive()) {
      returnConnection(std::move(connection));
    } else {
      connection->close();
    }
    return out;
  }
  return Status(Code::Unavailable, "connection to " + config_.server + " keeps closing");
}

std::string Client::resourcePath(const api::ResourceType& type, std::string_view ns,
                                 std::string_view name) {
  std::string path =
      type.group.empty() ? "/api/" + type.version : "/apis/" + type.group + "/" + type.version;
  if (type.namespaced && !ns.empty()) path += "/namespaces/" + urlEncode(ns);
  path += "/" + type.plural;
  if (!name.empty()) path += "/" + urlEncode(name);
  return path;
}

Result<Json> Client::jsonCall(std::string_view method, const std::string& target,
                              std::string_view body, std::string_view content_type) {
  CLRK_ASSIGN_OR_RETURN(HttpResponse res, request(method, target, body, content_type));
  if (res.status >= 400) return statusFromResponse(res.status, res.body);
  if (res.body.empty()) return Json::object();
  try {
    return Json::parse(res.body);
  } catch (const Json::exception& e) {
    return internalError(std::string(method) + " " + target +
                         ": response is not JSON: " + e.what());
  }
}

namespace {

Status requireNamespace(const api::ResourceType& type, std::string_view ns) {
  if (type.namespaced && ns.empty()) {
    return invalidArgument(type.qualifiedName() + " is namespaced: a namespace is required");
  }
  return {};
}

Result<std::pair<std::string, std::string>> metaNamespaceName(const api::ResourceType& type,
                                                              const Json& object) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) {
    return invalidArgument(type.kind + " object has no metadata");
  }
  const Json& meta = object["metadata"];
  std::string name = meta.value("name", "");
  std::string ns = type.namespaced ? meta.value("namespace", "") : "";
  if (name.empty()) return invalidArgument(type.kind + " object has no metadata.name");
  CLRK_RETURN_IF_ERROR(requireNamespace(type, ns));
  return std::make_pair(ns, name);
}

}  // namespace

Result<Json> Client::get(const api::ResourceType& type, std::string_view ns,
                         std::string_view name) {
  CLRK_RETURN_IF_ERROR(requireNamespace(type, ns));
  return jsonCall("GET", resourcePath(type, ns, name));
}

Result<Json> Client::list(const api::ResourceType& type, std::string_view ns,
                          const ListOptions& options) {
  Json merged;
  std::string continue_token;
  for (int page = 0; page < 100000; ++page) {
    std::string query;
    auto add = [&query](std::string_view key, std::string_view value) {
      query += (query.empty() ? "?" : "&") + std::string(key) + "=" + urlEncode(value);
    };
    if (!options.label_selector.empty()) add("labelSelector", options.label_selector);
    if (!options.field_selector.empty()) add("fieldSelector", options.field_selector);
    if (!options.resource_version.empty() && continue_token.empty()) {
      add("resourceVersion", options.resource_version);
    }
    if (options.limit > 0) add("limit", std::to_string(options.limit));
    if (!continue_token.empty()) add("continue", continue_token);
    CLRK_ASSIGN_OR_RETURN(Json body, jsonCall("GET", resourcePath(type, ns) + query));
    if (!body.is_object()) return internalError("list " + type.plural + ": not an object");
    if (!body.contains("items") || body["items"].is_null()) body["items"] = Json::array();
    if (merged.is_null()) {
      merged = std::move(body);
    } else {
      for (auto& item : body["items"]) merged["items"].push_back(std::move(item));
      if (body.contains("metadata")) merged["metadata"] = body["metadata"];
    }
    continue_token.clear();
    if (options.limit > 0 && merged.contains("metadata") && merged["metadata"].is_object()) {
      continue_token = merged["metadata"].value("continue", "");
    }
    if (continue_token.empty()) break;
  }
  if (merged.contains("metadata") && merged["metadata"].is_object()) {
    merged["metadata"].erase("continue");
  }
  return merged;
}

Result<Json> Client::create(const api::ResourceType& type, std::string_view ns,
                            const Json& object) {
  CLRK_RETURN_IF_ERROR(requireNamespace(type, ns));
  return jsonCall("POST", resourcePath(type, ns), object.dump());
}

Result<Json> Client::update(const api::ResourceType& type, const Json& object) {
  CLRK_ASSIGN_OR_RETURN(auto key, metaNamespaceName(type, object));
  return jsonCall("PUT", resourcePath(type, key.first, key.second), object.dump());
}

Result<Json> Client::updateStatus(const api::ResourceType& type, const Json& object) {
  CLRK_ASSIGN_OR_RETURN(auto key, metaNamespaceName(type, object));
  return jsonCall("PUT", resourcePath(type, key.first, key.second) + "/status", object.dump());
}

Result<Json> Client::patch(const api::ResourceType& type, std::string_view ns,
                           std::string_view name, PatchType patch_type, std::string_view body,
                           const PatchOptions& options) {
  CLRK_RETURN_IF_ERROR(requireNamespace(type, ns));
  std::string content_type;
  switch (patch_type) {
    case PatchType::JsonPatch:
      content_type = "application/json-patch+json";
      break;
    case PatchType::MergePatch:
      content_type = "application/merge-patch+json";
      break;
    case PatchType::StrategicMergePatch:
      content_type = "application/strategic-merge-patch+json";
      break;
    case PatchType::ApplyPatch:
      content_type = "application/apply-patch+yaml";
      break;
  }
  std::string query;
  if (!options.field_manager.empty()) query = "?fieldManager=" + urlEncode(options.field_manager);
  if (options.force) query += (query.empty() ? "?" : "&") + std::string("force=true");
  if (patch_type == PatchType::ApplyPatch && options.field_manager.empty()) {
    return invalidArgument("server-side apply needs a field manager");
  }
  return jsonCall("PATCH", resourcePath(type, ns, name) + query, body, content_type);
}

Result<Json> Client::remove(const api::ResourceType& type, std::string_view ns,
                            std::string_view name) {
  CLRK_RETURN_IF_ERROR(requireNamespace(type, ns));
  return jsonCall("DELETE", resourcePath(type, ns, name),
                  R"({"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"})");
}

namespace {

// Shared between the streaming thread and cancel() callers.
class StreamState : public Client::StreamHandle {
 public:
  void attach(Connection* connection) {
    std::lock_guard lock(mutex_);
    connection_ = connection;
  }
  void detach() {
    std::lock_guard lock(mutex_);
    connection_ = nullptr;
  }
  bool cancelled() const { return cancelled_.load(); }
  void cancel() override {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    if (connection_ != nullptr) {
      Connection* connection = connection_;
      asio::post(connection->ioc(), [connection] { connection->close(); });
    }
  }

 private:
  std::mutex mutex_;
  Connection* connection_ = nullptr;
  std::atomic<bool> cancelled_{false};
};

}  // namespace

Result<int> Client::stream(std::string_view target,
                           const std::function<bool(int, std::string_view)>& on_data,
                           const std::function<void(std::shared_ptr<StreamHandle>)>& on_open) {
  auto state = std::make_shared<StreamState>();
  Connection connection(*impl_);
  state->attach(&connection);
  struct Detach {
    StreamState& s;
    ~Detach() { s.detach(); }
  } detach{*state};
  if (on_open) on_open(state);
  if (state->cancelled()) return Status(Code::Unavailable, "stream cancelled");
  CLRK_RETURN_IF_ERROR(connection.connect(timeout_));
  auto req = makeRequest(*impl_, "GET", target, {}, {}, "application/json");
  req.keep_alive(false);
  beast::error_code ec = connection.write(req, timeout_);
  http::response_parser<http::string_body> parser;
  // Not boost::none: Boost 1.74 compares Content-Length against an empty optional as "too big".
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  if (!ec) ec = connection.readHeader(parser, timeout_);
  std::string what = "GET " + config_.server + std::string(target);
  if (ec) {
    if (state->cancelled()) return Status(Code::Unavailable, "stream cancelled");
    return Status(ec == beast::error::timeout ? Code::Timeout : Code::Unavailable,
                  what + ": " + ec.message());
  }
  int status = static_cast<int>(parser.get().result_int());
  while (!parser.is_done() && !state->cancelled()) {
    ec = connection.readSome(
        parser, std::chrono::duration_cast<std::chrono::milliseconds>(kStreamReadTimeout));
    std::string& body = parser.get().body();
    if (!body.empty()) {
      bool go_on = on_data(status, body);
      body.clear();
      if (!go_on) break;
    }
    if (ec == http::error::need_buffer) continue;
    if (ec) {
      if (state->cancelled() || ec == http::error::end_of_stream) break;
      connection.close();
      return Status(ec == beast::error::timeout ? Code::Timeout : Code::Unavailable,
                    what + ": " + ec.message());
    }
  }
  connection.close();
  return status;
}

}  // namespace clrk::kube
