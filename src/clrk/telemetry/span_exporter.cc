#include "clrk/telemetry/span_exporter.h"

#include "clrk/base/ascii.h"
#include "clrk/base/log.h"
#include "clrk/telemetry/trace_spans.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

namespace clrk::telemetry {
namespace {

auto log() { return logger("telemetry"); }

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percentDecode(std::string_view text) {
  std::string out;
  for (size_t idx = 0; idx < text.size(); ++idx) {
    if (text[idx] == '%' && idx + 2 < text.size() && hexValue(text[idx + 1]) >= 0 &&
        hexValue(text[idx + 2]) >= 0) {
      out += static_cast<char>(hexValue(text[idx + 1]) * 16 + hexValue(text[idx + 2]));
      idx += 2;
    } else {
      out += text[idx];
    }
  }
  return out;
}

Status parseHeader(std::string_view item, std::string_view source, bool decode,
                   std::vector<std::pair<std::string, std::string>>& out) {
  size_t eq = item.find('=');
  std::string_view key = trimOptionalWhitespace(item.substr(0, eq));
  if (eq == std::string_view::npos || key.empty()) {
    return invalidArgument(std::string(source) + ": want key=value, got \"" + std::string(key) +
                           "...\"");  // never echo a value (a token)
  }
  std::string_view value = trimOptionalWhitespace(item.substr(eq + 1));
  out.emplace_back(std::string(key), decode ? percentDecode(value) : std::string(value));
  return {};
}

}  // namespace

class SpanExporter::Impl {
 public:
  Impl(std::unique_ptr<Sink> sink, SpanExporterOptions options)
      : sink_(std::move(sink)), options_(options) {
    options_.max_queue = std::max<size_t>(options_.max_queue, 1);
    options_.max_batch = std::max<size_t>(options_.max_batch, 1);
    options_.max_attempts = std::max(options_.max_attempts, 1);
    thread_ = std::thread([this] { run(); });
  }

  ~Impl() { stop(); }

  void emit(std::vector<Record> spans) {
    std::lock_guard lock(mutex_);
    for (Record& span : spans) {
      ++stats_.emitted;
      if (queue_.size() >= options_.max_queue) {
        queue_.pop_front();
        ++stats_.dropped_overflow;
        ++done_;
      }
      queue_.push_back(std::move(span));
    }
    if (queue_.size() >= options_.max_batch) cv_.notify_all();
  }

  bool flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    uint64_t target = stats_.emitted;
    flush_requested_ = true;
    cv_.notify_all();
    return cv_.wait_for(lock, timeout, [&] { return done_ >= target; });
  }

  SpanExporterStats stats() const {
    std::lock_guard lock(mutex_);
    SpanExporterStats out = stats_;
    out.queued = queue_.size();
    return out;
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    while (true) {
      // Wait for a full batch, the batch delay, a flush, or stop.
      auto deadline = std::chrono::steady_clock::now() + options_.batch_delay;
      cv_.wait_until(lock, deadline, [&] {
        return stopping_ || flush_requested_ || queue_.size() >= options_.max_batch;
      });
      if (queue_.empty()) {
        flush_requested_ = false;
        if (stopping_) return;
        continue;
      }
      size_t count = std::min(queue_.size(), options_.max_batch);
      std::vector<Record> batch(std::make_move_iterator(queue_.begin()),
                                std::make_move_iterator(queue_.begin() + count));
      queue_.erase(queue_.begin(), queue_.begin() + count);
      if (queue_.empty()) flush_requested_ = false;
      send(lock, batch);
      done_ += batch.size();
      cv_.notify_all();
    }
  }

