#include "clrk/sandbox/image/registry_client.h"

#include "clrk/base/ascii.h"
#include "clrk/base/base64.h"
#include "clrk/base/log.h"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <curl/curl.h>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <unistd.h>

namespace clrk::sandbox::image {

namespace {

constexpr size_t kMaxErrorBody = 4096;
constexpr size_t kMaxTokenResponse = 64 << 10;
constexpr size_t kMaxHeaderBytes = 64 << 10;

void globalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string printable(std::string_view text, size_t limit = 300) {
  std::string out;
  for (char c : text.substr(0, limit)) {
    auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (text.size() > limit) out += "...";
  return out;
}

// The registry's JSON error ("MANIFEST_UNKNOWN: manifest unknown"), or a bounded body excerpt.
std::string errorDetail(const std::string& body) {
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (!doc.is_discarded() && doc.is_object()) {
    auto errors = doc.find("errors");
    if (errors != doc.end() && errors->is_array() && !errors->empty() && (*errors)[0].is_object()) {
      const auto& first = (*errors)[0];
      std::string code = first.value("code", nlohmann::json()).is_string()
                             ? first["code"].get<std::string>()
                             : std::string();
      std::string message = first.value("message", nlohmann::json()).is_string()
                                ? first["message"].get<std::string>()
                                : std::string();
      return printable(code + (code.empty() || message.empty() ? "" : ": ") + message);
    }
  }
  return printable(body, 200);
}

CURLcode addCaBundle(CURL* /*curl*/, void* ssl_ctx, void* user) {
  const auto* path = static_cast<const std::string*>(user);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  if (X509_STORE_load_file(store, path->c_str()) != 1) return CURLE_SSL_CACERT_BADFILE;
  return CURLE_OK;
}

}  // namespace

struct RegistryClient::Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names, last response only
  std::string error_body;                      // non-2xx bodies, bounded
  size_t header_bytes = 0;
};

// Receives 2xx bodies; returning false aborts the transfer.
class RegistryClient::Sink {
 public:
  virtual ~Sink() = default;
  virtual bool write(const char* data, size_t size) = 0;
  virtual Status reset() = 0;
  std::string abort_reason;
};

namespace {

class BufferSink : public RegistryClient::Sink {
 public:
  explicit BufferSink(size_t limit, std::string what) : limit_(limit), what_(std::move(what)) {}
  bool write(const char* data, size_t size) override {
    if (body.size() + size > limit_) {
      abort_reason = what_ + " is larger than " + std::to_string(limit_) + " bytes";
      return false;
    }
    body.append(data, size);
    return true;
  }
  Status reset() override {
    body.clear();
    return {};
  }
  std::string body;

 private:
  size_t limit_;
  std::string what_;
};

class FileSink : public RegistryClient::Sink {
 public:
  FileSink(int fd, uint64_t expected) : fd_(fd), expected_(expected) {
    ctx_ = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  }
  ~FileSink() override { EVP_MD_CTX_free(ctx_); }
  bool write(const char* data, size_t size) override {
    if (written_ + size > expected_) {
      abort_reason = "registry sent more than the " + std::to_string(expected_) +
                     " bytes the manifest declares";
      return false;
    }
    EVP_DigestUpdate(ctx_, data, size);
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::write(fd_, data + done, size - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        abort_reason = std::string("writing blob: ") + std::strerror(errno);
        return false;
      }
      done += static_cast<size_t>(n);
    }
    written_ += size;
    return true;
  }
  Status reset() override {
    written_ = 0;
    EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
    if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) {
      return internalError(std::string("truncating blob: ") + std::strerror(errno));
    }
    return {};
  }
  uint64_t written() const { return written_; }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md, &len);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
      out += kHex[md[i] >> 4];
      out += kHex[md[i] & 15];
    }
    return out;
  }

 private:
  int fd_;
  uint64_t expected_;
  uint64_t written_ = 0;
  EVP_MD_CTX* ctx_ = nullptr;
};

}  // namespace

