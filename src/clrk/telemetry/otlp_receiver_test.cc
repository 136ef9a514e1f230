#include "clrk/telemetry/otlp_receiver.h"

#include "clrk/telemetry/attributes.h"
#include "clrk/telemetry/local_store.h"
#include "clrk/telemetry/otlp_exporter.h"
#include "clrk/telemetry/pipeline.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <filesystem>
#include <thread>
#include <zlib.h>

namespace clrk::telemetry {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr auto kDeadline = 60s;  // a failsafe for waits that normally end at once

}  // namespace

// Failure messages show records as their JSON.
void PrintTo(const Record& record, std::ostream* out) { *out << toJson(record); }

namespace {

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

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "otlp-receiver-test-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

Record egressRecord(int index) {
  Record record;
  record.name = "POST api.openai.com /v1/chat/completions #" + std::to_string(index);
  record.trace_id = newTraceId();
  record.span_id = newSpanId();
  record.start =
      std::chrono::system_clock::time_point(std::chrono::nanoseconds(1700000000000000000)) +
      std::chrono::seconds(index);
  record.end = record.start + 250ms;
  record.status_code = index % 2 == 0 ? 0 : static_cast<int>(StatusCode::Error);
  if (record.status_code != 0) record.status_message = "upstream 502";
  set(record, attr::kClrkNamespace, std::string("team-a"));
  set(record, attr::kClrkAgent, std::string("summarizer"));
  set(record, attr::kClrkExecutionId, std::string("e-1"));
  set(record, attr::kClrkRequestId, "r-" + std::to_string(index));
  set(record, attr::kGenAiUsageInputTokens, int64_t{index});
  set(record, attr::kClrkTtfbMs, 1.5 * index);
  set(record, attr::kClrkStreaming, index % 3 == 0);
  return record;
}

// What the store holds for a record sent by an exporter with the default resource.
Record asReceived(Record record) {
  record.attributes.push_back(Attribute{"service.name", std::string("clrk-egress")});
  return record;
}

// Newest first, as LocalStore::query returns them.
std::vector<Record> storedRecords(const LocalStore& store) {
  Query query;
  query.execution_id = "e-1";
  query.limit = 10000;
  auto records = store.query(query);
  EXPECT_TRUE(records.ok()) << records.status().toString();
  return records.ok() ? *records : std::vector<Record>{};
}

std::vector<Record> newestFirst(std::vector<Record> records) {
  std::sort(records.begin(), records.end(),
            [](const Record& a, const Record& b) { return a.start > b.start; });
  return records;
}

struct Response {
  int status = 0;
  std::string content_type;
  std::string body;
};

// One request over a fresh connection.
Response post(uint16_t port, const std::string& target, const std::string& content_type,
              const std::string& body,
              std::vector<std::pair<http::field, std::string>> headers = {},
              http::verb method = http::verb::post) {
  net::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> request{method, target, 11};
  request.set(http::field::host, "127.0.0.1");
  if (!content_type.empty()) request.set(http::field::content_type, content_type);
  request.body() = body;
  request.prepare_payload();
  for (const auto& [name, value] : headers) {
    if (name == http::field::transfer_encoding) {
      request.chunked(true);  // drops the Content-Length
    } else {
      request.set(name, value);
    }
  }
  http::write(socket, request);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(socket, buffer, response);
  return {static_cast<int>(response.result_int()), std::string(response[http::field::content_type]),
          response.body()};
}

std::string gzip(std::string_view data) {
  z_stream stream{};
  EXPECT_EQ(deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&stream, data.size()) + 32, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

// A sink that refuses everything.
class RefusingSink : public Sink {
 public:
  std::string name() const override { return "refusing"; }
  Status deliver(std::span<const Record>) override {
    ++calls;
    return Status(Code::Unavailable, "disk full");
  }
  std::atomic<int> calls{0};
};

OtlpReceiverOptions receiverOptions(const std::string& token = "",
                                    size_t max_body_bytes = 8u << 20) {
  OtlpReceiverOptions options;
  options.token = token;
  options.max_body_bytes = max_body_bytes;
  return options;
}

class OtlpReceiverTest : public ::testing::Test {
 public:
  void SetUp() override {
    auto store = LocalStore::open(dir_.path() / "collected.db");
    ASSERT_TRUE(store.ok()) << store.status().toString();
    store_ = std::move(store).value();
  }

  std::unique_ptr<OtlpReceiver> startReceiver(OtlpReceiverOptions options, Sink* sink = nullptr) {
    auto receiver = OtlpReceiver::create(std::move(options), sink != nullptr ? *sink : *store_);
    EXPECT_TRUE(receiver.ok()) << receiver.status().toString();
    if (!receiver.ok()) return nullptr;
    Status started = (*receiver)->start();
    EXPECT_TRUE(started.ok()) << started.toString();
    EXPECT_NE((*receiver)->port(), 0);
    return std::move(receiver).value();
  }

  std::shared_ptr<Sink> exporter(uint16_t port, OtlpEncoding encoding, OtlpSignal signal,
                                 const std::string& token = "s3cret") {
    OtlpExporterOptions options;
    options.endpoint = "http://127.0.0.1:" + std::to_string(port);
    options.encoding = encoding;
    options.signal = signal;
    if (!token.empty()) options.headers = {{"authorization", "Bearer " + token}};
    options.timeout = 5s;
    auto created = OtlpHttpExporter::create(std::move(options));
    EXPECT_TRUE(created.ok()) << created.status().toString();
    return std::shared_ptr<Sink>(std::move(created).value());
  }

  std::unique_ptr<Pipeline> pipelineTo(std::shared_ptr<Sink> sink) {
    PipelineOptions options;
    options.spool_dir = dir_.path() / "spool";
    options.fsync = false;
    options.batch_max_records = 16;
    options.retry_initial = 10ms;
    options.retry_max = 100ms;
    options.sinks = {std::move(sink)};
    auto pipeline = Pipeline::start(std::move(options));
    EXPECT_TRUE(pipeline.ok()) << pipeline.status().toString();
    return std::move(pipeline).value();
  }

  TempDir dir_;
  std::unique_ptr<LocalStore> store_;
};

// Worker side: a real Pipeline with a real exporter; controller side: the receiver into a
// LocalStore. Every record arrives with its identity attributes (and the resource's).
void pipelineDeliversEveryRecord(OtlpReceiverTest& test, OtlpEncoding encoding) {
  auto receiver = test.startReceiver(receiverOptions("s3cret"));
  ASSERT_NE(receiver, nullptr);
  std::vector<Record> sent;
  {
    auto pipeline = test.pipelineTo(test.exporter(receiver->port(), encoding, OtlpSignal::Traces));
    for (int index = 0; index < 40; ++index) {
      sent.push_back(egressRecord(index));
      ASSERT_TRUE(pipeline->emit(sent.back()));
    }
    ASSERT_TRUE(pipeline->flush(kDeadline));
    EXPECT_EQ(pipeline->stats().sinks[0].failures, 0u);
  }
  std::vector<Record> expected;
  for (const Record& record : sent) expected.push_back(asReceived(record));
  EXPECT_EQ(storedRecords(*test.store_), newestFirst(expected));
  OtlpReceiverStats stats = receiver->stats();
  EXPECT_EQ(stats.records, 40u);
  EXPECT_EQ(stats.accepted, stats.requests);
  EXPECT_GE(stats.accepted, 3u);  // batches of at most 16
}

TEST_F(OtlpReceiverTest, PipelineDeliversEveryRecordAsProtobuf) {
  pipelineDeliversEveryRecord(*this, OtlpEncoding::Protobuf);
}

TEST_F(OtlpReceiverTest, PipelineDeliversEveryRecordAsJson) {
  pipelineDeliversEveryRecord(*this, OtlpEncoding::Json);
}

TEST_F(OtlpReceiverTest, LogsArriveToo) {
  auto receiver = startReceiver(receiverOptions());
  ASSERT_NE(receiver, nullptr);
  auto sink = exporter(receiver->port(), OtlpEncoding::Protobuf, OtlpSignal::Logs, "");
  std::vector<Record> sent = {egressRecord(1), egressRecord(2)};
  ASSERT_TRUE(sink->deliver(sent).ok());
  std::vector<Record> stored = storedRecords(*store_);
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0], asReceived(sent[1]));  // logs carry everything these records have
  EXPECT_EQ(stored[1], asReceived(sent[0]));
}