  // Delivers one batch with retries; unlocks `lock` while the sink runs.
  void send(std::unique_lock<std::mutex>& lock, const std::vector<Record>& batch) {
    auto backoff = options_.initial_backoff;
    for (int attempt = 1;; ++attempt) {
      lock.unlock();
      Status status = sink_->deliver(batch);
      lock.lock();
      if (status.ok()) {
        stats_.exported += batch.size();
        return;
      }
      bool permanent = status.code() == Code::InvalidArgument;
      if (permanent || attempt >= options_.max_attempts || stopping_) {
        stats_.dropped_failed += batch.size();
        log()->warn("traces: dropped {} spans after {} attempt(s): {}", batch.size(), attempt,
                    status.message());
        return;
      }
      ++stats_.retries;
      log()->debug("traces: export failed (attempt {}), retrying in {} ms: {}", attempt,
                   backoff.count(), status.message());
      cv_.wait_for(lock, backoff, [&] { return stopping_; });
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
  }

  std::unique_ptr<Sink> sink_;
  SpanExporterOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Record> queue_;
  SpanExporterStats stats_;
  uint64_t done_ = 0;  // spans exported or dropped
  bool flush_requested_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

std::unique_ptr<SpanExporter> SpanExporter::start(std::unique_ptr<Sink> sink,
                                                  SpanExporterOptions options) {
  return std::unique_ptr<SpanExporter>(
      new SpanExporter(std::make_unique<Impl>(std::move(sink), options)));
}

SpanExporter::SpanExporter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SpanExporter::~SpanExporter() = default;

void SpanExporter::emit(Record span) {
  std::vector<Record> spans;
  spans.push_back(std::move(span));
  impl_->emit(std::move(spans));
}
void SpanExporter::emit(std::vector<Record> spans) { impl_->emit(std::move(spans)); }
bool SpanExporter::flush(std::chrono::milliseconds timeout) { return impl_->flush(timeout); }
SpanExporterStats SpanExporter::stats() const { return impl_->stats(); }
void SpanExporter::stop() { impl_->stop(); }

Status EgressSpanTap::deliver(std::span<const Record> batch) {
  CLRK_RETURN_IF_ERROR(inner_.deliver(batch));
  std::vector<Record> spans;
  spans.reserve(batch.size());
  for (const Record& record : batch) spans.push_back(egressSpan(record));
  exporter_.emit(std::move(spans));
  return {};
}

Result<std::optional<OtlpExporterOptions>> tracesExporterOptions(
    const std::string& flag_endpoint, const std::vector<std::string>& flag_headers,
    const std::string& flag_protocol, const std::function<const char*(const char*)>& getenv) {
  auto env = [&](const char* name) -> std::string {
    const char* value = getenv ? getenv(name) : std::getenv(name);
    return value != nullptr ? std::string(trimOptionalWhitespace(value)) : std::string();
  };
  OtlpExporterOptions options;
  options.signal = OtlpSignal::Traces;
  options.name = "otlp-traces";
  options.scope_name = "clrk.invocations";
  options.resource_attributes = {{"service.name", std::string("clrk")}};
  options.timeout = std::chrono::seconds(5);  // bounds how long stop() can wait for a collector
  std::string source;
  if (!flag_endpoint.empty()) {
    options.endpoint = flag_endpoint;
    source = "--otlp-traces-endpoint";
  } else if (std::string traces = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); !traces.empty()) {
    options.endpoint = traces;
    source = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
  } else if (std::string base = env("OTEL_EXPORTER_OTLP_ENDPOINT"); !base.empty()) {
    options.endpoint = base;
    source = "OTEL_EXPORTER_OTLP_ENDPOINT";
  } else {
    return std::optional<OtlpExporterOptions>();
  }
  // The exporter appends /v1/traces to a base URL.
  while (!options.endpoint.empty() && options.endpoint.back() == '/') options.endpoint.pop_back();
  constexpr std::string_view kTracesPath = "/v1/traces";
  if (options.endpoint.ends_with(kTracesPath)) {
    options.endpoint.resize(options.endpoint.size() - kTracesPath.size());
  }
  // Validate now (create() does not connect) so a typo fails at startup with the source named.
  if (auto probe = OtlpHttpExporter::create(options); !probe.ok()) {
    return invalidArgument(source + ": " + probe.status().message());
  }

  if (!flag_headers.empty()) {
    for (const std::string& header : flag_headers) {
      CLRK_RETURN_IF_ERROR(parseHeader(header, "--otlp-traces-header", false, options.headers));
    }
  } else {
    const char* name = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    std::string headers = env(name);
    if (headers.empty()) {
      name = "OTEL_EXPORTER_OTLP_HEADERS";
      headers = env(name);
    }
    std::string_view rest = headers;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view item = trimOptionalWhitespace(rest.substr(0, comma));
      if (!item.empty()) CLRK_RETURN_IF_ERROR(parseHeader(item, name, true, options.headers));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }

  std::string protocol = flag_protocol;
  std::string protocol_source = "--otlp-traces-protocol";
  if (protocol.empty()) {
    protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
    protocol_source = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
  }
  if (protocol.empty()) {
    protocol = env("OTEL_EXPORTER_OTLP_PROTOCOL");
    protocol_source = "OTEL_EXPORTER_OTLP_PROTOCOL";
  }
  if (protocol.empty() || protocol == "http/protobuf") {
    options.encoding = OtlpEncoding::Protobuf;
  } else if (protocol == "http/json") {
    options.encoding = OtlpEncoding::Json;
  } else {
    return invalidArgument(protocol_source + ": \"" + protocol +
                           "\" is not supported (want http/protobuf or http/json)");
  }
  return std::optional<OtlpExporterOptions>(std::move(options));
}

}  // namespace clrk::telemetry