RegistryClient::RegistryClient(ImageReference ref, PullOptions options)
    : ref_(std::move(ref)), options_(std::move(options)) {
  globalInit();
  base_url_ = (options_.insecure_http ? "http://" : "https://") + ref_.registry;
  deadline_ = std::chrono::steady_clock::now() + options_.timeout;
}

long RegistryClient::remainingMs() const {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline_ - std::chrono::steady_clock::now());
  return static_cast<long>(left.count());
}

Result<RegistryClient::Response> RegistryClient::perform(const std::string& url,
                                                         const std::string& accept, Sink& sink,
                                                         bool with_auth) {
  long remaining = remainingMs();
  if (remaining <= 0) return Status(Code::Timeout, "pull of " + ref_.str() + " timed out");
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return internalError("curl_easy_init failed");
  Response response;
  struct Context {
    Response* response;
    Sink* sink;
    CURL* curl;
  } context{&response, &sink, curl};

  auto header_cb = +[](char* data, size_t size, size_t count, void* user) -> size_t {
    auto* ctx = static_cast<Context*>(user);
    size_t len = size * count;
    ctx->response->header_bytes += len;
    if (ctx->response->header_bytes > kMaxHeaderBytes) return 0;
    std::string_view line(data, len);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
    if (line.starts_with("HTTP/")) {
      ctx->response->headers.clear();  // a new response (after a redirect or 100)
      return len;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return len;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    ctx->response->headers[asciiLowerCopy(line.substr(0, colon))] = std::string(value);
    return len;
  };
  auto write_cb = +[](char* data, size_t size, size_t count, void* user) -> size_t {
    auto* ctx = static_cast<Context*>(user);
    size_t len = size * count;
    long code = 0;
    curl_easy_getinfo(ctx->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code >= 300) {
      std::string& body = ctx->response->error_body;
      body.append(data, std::min(len, kMaxErrorBody - std::min(kMaxErrorBody, body.size())));
      return len;
    }
    return ctx->sink->write(data, len) ? len : 0;
  };

  struct curl_slist* headers = nullptr;
  if (!accept.empty()) headers = curl_slist_append(headers, ("Accept: " + accept).c_str());
  if (with_auth && !authorization_.empty()) {
    headers = curl_slist_append(headers, ("Authorization: " + authorization_).c_str());
  }
  headers = curl_slist_append(headers, "User-Agent: clrk-image/0.1");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR,
                   options_.insecure_http ? "http,https" : "https");
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, remaining);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, std::min(remaining, 30000L));
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &context);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &context);
  if (!options_.ca_bundle_path.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, addCaBundle);
    curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, &options_.ca_bundle_path);
  }
  char error_buffer[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  ++counters_.requests;
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    if (rc == CURLE_WRITE_ERROR && !sink.abort_reason.empty()) {
      return invalidArgument(printable(url) + ": " + sink.abort_reason);
    }
    std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      return Status(Code::Timeout, "pull of " + ref_.str() + " timed out: " + detail);
    }
    if (rc == CURLE_TOO_MANY_REDIRECTS) return invalidArgument(printable(url) + ": " + detail);
    return Status(Code::Unavailable, "cannot reach registry " + ref_.registry + " (" +
                                         printable(url) + "): " + detail);
  }
  return response;
}

Result<RegistryClient::Response> RegistryClient::get(const std::string& url,
                                                     const std::string& accept, Sink& sink) {
  CLRK_ASSIGN_OR_RETURN(Response response, perform(url, accept, sink, true));
  if (response.status != 401) return response;
  auto challenge = response.headers.find("www-authenticate");
  if (challenge == response.headers.end()) {
    return Status(Code::Unauthenticated, "registry " + ref_.registry +
                                             " answered 401 without a WWW-Authenticate challenge");
  }
  if (authorization_.starts_with("Basic ")) {
    // Our Basic credentials were refused: asking again will not help.
    return Status(Code::Unauthenticated,
                  "registry " + ref_.registry + " refused access to " + ref_.repository +
                      (options_.auth ? " with the credentials of user \"" +
                                           printable(options_.auth->username) + "\""
                                     : std::string(" anonymously")) +
                      ": " + errorDetail(response.error_body));
  }
  // No credentials sent yet, or a Bearer token that expired during a long pull: (re)negotiate.
  authorization_.clear();
  CLRK_RETURN_IF_ERROR(authenticate(challenge->second));
  CLRK_RETURN_IF_ERROR(sink.reset());
  CLRK_ASSIGN_OR_RETURN(response, perform(url, accept, sink, true));
  if (response.status == 401) {
    return Status(Code::Unauthenticated,
                  "registry " + ref_.registry + " refused access to " + ref_.repository +
                      (options_.auth ? " with the credentials of user \"" +
                                           printable(options_.auth->username) + "\""
                                     : std::string(" without credentials")) +
                      ": " + errorDetail(response.error_body));
  }
  return response;
}