// The collector is down when the worker emits: the pipeline spools and retries, and once the
// receiver listens every record arrives.
TEST_F(OtlpReceiverTest, ReceiverDownFirstThenStartedLosesNothing) {
  uint16_t port = 0;
  {
    auto probe = startReceiver(receiverOptions());  // learns a free port, then frees it
    ASSERT_NE(probe, nullptr);
    port = probe->port();
  }
  auto pipeline = pipelineTo(exporter(port, OtlpEncoding::Protobuf, OtlpSignal::Traces));
  std::vector<Record> sent;
  for (int index = 0; index < 100; ++index) {
    sent.push_back(egressRecord(index));
    ASSERT_TRUE(pipeline->emit(sent.back()));
  }
  auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (pipeline->stats().sinks[0].failures < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_GE(pipeline->stats().sinks[0].failures, 2u) << "the exporter never tried";
  EXPECT_TRUE(storedRecords(*store_).empty());

  OtlpReceiverOptions options = receiverOptions("s3cret");
  options.port = port;
  auto receiver = startReceiver(options);
  ASSERT_NE(receiver, nullptr);
  ASSERT_TRUE(pipeline->flush(kDeadline));
  std::vector<Record> expected;
  for (const Record& record : sent) expected.push_back(asReceived(record));
  EXPECT_EQ(storedRecords(*store_), newestFirst(expected));
  EXPECT_EQ(pipeline->stats().sinks[0].dropped_permanent, 0u);
}

TEST_F(OtlpReceiverTest, TlsWithAToken) {
  TestCert cert = makeSelfSignedCert();
  OtlpReceiverOptions tls = receiverOptions("s3cret");
  tls.cert_pem = cert.cert_pem;
  tls.key_pem = cert.key_pem;
  auto receiver = startReceiver(tls);
  ASSERT_NE(receiver, nullptr);
  OtlpExporterOptions options;
  options.endpoint = "https://127.0.0.1:" + std::to_string(receiver->port());
  options.headers = {{"authorization", "Bearer s3cret"}};
  options.ca_pem = cert.cert_pem;
  auto sink = OtlpHttpExporter::create(options);
  ASSERT_TRUE(sink.ok());
  Record record = egressRecord(7);
  Status delivered = (*sink)->deliver({&record, 1});
  ASSERT_TRUE(delivered.ok()) << delivered.toString();
  EXPECT_EQ(storedRecords(*store_), std::vector<Record>{asReceived(record)});

  options.headers = {{"authorization", "Bearer wrong"}};
  auto wrong = OtlpHttpExporter::create(options);
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ((*wrong)->deliver({&record, 1}).code(), Code::Unavailable);
  EXPECT_EQ(receiver->stats().unauthorized, 1u);
}

TEST_F(OtlpReceiverTest, GzipBodies) {
  auto receiver = startReceiver(receiverOptions("", 64 << 10));
  ASSERT_NE(receiver, nullptr);
  std::vector<Record> sent = {egressRecord(1), egressRecord(2), egressRecord(3)};
  std::string body = encodeTracesProtobuf({}, sent);
  Response ok = post(receiver->port(), "/v1/traces", "application/x-protobuf", gzip(body),
                     {{http::field::content_encoding, "gzip"}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.content_type, "application/x-protobuf");
  EXPECT_EQ(ok.body, "");
  EXPECT_EQ(storedRecords(*store_).size(), 3u);

  // 1 MiB of zeros compresses to about 1 KiB: inside the wire limit, past the inflated one.
  Response bomb = post(receiver->port(), "/v1/traces", "application/x-protobuf",
                       gzip(std::string(1 << 20, '\0')), {{http::field::content_encoding, "gzip"}});
  EXPECT_EQ(bomb.status, 413);
  EXPECT_THAT(bomb.body, HasSubstr("larger than 65536 bytes"));

  std::string corrupt = gzip(body);
  corrupt.resize(corrupt.size() / 2);
  Response bad = post(receiver->port(), "/v1/traces", "application/json", corrupt,
                      {{http::field::content_encoding, "gzip"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("invalid gzip body"));

  Response brotli = post(receiver->port(), "/v1/traces", "application/json", "{}",
                         {{http::field::content_encoding, "br"}});
  EXPECT_EQ(brotli.status, 415);
  EXPECT_THAT(brotli.body, HasSubstr("content encoding must be gzip"));
}

TEST_F(OtlpReceiverTest, RejectsWhatItCannotAccept) {
  auto receiver = startReceiver(receiverOptions("s3cret", 4096));
  ASSERT_NE(receiver, nullptr);
  uint16_t port = receiver->port();
  std::vector<std::pair<http::field, std::string>> auth = {
      {http::field::authorization, "Bearer s3cret"}};

  Response no_token = post(port, "/v1/traces", "application/json", "{}");
  EXPECT_EQ(no_token.status, 401);
  Response wrong_token = post(port, "/v1/traces", "application/json", "{}",
                              {{http::field::authorization, "Bearer s3cres"}});
  EXPECT_EQ(wrong_token.status, 401);
  EXPECT_THAT(wrong_token.body, HasSubstr("bearer token"));

  Response json_ok = post(port, "/v1/traces", "application/json; charset=utf-8", "{}", auth);
  EXPECT_EQ(json_ok.status, 200);
  EXPECT_EQ(json_ok.content_type, "application/json");
  EXPECT_EQ(json_ok.body, "{}");

  Response text = post(port, "/v1/traces", "text/plain", "{}", auth);
  EXPECT_EQ(text.status, 415);
  EXPECT_THAT(text.body, HasSubstr("application/x-protobuf"));

  Response large = post(port, "/v1/traces", "application/json", std::string(4097, ' '), auth);
  EXPECT_EQ(large.status, 413);
  EXPECT_THAT(large.body, HasSubstr("larger than 4096 bytes"));

  auto chunked_auth = auth;
  chunked_auth.emplace_back(http::field::transfer_encoding, "chunked");
  Response large_chunked =
      post(port, "/v1/traces", "application/json", std::string(4097, ' '), chunked_auth);
  EXPECT_EQ(large_chunked.status, 413);
  Response small_chunked = post(port, "/v1/traces", "application/json", " {} ", chunked_auth);
  EXPECT_EQ(small_chunked.status, 200);

  Response garbage = post(port, "/v1/traces", "application/x-protobuf", "\x0a\x05\x12", auth);
  EXPECT_EQ(garbage.status, 400);
  EXPECT_EQ(garbage.content_type, "application/x-protobuf");  // a google.rpc.Status
  EXPECT_THAT(garbage.body, HasSubstr("otlp protobuf: <field 1>: length 5 exceeds the 1 bytes "
                                      "left in its parent (at byte 2)"));

  Response bad_json =
      post(port, "/v1/logs", "application/json",
           R"({"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"x"}]}]}]})", auth);
  EXPECT_EQ(bad_json.status, 400);
  EXPECT_THAT(bad_json.body, HasSubstr("resourceLogs[0].scopeLogs[0].logRecords[0].traceId: "
                                       "want 32 hex digits, got 1"));

  EXPECT_EQ(post(port, "/v1/metrics", "application/json", "{}", auth).status, 404);
  EXPECT_EQ(post(port, "/v1/traces", "", "", auth, http::verb::get).status, 405);

  OtlpReceiverStats stats = receiver->stats();
  EXPECT_EQ(stats.requests, 11u);
  EXPECT_EQ(stats.unauthorized, 2u);
  EXPECT_EQ(stats.accepted, 2u);
  EXPECT_EQ(stats.unsupported, 1u);
  EXPECT_EQ(stats.too_large, 2u);
  EXPECT_EQ(stats.bad_requests, 4u);
  EXPECT_EQ(stats.records, 0u);
  EXPECT_TRUE(storedRecords(*store_).empty());
  EXPECT_EQ(stats.requests, stats.unauthorized + stats.accepted + stats.unsupported +
                                stats.too_large + stats.bad_requests);
}

