#include "clrk/egress/llm/sse.h"

#include <limits>

namespace clrk::egress::llm {
namespace {

constexpr unsigned char kBom[3] = {0xEF, 0xBB, 0xBF};

}  // namespace

SseParser::SseParser(size_t max_event_bytes)
    : max_event_bytes_(max_event_bytes == 0 ? kDefaultMaxEventBytes : max_event_bytes) {}

void SseParser::reset() {
  line_.clear();
  data_.clear();
  type_.clear();
  last_id_.clear();
  has_data_ = false;
  discarding_line_ = false;
  discarding_event_ = false;
  last_was_cr_ = false;
  at_stream_start_ = true;
  bom_matched_ = 0;
  retry_ms_.reset();
}

void SseParser::dropEvent() {
  if (!discarding_event_) ++dropped_events_;
  discarding_event_ = true;
  data_.clear();
  type_.clear();
  has_data_ = false;
}

void SseParser::feed(std::string_view chunk, const std::function<void(const SseEvent&)>& on_event) {
  size_t i = 0;
  const size_t n = chunk.size();
  if (at_stream_start_) {
    while (i < n && bom_matched_ < 3 &&
           static_cast<unsigned char>(chunk[i]) == kBom[bom_matched_]) {
      ++bom_matched_;
      ++i;
    }
    if (bom_matched_ == 3) {
      at_stream_start_ = false;
    } else if (i == n) {
      return;  // a BOM may still be arriving
    } else {
      // Not a BOM: the bytes matched so far start the first line.
      line_.append(reinterpret_cast<const char*>(kBom), bom_matched_);
      at_stream_start_ = false;
    }
  }
  if (last_was_cr_ && i < n) {
    if (chunk[i] == '\n') ++i;
    last_was_cr_ = false;
  }
  while (i < n) {
    size_t eol = chunk.find_first_of("\r\n", i);
    if (eol == std::string_view::npos) {
      if (!discarding_line_) {
        size_t rest = n - i;
        if (line_.size() + rest > max_event_bytes_) {
          discarding_line_ = true;
          line_.clear();
          dropEvent();
        } else {
          line_.append(chunk.substr(i));
        }
      }
      return;
    }
    std::string_view segment = chunk.substr(i, eol - i);
    if (discarding_line_) {
      discarding_line_ = false;
      line_.clear();
    } else if (line_.size() + segment.size() > max_event_bytes_) {
      line_.clear();
      dropEvent();
    } else if (line_.empty()) {
      processLine(segment, on_event);
    } else {
      line_.append(segment);
      processLine(line_, on_event);
      line_.clear();
    }
    if (chunk[eol] == '\r') {
      if (eol + 1 < n) {
        if (chunk[eol + 1] == '\n') ++eol;
      } else {
        last_was_cr_ = true;
      }
    }
    i = eol + 1;
  }
}

void SseParser::processLine(std::string_view line,
                            const std::function<void(const SseEvent&)>& on_event) {
  if (line.empty()) {
    if (discarding_event_) {
      discarding_event_ = false;
      data_.clear();
      type_.clear();
      has_data_ = false;
      return;
    }
    dispatch(on_event);
    return;
  }
  if (line.front() == ':') return;  // comment
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_.assign(value);
    return;
  }
  if (field == "retry") {
    if (value.empty()) return;
    int64_t ms = 0;
    for (char c : value) {
      if (c < '0' || c > '9') return;
      if (ms > (std::numeric_limits<int64_t>::max() - 9) / 10) return;
      ms = ms * 10 + (c - '0');
    }
    retry_ms_ = ms;
    return;
  }
  if (discarding_event_) return;
  if (field == "event") {
    type_.assign(value);
  } else if (field == "data") {
    if (data_.size() + value.size() + 1 > max_event_bytes_) {
      dropEvent();
      return;
    }
    data_.append(value);
    data_.push_back('\n');
    has_data_ = true;
  }
}

void SseParser::dispatch(const std::function<void(const SseEvent&)>& on_event) {
  struct Clear {
    SseParser* p;
    ~Clear() {
      p->data_.clear();
      p->type_.clear();
      p->has_data_ = false;
    }
  } clear{this};
  if (!has_data_) return;
  std::string_view data = data_;
  if (!data.empty() && data.back() == '\n') data.remove_suffix(1);
  SseEvent event;
  event.type = type_.empty() ? std::string_view("message") : std::string_view(type_);
  event.data = data;
  event.id = last_id_;
  ++dispatched_events_;
  if (on_event) on_event(event);
}

}  // namespace clrk::egress::llm
