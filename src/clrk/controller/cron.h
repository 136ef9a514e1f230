// Cron schedules for TaskAgent `spec.schedule`, with the syntax Kubernetes CronJobs accept
// (robfig/cron v3's standard parser):
//   * five fields: minute (0-59), hour (0-23), day-of-month (1-31), month (1-12 or JAN-DEC),
//     day-of-week (0-7 or SUN-SAT; 0 and 7 are Sunday). Names are case-insensitive. Each field is
//     a comma-separated list of `*`, `N`, `A-B`, `*/S`, `A-B/S` or `A/S` (A up to the maximum);
//     `?` is `*` in the two day fields;
//   * the macros @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly, and
//     `@every <Go duration>` (whole seconds, at least 1s: "@every 30s", "@every 1h30m");
//   * an optional `CRON_TZ=UTC ` or `TZ=UTC ` prefix. Every time is UTC; other zones are refused.
// Day-of-month and day-of-week combine as in Vixie cron: when both are restricted a day matches
// if EITHER does; a field written as `*` or `?` (step 1) leaves the other to decide alone.
// Thread model: a CronSchedule is an immutable value; use it from any thread.
#pragma once

#include "clrk/base/status.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace clrk::controller {

class CronSchedule {
 public:
  using TimePoint = std::chrono::system_clock::time_point;

  // next() returns this when the schedule never fires within kSearchYears (e.g. "0 0 30 2 *").
  static constexpr TimePoint kNever = TimePoint::max();
  // How far next() looks ahead: the longest gap of a satisfiable schedule is 8 years (February 29
  // across a century that is not a leap year, 2096 -> 2104).
  static constexpr int kSearchYears = 9;
  // Longer expressions are refused before parsing.
  static constexpr size_t kMaxLength = 256;

  // Errors are InvalidArgument naming the expression, the field and the offending text:
  //   schedule "61 * * * *": minute field "61": value 61 out of range 0-59
  static Result<CronSchedule> parse(std::string_view expression);

  // The first firing time strictly after `after`, in whole seconds (five-field schedules fire at
  // second 0 of a matching minute; `@every D` fires at `after`, truncated to the second, plus D).
  // kNever when there is none within kSearchYears of `after` or it would not fit in a TimePoint.
  TimePoint next(TimePoint after) const;

  // The expression as given, without surrounding whitespace.
  const std::string& expression() const { return expression_; }

 private:
  CronSchedule() = default;
  bool dayMatches(unsigned day_of_month, unsigned day_of_week) const;
  // Seconds since the epoch of the first five-field firing after `after_seconds`.
  std::optional<int64_t> nextFieldsFiring(int64_t after_seconds) const;

  std::string expression_;
  int64_t every_seconds_ = 0;   // > 0: an @every schedule; the fields below are unused
  uint64_t minutes_ = 0;        // bit N: minute N
  uint32_t hours_ = 0;          // bit N: hour N
  uint32_t days_of_month_ = 0;  // bit N: day N (1-31)
  uint16_t months_ = 0;         // bit N: month N (1-12)
  uint8_t days_of_week_ = 0;    // bit N: weekday N (0 = Sunday)
  bool day_of_month_star_ = false;
  bool day_of_week_star_ = false;
};

}  // namespace clrk::controller