// A sink failure answers 503, which the exporter reports as retryable.
TEST_F(OtlpReceiverTest, SinkErrorIsRetryable) {
  RefusingSink refusing;
  auto receiver = startReceiver(receiverOptions(), &refusing);
  ASSERT_NE(receiver, nullptr);
  auto sink = exporter(receiver->port(), OtlpEncoding::Json, OtlpSignal::Traces, "");
  Record record = egressRecord(1);
  Status delivered = sink->deliver({&record, 1});
  EXPECT_EQ(delivered.code(), Code::Unavailable);
  EXPECT_EQ(refusing.calls.load(), 1);
  EXPECT_EQ(receiver->stats().sink_errors, 1u);
}

TEST_F(OtlpReceiverTest, CreateChecksOptions) {
  OtlpReceiverOptions options;
  options.bind = "localhost";
  EXPECT_THAT(OtlpReceiver::create(options, *store_).status().message(), HasSubstr("not an IP"));
  options = OtlpReceiverOptions();
  options.cert_pem = "x";
  EXPECT_THAT(OtlpReceiver::create(options, *store_).status().message(),
              HasSubstr("both a certificate and a key"));
  options.key_pem = "y";
  EXPECT_THAT(OtlpReceiver::create(options, *store_).status().message(), HasSubstr("certificate"));
  options = OtlpReceiverOptions();
  options.io_threads = 0;
  EXPECT_EQ(OtlpReceiver::create(options, *store_).status().code(), Code::InvalidArgument);
}

}  // namespace
}  // namespace clrk::telemetry
