// Incremental text/event-stream parser following the WHATWG HTML "server-sent events"
// interpretation rules: fields event/data/id/retry, multi-line data joined with "\n", comment
// lines (":..."), CR, LF and CRLF line endings (also split across chunks), a leading UTF-8 BOM.
// Memory is bounded: a line or an event larger than max_event_bytes drops that event (counted)
// and the parser resynchronises at the next blank line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace clrk::egress::llm {

// One dispatched event. The views are valid only during the callback.
struct SseEvent {
  std::string_view type;  // "event" field; "message" when the event named none
  std::string_view data;  // data lines joined with "\n" (no trailing "\n")
  std::string_view id;    // last event id (persists across events, as in the spec)
};

// One per stream; not thread-safe.
class SseParser {
 public:
  static constexpr size_t kDefaultMaxEventBytes = size_t{1} << 20;

  explicit SseParser(size_t max_event_bytes = kDefaultMaxEventBytes);

  // Parses `chunk` (any split of the stream) and calls `on_event` for each complete event.
  // Never throws (exceptions from `on_event` propagate unchanged).
  void feed(std::string_view chunk, const std::function<void(const SseEvent&)>& on_event);

  // Events dropped because a line or the event exceeded max_event_bytes.
  uint64_t droppedEvents() const { return dropped_events_; }
  // Events dispatched so far.
  uint64_t dispatchedEvents() const { return dispatched_events_; }
  // Last "retry" value (milliseconds), if the stream sent one.
  std::optional<int64_t> retryMs() const { return retry_ms_; }
  // Forgets all state (a new stream).
  void reset();

 private:
  void processLine(std::string_view line, const std::function<void(const SseEvent&)>& on_event);
  void dispatch(const std::function<void(const SseEvent&)>& on_event);
  void dropEvent();

  size_t max_event_bytes_;
  std::string line_;  // partial line carried across chunks
  std::string data_;
  std::string type_;
  std::string last_id_;
  bool has_data_ = false;
  bool discarding_line_ = false;   // current line overflowed: skip to its end
  bool discarding_event_ = false;  // current event overflowed: skip to the blank line
  bool last_was_cr_ = false;       // previous chunk ended in CR (a following LF is part of it)
  bool at_stream_start_ = true;    // BOM check pending
  size_t bom_matched_ = 0;
  uint64_t dropped_events_ = 0;
  uint64_t dispatched_events_ = 0;
  std::optional<int64_t> retry_ms_;
};

}  // namespace clrk::egress::llm
