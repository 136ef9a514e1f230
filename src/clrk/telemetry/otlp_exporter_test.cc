#include "clrk/telemetry/otlp_exporter.h"

#include "clrk/base/ids.h"
#include "clrk/telemetry/attributes.h"
#include "clrk/telemetry/pipeline.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

namespace clrk::telemetry {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;
using Json = nlohmann::json;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// A self-signed certificate for 127.0.0.1 / localhost (ECDSA P-256).

struct TestCert {
  std::string cert_pem;
  std::string key_pem;
};

TestCert makeSelfSignedCert() {
  TestCert out;
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 4242);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("clrk test collector"), -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost"},
                            std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(cert, key, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  out.cert_pem.assign(data, static_cast<size_t>(len));
  BIO_free(bio);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  len = BIO_get_mem_data(bio, &data);
  out.key_pem.assign(data, static_cast<size_t>(len));
  BIO_free(bio);
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

// ---------------------------------------------------------------------------------------------
// A loopback HTTP(S) server that records every request and answers with queued status codes
// (200 when the queue is empty).

struct ReceivedRequest {
  std::string method;
  std::string target;
  std::string content_type;
  std::string authorization;
  std::string body;
};

class FakeCollector {
 public:
  // port 0 = ephemeral. With `cert`, serves HTTPS. With `hang`, never answers.
  explicit FakeCollector(uint16_t port = 0, const TestCert* cert = nullptr, bool hang = false)
      : hang_(hang) {
    if (cert != nullptr) {
      ssl_ctx_.emplace(ssl::context::tls_server);
      ssl_ctx_->use_certificate_chain(net::buffer(cert->cert_pem));
      ssl_ctx_->use_private_key(net::buffer(cert->key_pem), ssl::context::pem);
    }
    tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    net::co_spawn(ioc_, accept(), net::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~FakeCollector() {
    ioc_.stop();
    thread_.join();
  }

  uint16_t port() const { return port_; }
  std::string url() const {
    return std::string(ssl_ctx_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
  }
  void queueStatus(unsigned status) {
    std::lock_guard lock(mu_);
    statuses_.push_back(status);
  }
  std::vector<ReceivedRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  int connections() const {
    std::lock_guard lock(mu_);
    return connections_;
  }

 private:
  net::awaitable<void> accept() {
    while (true) {
      beast::error_code ec;
      tcp::socket socket =
          co_await acceptor_.async_accept(net::redirect_error(net::use_awaitable, ec));
      if (ec) co_return;
      {
        std::lock_guard lock(mu_);
        ++connections_;
      }
      if (ssl_ctx_) {
        net::co_spawn(ioc_, serveTls(std::move(socket)), net::detached);
      } else {
        net::co_spawn(ioc_, serve(beast::tcp_stream(std::move(socket))), net::detached);
      }
    }
  }

  net::awaitable<void> serveTls(tcp::socket socket) {
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *ssl_ctx_);
    beast::error_code ec;
    co_await stream.async_handshake(ssl::stream_base::server,
                                    net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
    co_await session(stream);
  }

  net::awaitable<void> serve(beast::tcp_stream stream) { co_await session(stream); }

  template <typename Stream>
  net::awaitable<void> session(Stream& stream) {
    beast::flat_buffer buffer;
    while (true) {
      beast::error_code ec;
      http::request<http::string_body> request;
      co_await http::async_read(stream, buffer, request,
                                net::redirect_error(net::use_awaitable, ec));
      if (ec) co_return;
      unsigned status = 200;
      {
        std::lock_guard lock(mu_);
        requests_.push_back(
            ReceivedRequest{std::string(request.method_string()), std::string(request.target()),
                            std::string(request[http::field::content_type]),
                            std::string(request[http::field::authorization]), request.body()});
        if (!statuses_.empty()) {
          status = statuses_.front();
          statuses_.pop_front();
        }
      }
      if (hang_) {
        net::steady_timer timer(ioc_, 60s);
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        co_return;
      }
      http::response<http::string_body> response{static_cast<http::status>(status), 11};
      response.set(http::field::content_type, "application/json");
      response.body() = status == 200 ? "{}" : R"({"code":3,"message":"bad payload"})";
      response.keep_alive(request.keep_alive());
      response.prepare_payload();
      co_await http::async_write(stream, response, net::redirect_error(net::use_awaitable, ec));
      if (ec || !request.keep_alive()) co_return;
    }
  }

  bool hang_;
  net::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  std::optional<ssl::context> ssl_ctx_;
  uint16_t port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::deque<unsigned> statuses_;
  std::vector<ReceivedRequest> requests_;
  int connections_ = 0;
};

// A port nothing listens on (bound and released).
uint16_t unusedPort() {
  net::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

// ---------------------------------------------------------------------------------------------
// A minimal protobuf wire decoder, independent of the encoder under test.

struct PbField {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t number_value = 0;  // varint, fixed64, fixed32
  std::string bytes;          // length-delimited
};

bool readVarint(std::string_view& in, uint64_t& out) {
  out = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    out |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// Parses one message; empty optional on malformed input.
std::optional<std::vector<PbField>> parsePb(std::string_view in) {
  std::vector<PbField> fields;
  while (!in.empty()) {
    uint64_t key = 0;
    if (!readVarint(in, key)) return std::nullopt;
    PbField field;
    field.number = static_cast<uint32_t>(key >> 3);
    field.wire = static_cast<uint32_t>(key & 7);
    if (field.wire == 0) {
      if (!readVarint(in, field.number_value)) return std::nullopt;
    } else if (field.wire == 1 || field.wire == 5) {
      size_t size = field.wire == 1 ? 8 : 4;
      if (in.size() < size) return std::nullopt;
      for (size_t idx = 0; idx < size; ++idx) {
        field.number_value |= uint64_t{static_cast<uint8_t>(in[idx])} << (8 * idx);
      }
      in.remove_prefix(size);
    } else if (field.wire == 2) {
      uint64_t length = 0;
      if (!readVarint(in, length) || length > in.size()) return std::nullopt;
      field.bytes = std::string(in.substr(0, length));
      in.remove_prefix(length);
    } else {
      return std::nullopt;
    }
    fields.push_back(std::move(field));
  }
  return fields;
}

std::vector<const PbField*> all(const std::vector<PbField>& fields, uint32_t number) {
  std::vector<const PbField*> out;
  for (const PbField& field : fields) {
    if (field.number == number) out.push_back(&field);
  }
  return out;
}

const PbField* one(const std::vector<PbField>& fields, uint32_t number) {
  auto found = all(fields, number);
  return found.size() == 1 ? found[0] : nullptr;
}

std::vector<PbField> sub(const std::vector<PbField>& fields, uint32_t number) {
  const PbField* field = one(fields, number);
  if (field == nullptr || field->wire != 2) {
    ADD_FAILURE() << "missing embedded message field " << number;
    return {};
  }
  auto parsed = parsePb(field->bytes);
  EXPECT_TRUE(parsed.has_value()) << "field " << number << " is not a message";
  return parsed.value_or(std::vector<PbField>{});
}

// KeyValue list -> key -> decoded AnyValue.
std::map<std::string, AttributeValue> pbAttributes(const std::vector<PbField>& fields,
                                                   uint32_t number) {
  std::map<std::string, AttributeValue> out;
  for (const PbField* kv_field : all(fields, number)) {
    auto kv = parsePb(kv_field->bytes).value_or(std::vector<PbField>{});
    const PbField* key = one(kv, 1);
    if (key == nullptr) continue;
    auto any = sub(kv, 2);
    if (any.size() != 1) continue;
    const PbField& value = any[0];
    switch (value.number) {
      case 1:
        out[key->bytes] = value.bytes;
        break;
      case 2:
        out[key->bytes] = value.number_value != 0;
        break;
      case 3:
        out[key->bytes] = static_cast<int64_t>(value.number_value);
        break;
      case 4: {
        double d = 0;
        std::memcpy(&d, &value.number_value, sizeof d);
        out[key->bytes] = d;
        break;
      }
      default:
        break;
    }
  }
  return out;
}

std::string bytesOf(std::span<const uint8_t> id) {
  return std::string(reinterpret_cast<const char*>(id.data()), id.size());
}

// ---------------------------------------------------------------------------------------------
// JSON helpers for OTLP/JSON attribute lists.

std::map<std::string, Json> jsonAttributes(const Json& list) {
  std::map<std::string, Json> out;
  for (const Json& kv : list) out[kv.at("key").get<std::string>()] = kv.at("value");
  return out;
}

// ---------------------------------------------------------------------------------------------

Record sampleRecord(int64_t seq = 0) {
  Record record;
  record.name = "POST api.openai.com /v1/chat/completions";
  record.trace_id = newTraceId();
  record.span_id = newSpanId();
  record.start =
      std::chrono::system_clock::time_point(std::chrono::nanoseconds(1700000000123456789));
  record.end = record.start + 1500ms;
  set(record, attr::kGenAiSystem, std::string("openai"));
  set(record, attr::kGenAiRequestModel, std::string("gpt-4o-mini"));
  set(record, attr::kGenAiUsageInputTokens, int64_t{12});
  set(record, attr::kGenAiUsageOutputTokens, int64_t{30});
  set(record, attr::kClrkTtfbMs, 12.5);
  set(record, attr::kClrkStreaming, true);
  set(record, "test.negative", int64_t{-5});
  set(record, "test.seq", seq);
  return record;
}

OtlpResource testResource() {
  return OtlpResource{
      {Attribute{"service.name", std::string("clrk-egress")}}, "clrk.egress", "1.2"};
}

TEST(OtlpEncodeTest, TracesJsonFollowsTheOtlpJsonMapping) {
  Record parent = sampleRecord();
  Record child = sampleRecord();
  child.parent_span_id = parent.span_id;
  child.status_code = 2;
  child.status_message = "upstream returned 502";
  std::vector<Record> records{parent, child};
  Json json = Json::parse(encodeTracesJson(testResource(), records));

  const Json& resource_spans = json.at("resourceSpans");
  ASSERT_EQ(resource_spans.size(), 1u);
  auto resource = jsonAttributes(resource_spans[0].at("resource").at("attributes"));
  EXPECT_EQ(resource["service.name"], Json({{"stringValue", "clrk-egress"}}));
  const Json& scope_spans = resource_spans[0].at("scopeSpans");
  ASSERT_EQ(scope_spans.size(), 1u);
  EXPECT_EQ(scope_spans[0].at("scope").at("name"), "clrk.egress");
  EXPECT_EQ(scope_spans[0].at("scope").at("version"), "1.2");
  const Json& spans = scope_spans[0].at("spans");
  ASSERT_EQ(spans.size(), 2u);

  const Json& first = spans[0];
  EXPECT_EQ(first.at("traceId"), toHex(parent.trace_id));
  EXPECT_EQ(first.at("spanId"), toHex(parent.span_id));
  EXPECT_FALSE(first.contains("parentSpanId"));
  EXPECT_EQ(first.at("name"), "POST api.openai.com /v1/chat/completions");
  EXPECT_EQ(first.at("kind"), 3);
  EXPECT_EQ(first.at("startTimeUnixNano"), "1700000000123456789");
  EXPECT_EQ(first.at("endTimeUnixNano"), "1700000001623456789");
  EXPECT_FALSE(first.contains("status"));
  auto attributes = jsonAttributes(first.at("attributes"));
  EXPECT_EQ(attributes["gen_ai.system"], Json({{"stringValue", "openai"}}));
  EXPECT_EQ(attributes["gen_ai.usage.input_tokens"], Json({{"intValue", "12"}}));
  EXPECT_EQ(attributes["test.negative"], Json({{"intValue", "-5"}}));
  EXPECT_EQ(attributes["clrk.ttfb_ms"], Json({{"doubleValue", 12.5}}));
  EXPECT_EQ(attributes["clrk.streaming"], Json({{"boolValue", true}}));

  const Json& second = spans[1];
  EXPECT_EQ(second.at("parentSpanId"), toHex(parent.span_id));
  EXPECT_EQ(second.at("status").at("code"), 2);
  EXPECT_EQ(second.at("status").at("message"), "upstream returned 502");
}

TEST(OtlpEncodeTest, LogsJsonCarriesBodySeverityAndIds) {
  Record record = sampleRecord();
  record.status_code = 2;
  record.status_message = "denied";
  Json json = Json::parse(encodeLogsJson(testResource(), std::vector<Record>{record}));
  const Json& logs = json.at("resourceLogs").at(0).at("scopeLogs").at(0).at("logRecords");
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].at("body").at("stringValue"), record.name);
  EXPECT_EQ(logs[0].at("severityNumber"), 17);
  EXPECT_EQ(logs[0].at("severityText"), "ERROR");
  EXPECT_EQ(logs[0].at("timeUnixNano"), "1700000000123456789");
  EXPECT_EQ(logs[0].at("traceId"), toHex(record.trace_id));
  EXPECT_EQ(logs[0].at("spanId"), toHex(record.span_id));
  auto attributes = jsonAttributes(logs[0].at("attributes"));
  EXPECT_EQ(attributes["gen_ai.usage.output_tokens"], Json({{"intValue", "30"}}));
  EXPECT_EQ(attributes["clrk.status_message"], Json({{"stringValue", "denied"}}));
}

TEST(OtlpEncodeTest, TracesProtobufDecodes) {
  Record parent = sampleRecord();
  Record child = sampleRecord();
  child.parent_span_id = parent.span_id;
  child.status_code = 2;
  child.status_message = "boom";
  std::string wire = encodeTracesProtobuf(testResource(), std::vector<Record>{parent, child});

  auto request = parsePb(wire);
  ASSERT_TRUE(request.has_value());
  ASSERT_EQ(all(*request, 1).size(), 1u);  // one ResourceSpans
  auto resource_spans = sub(*request, 1);
  auto resource = sub(resource_spans, 1);
  auto resource_attributes = pbAttributes(resource, 1);
  EXPECT_EQ(std::get<std::string>(resource_attributes["service.name"]), "clrk-egress");
  auto scope_spans = sub(resource_spans, 2);
  auto scope = sub(scope_spans, 1);
  EXPECT_EQ(one(scope, 1)->bytes, "clrk.egress");
  EXPECT_EQ(one(scope, 2)->bytes, "1.2");
  auto spans = all(scope_spans, 2);
  ASSERT_EQ(spans.size(), 2u);

  auto first = parsePb(spans[0]->bytes).value();
  EXPECT_EQ(one(first, 1)->bytes, bytesOf(parent.trace_id));
  EXPECT_EQ(one(first, 2)->bytes, bytesOf(parent.span_id));
  EXPECT_EQ(one(first, 4), nullptr);  // root span: no parent
  EXPECT_EQ(one(first, 5)->bytes, parent.name);
  EXPECT_EQ(one(first, 6)->number_value, 3u);  // SPAN_KIND_CLIENT
  EXPECT_EQ(one(first, 7)->wire, 1u);
  EXPECT_EQ(one(first, 7)->number_value, 1700000000123456789u);
  EXPECT_EQ(one(first, 8)->number_value, 1700000001623456789u);
  EXPECT_EQ(one(first, 15), nullptr);
  auto attributes = pbAttributes(first, 9);
  EXPECT_EQ(std::get<std::string>(attributes["gen_ai.request.model"]), "gpt-4o-mini");
  EXPECT_EQ(std::get<int64_t>(attributes["gen_ai.usage.input_tokens"]), 12);
  EXPECT_EQ(std::get<int64_t>(attributes["test.negative"]), -5);
  EXPECT_EQ(std::get<double>(attributes["clrk.ttfb_ms"]), 12.5);
  EXPECT_EQ(std::get<bool>(attributes["clrk.streaming"]), true);

  auto second = parsePb(spans[1]->bytes).value();
  EXPECT_EQ(one(second, 4)->bytes, bytesOf(parent.span_id));
  auto status = sub(second, 15);
  EXPECT_EQ(one(status, 2)->bytes, "boom");
  EXPECT_EQ(one(status, 3)->number_value, 2u);
}

TEST(OtlpEncodeTest, LogsProtobufDecodes) {
  Record record = sampleRecord();
  std::string wire = encodeLogsProtobuf(testResource(), std::vector<Record>{record});
  auto request = parsePb(wire).value();
  auto scope_logs = sub(sub(request, 1), 2);
  auto logs = all(scope_logs, 2);
  ASSERT_EQ(logs.size(), 1u);
  auto log = parsePb(logs[0]->bytes).value();
  EXPECT_EQ(one(log, 1)->number_value, 1700000000123456789u);
  EXPECT_EQ(one(log, 2)->number_value, 9u);  // INFO
  EXPECT_EQ(one(log, 3)->bytes, "INFO");
  EXPECT_EQ(one(sub(log, 5), 1)->bytes, record.name);
  EXPECT_EQ(one(log, 9)->bytes, bytesOf(record.trace_id));
  EXPECT_EQ(one(log, 10)->bytes, bytesOf(record.span_id));
  EXPECT_EQ(one(log, 11)->number_value, 1700000001623456789u);
  EXPECT_EQ(std::get<int64_t>(pbAttributes(log, 6)["gen_ai.usage.output_tokens"]), 30);
}

TEST(OtlpEncodeTest, ProtocDecodesTheTracesPayload) {
  if (std::system("protoc --version > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "protoc is not installed";
  }
  fs::path dir = fs::temp_directory_path() / ("clrk-otlp-" + randomHex(6));
  fs::create_directories(dir);
  Record record = sampleRecord();
  {
    std::ofstream out(dir / "payload.bin", std::ios::binary);
    std::string wire = encodeTracesProtobuf(testResource(), std::vector<Record>{record});
    out.write(wire.data(), static_cast<std::streamsize>(wire.size()));
  }
  std::string command = "protoc --decode_raw < " + (dir / "payload.bin").string() + " > " +
                        (dir / "decoded.txt").string() + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0);
  std::ifstream in(dir / "decoded.txt");
  std::string decoded((std::istreambuf_iterator<char>(in)), {});
  fs::remove_all(dir);
  // protoc's raw view: nested field numbers and values.
  EXPECT_NE(decoded.find("5: \"POST api.openai.com /v1/chat/completions\""), std::string::npos)
      << decoded;
  EXPECT_NE(decoded.find("6: 3"), std::string::npos);
  EXPECT_NE(decoded.find("7: 0x17979cfe3d85cd15"), std::string::npos);  // fixed64 start time
  EXPECT_NE(decoded.find("1: \"gen_ai.usage.input_tokens\""), std::string::npos);
  EXPECT_NE(decoded.find("3: 12"), std::string::npos);
  EXPECT_NE(decoded.find("1: \"clrk-egress\""), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The exporter against a live loopback collector.

OtlpExporterOptions exporterOptions(const std::string& url) {
  OtlpExporterOptions options;
  options.endpoint = url;
  options.timeout = 2s;
  return options;
}

TEST(OtlpExporterTest, PostsJsonTracesWithHeadersAndKeepsTheConnection) {
  FakeCollector collector;
  OtlpExporterOptions options = exporterOptions(collector.url() + "/otel/");
  options.encoding = OtlpEncoding::Json;
  options.headers = {{"authorization", "Bearer collector-token"}};
  options.resource_attributes = {Attribute{"deployment.environment", std::string("test")}};
  auto exporter = OtlpHttpExporter::create(options);
  ASSERT_TRUE(exporter.ok()) << exporter.status().toString();
  EXPECT_EQ((*exporter)->name(), "otlp-traces");

  std::vector<Record> batch{sampleRecord(1), sampleRecord(2), sampleRecord(3)};
  ASSERT_TRUE((*exporter)->deliver(batch).ok());
  ASSERT_TRUE((*exporter)->deliver(std::vector<Record>{sampleRecord(4)}).ok());

  auto requests = collector.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(collector.connections(), 1);  // keep-alive
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].target, "/otel/v1/traces");
  EXPECT_EQ(requests[0].content_type, "application/json");
  EXPECT_EQ(requests[0].authorization, "Bearer collector-token");
  Json json = Json::parse(requests[0].body);
  auto resource = jsonAttributes(json.at("resourceSpans")[0].at("resource").at("attributes"));
  EXPECT_EQ(resource["service.name"], Json({{"stringValue", "clrk-egress"}}));
  EXPECT_EQ(resource["deployment.environment"], Json({{"stringValue", "test"}}));
  const Json& spans = json.at("resourceSpans")[0].at("scopeSpans")[0].at("spans");
  ASSERT_EQ(spans.size(), 3u);
  for (size_t idx = 0; idx < 3; ++idx) {
    EXPECT_EQ(spans[idx].at("spanId"), toHex(batch[idx].span_id));
    EXPECT_EQ(jsonAttributes(spans[idx].at("attributes"))["test.seq"],
              Json({{"intValue", std::to_string(idx + 1)}}));
  }
}

TEST(OtlpExporterTest, PostsProtobufLogs) {
  FakeCollector collector;
  OtlpExporterOptions options = exporterOptions(collector.url());
  options.encoding = OtlpEncoding::Protobuf;
  options.signal = OtlpSignal::Logs;
  auto exporter = OtlpHttpExporter::create(options);
  ASSERT_TRUE(exporter.ok());
  EXPECT_EQ((*exporter)->name(), "otlp-logs");
  Record record = sampleRecord(7);
  ASSERT_TRUE((*exporter)->deliver(std::vector<Record>{record}).ok());
  auto requests = collector.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/v1/logs");
  EXPECT_EQ(requests[0].content_type, "application/x-protobuf");
  auto request = parsePb(requests[0].body).value();
  auto scope_logs = sub(sub(request, 1), 2);
  auto logs = all(scope_logs, 2);
  ASSERT_EQ(logs.size(), 1u);
  auto log = parsePb(logs[0]->bytes).value();
  EXPECT_EQ(one(log, 10)->bytes, bytesOf(record.span_id));
  EXPECT_EQ(std::get<int64_t>(pbAttributes(log, 6)["test.seq"]), 7);
}

TEST(OtlpExporterTest, StatusCodesMapToRetryableOrPermanent) {
  FakeCollector collector;
  auto exporter = OtlpHttpExporter::create(exporterOptions(collector.url()));
  ASSERT_TRUE(exporter.ok());
  std::vector<Record> batch{sampleRecord()};
  collector.queueStatus(503);
  collector.queueStatus(400);
  collector.queueStatus(429);
  Status unavailable = (*exporter)->deliver(batch);
  EXPECT_EQ(unavailable.code(), Code::Unavailable);
  EXPECT_NE(unavailable.message().find("503"), std::string::npos);
  Status rejected = (*exporter)->deliver(batch);
  EXPECT_EQ(rejected.code(), Code::InvalidArgument);
  EXPECT_NE(rejected.message().find("bad payload"), std::string::npos);
  EXPECT_EQ((*exporter)->deliver(batch).code(), Code::Unavailable);
  EXPECT_TRUE((*exporter)->deliver(batch).ok());
}

TEST(OtlpExporterTest, CollectorDownIsUnavailable) {
  auto exporter =
      OtlpHttpExporter::create(exporterOptions("http://127.0.0.1:" + std::to_string(unusedPort())));
  ASSERT_TRUE(exporter.ok());
  Status status = (*exporter)->deliver(std::vector<Record>{sampleRecord()});
  EXPECT_EQ(status.code(), Code::Unavailable);
  EXPECT_NE(status.message().find("connect"), std::string::npos) << status.message();
}

TEST(OtlpExporterTest, SilentCollectorTimesOut) {
  FakeCollector collector(0, nullptr, /*hang=*/true);
  OtlpExporterOptions options = exporterOptions(collector.url());
  options.timeout = 300ms;
  auto exporter = OtlpHttpExporter::create(options);
  ASSERT_TRUE(exporter.ok());
  auto started = std::chrono::steady_clock::now();
  Status status = (*exporter)->deliver(std::vector<Record>{sampleRecord()});
  auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(status.code(), Code::Unavailable);
  EXPECT_LT(elapsed, 5s);
}

TEST(OtlpExporterTest, HttpsVerifiesTheCollectorCertificate) {
  TestCert cert = makeSelfSignedCert();
  FakeCollector collector(0, &cert);
  OtlpExporterOptions options = exporterOptions(collector.url());
  options.ca_pem = cert.cert_pem;
  auto trusted = OtlpHttpExporter::create(options);
  ASSERT_TRUE(trusted.ok()) << trusted.status().toString();
  Status ok = (*trusted)->deliver(std::vector<Record>{sampleRecord()});
  EXPECT_TRUE(ok.ok()) << ok.toString();
  EXPECT_EQ(collector.requests().size(), 1u);

  // Without the CA (system store only) the self-signed collector is refused.
  auto untrusted = OtlpHttpExporter::create(exporterOptions(collector.url()));
  ASSERT_TRUE(untrusted.ok());
  Status refused = (*untrusted)->deliver(std::vector<Record>{sampleRecord()});
  EXPECT_EQ(refused.code(), Code::Unavailable);
  EXPECT_NE(refused.message().find("TLS handshake"), std::string::npos) << refused.message();
  EXPECT_EQ(collector.requests().size(), 1u);

  // A certificate valid for 127.0.0.1/localhost is refused for another name.
  OtlpExporterOptions wrong_name =
      exporterOptions("https://127.0.0.2:" + std::to_string(collector.port()));
  wrong_name.ca_pem = cert.cert_pem;
  auto mismatched = OtlpHttpExporter::create(wrong_name);
  ASSERT_TRUE(mismatched.ok());
  EXPECT_EQ((*mismatched)->deliver(std::vector<Record>{sampleRecord()}).code(), Code::Unavailable);
}

TEST(OtlpExporterTest, BadOptionsAreRejected) {
  EXPECT_EQ(OtlpHttpExporter::create(exporterOptions("ftp://x")).status().code(),
            Code::InvalidArgument);
  EXPECT_EQ(OtlpHttpExporter::create(exporterOptions("http://")).status().code(),
            Code::InvalidArgument);
  EXPECT_EQ(OtlpHttpExporter::create(exporterOptions("http://h:99999")).status().code(),
            Code::InvalidArgument);
  EXPECT_EQ(OtlpHttpExporter::create(exporterOptions("http://u:p@h")).status().code(),
            Code::InvalidArgument);
  OtlpExporterOptions crlf = exporterOptions("http://h:4318");
  crlf.headers = {{"x-token", "a\r\nInjected: 1"}};
  EXPECT_EQ(OtlpHttpExporter::create(crlf).status().code(), Code::InvalidArgument);
  OtlpExporterOptions bad_ca = exporterOptions("https://h");
  bad_ca.ca_pem = "not a certificate";
  EXPECT_EQ(OtlpHttpExporter::create(bad_ca).status().code(), Code::InvalidArgument);
  EXPECT_TRUE(OtlpHttpExporter::create(exporterOptions("http://[::1]:4318/p")).ok());
  EXPECT_TRUE(OtlpHttpExporter::create(exporterOptions("https://collector.example")).ok());
}

// ---------------------------------------------------------------------------------------------
// End to end: the pipeline spools while the collector is down, across a restart, and delivers
// everything once it is up.

std::set<int64_t> seqsReceived(const FakeCollector& collector) {
  std::set<int64_t> out;
  for (const ReceivedRequest& request : collector.requests()) {
    auto parsed = parsePb(request.body);
    if (!parsed) continue;
    auto scope_spans = sub(sub(*parsed, 1), 2);
    for (const PbField* span : all(scope_spans, 2)) {
      auto fields = parsePb(span->bytes).value();
      out.insert(std::get<int64_t>(pbAttributes(fields, 9)["test.seq"]));
    }
  }
  return out;
}

TEST(OtlpExporterTest, CollectorDownLosesNothingAcrossARestart) {
  fs::path spool = fs::temp_directory_path() / ("clrk-otlp-e2e-" + randomHex(6));
  uint16_t port = unusedPort();
  auto makePipeline = [&] {
    OtlpExporterOptions options = exporterOptions("http://127.0.0.1:" + std::to_string(port));
    options.timeout = 500ms;
    auto exporter = OtlpHttpExporter::create(options);
    EXPECT_TRUE(exporter.ok());
    PipelineOptions pipeline_options;
    pipeline_options.spool_dir = spool;
    pipeline_options.sinks = {std::shared_ptr<Sink>(std::move(exporter).value())};
    pipeline_options.retry_initial = 10ms;
    pipeline_options.retry_max = 50ms;
    pipeline_options.shutdown_drain = 100ms;
    pipeline_options.batch_max_records = 16;
    return Pipeline::start(pipeline_options);
  };

  {
    auto pipeline = makePipeline();
    ASSERT_TRUE(pipeline.ok()) << pipeline.status().toString();
    for (int n = 0; n < 30; ++n) ASSERT_TRUE((*pipeline)->emit(sampleRecord(n)));
    EXPECT_FALSE((*pipeline)->flush(300ms));
    Stats stats = (*pipeline)->stats();
    EXPECT_GT(stats.sinks[0].failures, 0u);
    EXPECT_EQ(stats.sinks[0].delivered, 0u);
    EXPECT_NE(stats.sinks[0].last_error.find("connect"), std::string::npos);
  }  // destroyed while the collector is still down

  {
    auto pipeline = makePipeline();
    ASSERT_TRUE(pipeline.ok()) << pipeline.status().toString();
    for (int n = 30; n < 40; ++n) ASSERT_TRUE((*pipeline)->emit(sampleRecord(n)));
    EXPECT_FALSE((*pipeline)->flush(200ms));
    FakeCollector collector(port);  // the collector comes up
    ASSERT_TRUE((*pipeline)->flush(15s));
    for (int n = 40; n < 50; ++n) ASSERT_TRUE((*pipeline)->emit(sampleRecord(n)));
    ASSERT_TRUE((*pipeline)->flush(15s));
    std::set<int64_t> expected;
    for (int64_t n = 0; n < 50; ++n) expected.insert(n);
    EXPECT_EQ(seqsReceived(collector), expected);
    EXPECT_EQ((*pipeline)->stats().sinks[0].delivered, 50u);
    pipeline->reset();  // stop delivering before the collector goes away
  }
  std::error_code ec;
  fs::remove_all(spool, ec);
}

}  // namespace
}  // namespace clrk::telemetry