Status RegistryClient::authenticate(const std::string& challenge_header) {
  auto parsed = parseAuthChallenge(challenge_header);
  if (!parsed.ok()) {
    return Status(Code::Unauthenticated,
                  "registry " + ref_.registry + ": bad challenge: " + parsed.status().message());
  }
  const AuthChallenge& challenge = *parsed;
  std::string no_credentials = "registry " + ref_.registry + " requires authentication for " +
                               ref_.repository +
                               " and no credentials were given (add an image pull Secret)";
  if (challenge.scheme == "basic") {
    if (!options_.auth) return Status(Code::Unauthenticated, no_credentials);
    authorization_ =
        "Basic " + base64Encode(options_.auth->username + ":" + options_.auth->password);
    return {};
  }
  if (challenge.scheme != "bearer") {
    return Status(Code::Unauthenticated, "registry " + ref_.registry +
                                             ": unsupported authentication scheme \"" +
                                             printable(challenge.scheme) + "\"");
  }
  auto realm_it = challenge.params.find("realm");
  if (realm_it == challenge.params.end() || realm_it->second.empty()) {
    return Status(Code::Unauthenticated,
                  "registry " + ref_.registry + ": Bearer challenge without a realm");
  }
  const std::string& realm = realm_it->second;
  bool https = realm.starts_with("https://");
  if (!https && !(options_.insecure_http && realm.starts_with("http://"))) {
    return Status(Code::Unauthenticated, "registry " + ref_.registry + ": token realm \"" +
                                             printable(realm) +
                                             "\" is not an https URL; refusing to use it");
  }
  CURL* escaper = curl_easy_init();
  if (escaper == nullptr) return internalError("curl_easy_init failed");
  auto escape = [&](const std::string& value) {
    char* out = curl_easy_escape(escaper, value.c_str(), static_cast<int>(value.size()));
    std::string text = out ? out : "";
    curl_free(out);
    return text;
  };
  std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
  if (auto service = challenge.params.find("service"); service != challenge.params.end()) {
    url += "service=" + escape(service->second) + "&";
  }
  std::string scope = "repository:" + ref_.repository + ":pull";
  if (auto given = challenge.params.find("scope"); given != challenge.params.end()) {
    scope = given->second;
  }
  url += "scope=" + escape(scope);
  curl_easy_cleanup(escaper);

  // The token request carries Basic credentials when we have them (anonymous otherwise).
  std::string saved = authorization_;
  authorization_ =
      options_.auth
          ? "Basic " + base64Encode(options_.auth->username + ":" + options_.auth->password)
          : std::string();
  BufferSink sink(kMaxTokenResponse, "token response");
  auto response = perform(url, "application/json", sink, true);
  authorization_ = saved;
  if (!response.ok()) return response.status().withContext("fetching a registry token");
  if (response->status == 401 || response->status == 403) {
    if (!options_.auth) return Status(Code::Unauthenticated, no_credentials);
    return Status(Code::Unauthenticated, "registry " + ref_.registry +
                                             " token service rejected the credentials of user \"" +
                                             printable(options_.auth->username) + "\" (HTTP " +
                                             std::to_string(response->status) + ")");
  }
  if (response->status != 200) {
    return Status(Code::Unavailable, "registry " + ref_.registry + " token service answered HTTP " +
                                         std::to_string(response->status) + ": " +
                                         errorDetail(response->error_body));
  }
  nlohmann::json doc = nlohmann::json::parse(sink.body, nullptr, false);
  std::string token;
  if (!doc.is_discarded() && doc.is_object()) {
    for (const char* field : {"token", "access_token"}) {
      auto it = doc.find(field);
      if (it != doc.end() && it->is_string() && !it->get<std::string>().empty()) {
        token = it->get<std::string>();
        break;
      }
    }
  }
  if (token.empty()) {
    return Status(Code::Unauthenticated,
                  "registry " + ref_.registry + " token service answered without a token");
  }
  for (char c : token) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
      return Status(Code::Unauthenticated,
                    "registry " + ref_.registry + " token contains invalid characters");
    }
  }
  authorization_ = "Bearer " + token;
  return {};
}

