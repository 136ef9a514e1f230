// libFuzzer target for cron expressions: parsing must never crash or loop, errors must be
// InvalidArgument one-liners naming the schedule, and every accepted schedule's next() must return
// a whole-second time strictly after its argument (or kNever) that is itself a firing time.
#include "clrk/controller/cron.h"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

using clrk::controller::CronSchedule;
using TimePoint = CronSchedule::TimePoint;
using namespace std::chrono_literals;

TimePoint fromSeconds(int64_t seconds) { return TimePoint(std::chrono::seconds(seconds)); }

const std::array<TimePoint, 6> kStarts = {
    TimePoint{},
    fromSeconds(1709164799) + 500ms,  // 2024-02-28T23:59:59.5Z
    fromSeconds(4107024001),          // 2100-02-23T00:00:01Z
    fromSeconds(-1000000007),         // 1938
    TimePoint::min(),
    TimePoint::max() - std::chrono::hours(24 * 400),
};

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto schedule = CronSchedule::parse(text);
  if (!schedule.ok()) {
    const std::string& message = schedule.status().message();
    check(schedule.status().code() == clrk::Code::InvalidArgument);
    check(message.starts_with("schedule "));
    for (char c : message) check(c >= 0x20 && c < 0x7f);
    return 0;
  }
  auto again = CronSchedule::parse(schedule->expression());
  check(again.ok());
  const bool every = schedule->expression().find("@every") != std::string::npos;
  for (TimePoint after : kStarts) {
    TimePoint fire = schedule->next(after);
    check(again->next(after) == fire);
    check(fire <= schedule->next(after + 1h));  // monotonic (kNever is the largest time)
    if (fire == CronSchedule::kNever) continue;
    check(fire > after);
    check(fire.time_since_epoch() % 1s == TimePoint::duration::zero());
    if (!every) {
      check(fire.time_since_epoch() % 1min == TimePoint::duration::zero());
      // `fire` is a firing time, so it is the first one after the second before it.
      check(schedule->next(fire - 1s) == fire);
    }
  }
  return 0;
}