Status RegistryClient::statusFor(const Response& response, const std::string& what) const {
  std::string text =
      what + ": HTTP " + std::to_string(response.status) + " " + errorDetail(response.error_body);
  switch (response.status) {
    case 404:
      return notFound(text);
    case 401:
      return Status(Code::Unauthenticated, text);
    case 403:
      return Status(Code::Forbidden, text);
    case 429:
      return Status(Code::Unavailable, text);
    default:
      if (response.status >= 500) return Status(Code::Unavailable, text);
      return internalError(text);
  }
}

Result<FetchedManifest> RegistryClient::fetchManifest(const std::string& tag_or_digest) {
  std::string url = base_url_ + "/v2/" + ref_.repository + "/manifests/" + tag_or_digest;
  std::string accept = std::string(kOciIndex) + ", " + std::string(kOciManifest) + ", " +
                       std::string(kDockerList) + ", " + std::string(kDockerManifest);
  BufferSink sink(kMaxManifestBytes, "manifest");
  CLRK_ASSIGN_OR_RETURN(Response response, get(url, accept, sink));
  std::string what = "manifest " + ref_.registry + "/" + ref_.repository + ":" + tag_or_digest;
  if (response.status != 200) return statusFor(response, what);
  FetchedManifest out;
  out.body = std::move(sink.body);
  if (auto it = response.headers.find("content-type"); it != response.headers.end()) {
    out.content_type = it->second;
  }
  out.digest = "sha256:" + sha256Hex(out.body);
  if (tag_or_digest.starts_with("sha256:") && out.digest != tag_or_digest) {
    return invalidArgument(what + ": digest mismatch: the registry sent content with digest " +
                           out.digest);
  }
  if (auto it = response.headers.find("docker-content-digest"); it != response.headers.end() &&
                                                                it->second.starts_with("sha256:") &&
                                                                it->second != out.digest) {
    return invalidArgument(what + ": Docker-Content-Digest " + printable(it->second) +
                           " does not match the content's digest " + out.digest);
  }
  return out;
}

Status RegistryClient::fetchBlob(const Descriptor& desc, const std::filesystem::path& dest) {
  int fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return internalError(dest.string() + ": " + std::strerror(errno));
  FileSink sink(fd, desc.size);
  std::string url = base_url_ + "/v2/" + ref_.repository + "/blobs/" + desc.digest;
  std::string what = "blob " + desc.digest + " of " + ref_.str();
  auto fail = [&](Status status) {
    ::close(fd);
    ::unlink(dest.c_str());
    return status;
  };
  auto response = get(url, "", sink);
  if (!response.ok()) return fail(response.status().withContext(what));
  if (response->status != 200) return fail(statusFor(*response, what));
  if (::fsync(fd) != 0) return fail(internalError(dest.string() + ": fsync failed"));
  if (sink.written() != desc.size) {
    return fail(invalidArgument(what + ": size mismatch: got " + std::to_string(sink.written()) +
                                " bytes, the manifest declares " + std::to_string(desc.size)));
  }
  std::string got = "sha256:" + sink.hex();
  if (got != desc.digest) {
    return fail(invalidArgument(what + ": digest mismatch: the content's digest is " + got));
  }
  ::close(fd);
  return {};
}

}  // namespace clrk::sandbox::image
