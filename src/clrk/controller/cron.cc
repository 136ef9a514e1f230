#include "clrk/controller/cron.h"

#include "clrk/base/time.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <optional>
#include <span>
#include <vector>

namespace clrk::controller {
namespace {

using std::chrono::sys_days;
using std::chrono::year_month_day;

constexpr std::array<std::string_view, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> kDayNames = {"SUN", "MON", "TUE", "WED",
                                                       "THU", "FRI", "SAT"};

struct FieldSpec {
  std::string_view name;
  int min;
  int max;       // the largest value that may be written
  int star_max;  // the largest value `*` and `A/S` cover (6 for day-of-week, where 7 is Sunday)
  std::span<const std::string_view> names;  // names[i] stands for min + i
  std::string_view names_hint;              // "month name (JAN-DEC)"
  bool allows_question;
};

constexpr std::array<FieldSpec, 5> kFields = {{
    {"minute", 0, 59, 59, {}, "", false},
    {"hour", 0, 23, 23, {}, "", false},
    {"day-of-month", 1, 31, 31, {}, "", true},
    {"month", 1, 12, 12, kMonthNames, "month name (JAN-DEC)", false},
    {"day-of-week", 0, 7, 6, kDayNames, "day name (SUN-SAT)", true},
}};

// `"text"` with quotes, backslashes and bytes outside printable ASCII escaped, so that an error
// message quoting untrusted input stays one printable line.
std::string quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte >= 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

bool isSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string_view trim(std::string_view text) {
  while (!text.empty() && isSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && isSpace(text.back())) text.remove_suffix(1);
  return text;
}

std::vector<std::string_view> splitFields(std::string_view text) {
  std::vector<std::string_view> fields;
  size_t pos = 0;
  while (pos < text.size()) {
    while (pos < text.size() && isSpace(text[pos])) ++pos;
    size_t start = pos;
    while (pos < text.size() && !isSpace(text[pos])) ++pos;
    if (pos > start) fields.push_back(text.substr(start, pos - start));
  }
  return fields;
}

bool allDigits(std::string_view text) {
  return !text.empty() && std::ranges::all_of(text, [](char c) { return c >= '0' && c <= '9'; });
}

// One value of a field: a number within [min, max] or a name.
Result<int> parseValue(const FieldSpec& spec, std::string_view text) {
  if (text.empty()) return invalidArgument("missing value");
  if (allDigits(text)) {
    int value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || value < spec.min || value > spec.max) {
      return invalidArgument(fmt::format("value {} out of range {}-{}", text, spec.min, spec.max));
    }
    return value;
  }
  auto same_letter = [](char a, char b) {
    return std::toupper(static_cast<unsigned char>(a)) ==
           std::toupper(static_cast<unsigned char>(b));
  };
  for (size_t name_idx = 0; name_idx < spec.names.size(); ++name_idx) {
    if (std::ranges::equal(text, spec.names[name_idx], same_letter)) {
      return spec.min + static_cast<int>(name_idx);
    }
  }
  if (spec.names.empty()) return invalidArgument(quote(text) + " is not a number");
  return invalidArgument(quote(text) + " is not a number or " + std::string(spec.names_hint));
}

// One list element: `*`, `?`, `N`, `A-B`, each optionally followed by `/S`. Sets `star` when the
// element is `*` or `?` with step 1.
Status parseElement(const FieldSpec& spec, std::string_view element, uint64_t& bits, bool& star) {
  if (element.empty()) return invalidArgument("empty list element");
  std::string_view range = element;
  std::string_view step_text;
  bool has_step = false;
  if (size_t slash = element.find('/'); slash != std::string_view::npos) {
    range = element.substr(0, slash);
    step_text = element.substr(slash + 1);
    has_step = true;
  }
  int64_t step = 1;
  if (has_step) {
    int parsed = 0;
    if (!allDigits(step_text)) {
      return invalidArgument("step " + quote(step_text) + " is not a positive number");
    }
    auto [end, ec] = std::from_chars(step_text.data(), step_text.data() + step_text.size(), parsed);
    if (ec != std::errc()) return invalidArgument("step " + quote(step_text) + " is too large");
    if (parsed < 1) return invalidArgument("step " + quote(step_text) + " must be at least 1");
    step = parsed;
  }
  int first = 0;
  int last = 0;
  if (range == "*" || range == "?") {
    if (range == "?" && !spec.allows_question) {
      return invalidArgument("\"?\" is only allowed in day-of-month and day-of-week");
    }
    first = spec.min;
    last = spec.star_max;
    if (step == 1) star = true;
  } else if (size_t dash = range.find('-'); dash != std::string_view::npos) {
    CLRK_ASSIGN_OR_RETURN(first, parseValue(spec, range.substr(0, dash)));
    CLRK_ASSIGN_OR_RETURN(last, parseValue(spec, range.substr(dash + 1)));
    if (first > last) return invalidArgument(fmt::format("range {} runs backwards", range));
  } else {
    CLRK_ASSIGN_OR_RETURN(first, parseValue(spec, range));
    // "A/S" means A up to the maximum in steps of S; a plain "A" is just A.
    last = has_step ? std::max(first, spec.star_max) : first;
  }
  for (int64_t value = first; value <= last; value += step) bits |= uint64_t{1} << value;
  return {};
}

// A comma-separated list of elements, as a bit set over [spec.min, spec.max].
Status parseField(const FieldSpec& spec, std::string_view text, uint64_t& bits, bool& star) {
  bits = 0;
  star = false;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view element = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    CLRK_RETURN_IF_ERROR(parseElement(spec, element, bits, star));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return {};
}

// The five-field expansion of each macro except @every.
std::string_view expandMacro(std::string_view macro) {
  if (macro == "@yearly" || macro == "@annually") return "0 0 1 1 *";
  if (macro == "@monthly") return "0 0 1 * *";
  if (macro == "@weekly") return "0 0 * * 0";
  if (macro == "@daily" || macro == "@midnight") return "0 0 * * *";
  if (macro == "@hourly") return "0 * * * *";
  return {};
}

// The lowest set bit of `mask` at or above `from`; -1 when none.
int nextBit(uint64_t mask, int from) {
  if (from >= 64) return -1;
  uint64_t rest = mask >> from;
  return rest == 0 ? -1 : from + std::countr_zero(rest);
}

int64_t floorDiv(int64_t value, int64_t divisor) {
  int64_t quotient = value / divisor;
  return (value % divisor != 0 && value < 0) ? quotient - 1 : quotient;
}

}  // namespace

Result<CronSchedule> CronSchedule::parse(std::string_view expression) {
  if (expression.size() > kMaxLength) {
    return invalidArgument(fmt::format("schedule is {} bytes long; at most {} are allowed",
                                       expression.size(), kMaxLength));
  }
  std::string_view text = trim(expression);
  auto fail = [&](const std::string& message) {
    return invalidArgument("schedule " + quote(text) + ": " + message);
  };
  std::vector<std::string_view> fields = splitFields(text);
  if (fields.empty()) return fail("empty expression");

  std::string_view zone_prefix = fields.front().starts_with("CRON_TZ=") ? "CRON_TZ="
                                 : fields.front().starts_with("TZ=")    ? "TZ="
                                                                        : "";
  if (!zone_prefix.empty()) {
    std::string_view zone = fields.front().substr(zone_prefix.size());
    if (zone != "UTC") {
      return fail("time zone " + quote(zone) + " is not supported: only UTC is");
    }
    fields.erase(fields.begin());
    if (fields.empty()) return fail("nothing follows " + std::string(zone_prefix) + "UTC");
  }

  CronSchedule schedule;
  schedule.expression_ = std::string(text);
  if (fields.front().starts_with("@")) {
    std::string_view macro = fields.front();
    if (macro == "@every") {
      if (fields.size() != 2) return fail("@every takes one duration, e.g. \"@every 30s\"");
      std::optional<std::chrono::milliseconds> every = parseDuration(fields[1]);
      if (!every) return fail("@every duration " + quote(fields[1]) + " is not like 30s or 1h30m");
      if (*every < std::chrono::seconds(1)) {
        return fail("@every duration " + quote(fields[1]) + " is shorter than 1s");
      }
      if (every->count() % 1000 != 0) {
        return fail("@every duration " + quote(fields[1]) + " is not a whole number of seconds");
      }
      schedule.every_seconds_ = every->count() / 1000;
      return schedule;
    }
    std::string_view expansion = expandMacro(macro);
    if (expansion.empty()) {
      return fail("unknown macro " + quote(macro) +
                  " (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight, "
                  "@hourly or @every <duration>)");
    }
    if (fields.size() > 1) {
      return fail("unexpected " + quote(fields[1]) + " after " + std::string(macro));
    }
    fields = splitFields(expansion);
  }
  if (fields.size() != kFields.size()) {
    return fail(fmt::format(
        "expected 5 fields (minute hour day-of-month month day-of-week), got {}", fields.size()));
  }

  std::array<uint64_t, 5> bits{};
  std::array<bool, 5> star{};
  for (size_t field_idx = 0; field_idx < kFields.size(); ++field_idx) {
    const FieldSpec& spec = kFields[field_idx];
    Status parsed = parseField(spec, fields[field_idx], bits[field_idx], star[field_idx]);
    if (!parsed.ok()) {
      return fail(std::string(spec.name) + " field " + quote(fields[field_idx]) + ": " +
                  parsed.message());
    }
  }
  schedule.minutes_ = bits[0];
  schedule.hours_ = static_cast<uint32_t>(bits[1]);
  schedule.days_of_month_ = static_cast<uint32_t>(bits[2]);
  schedule.months_ = static_cast<uint16_t>(bits[3]);
  // Day 7 is Sunday, day 0.
  uint64_t days_of_week = bits[4];
  if ((days_of_week & (uint64_t{1} << 7)) != 0) days_of_week = (days_of_week & 0x7f) | 1;
  schedule.days_of_week_ = static_cast<uint8_t>(days_of_week);
  schedule.day_of_month_star_ = star[2];
  schedule.day_of_week_star_ = star[4];
  return schedule;
}

bool CronSchedule::dayMatches(unsigned day_of_month, unsigned day_of_week) const {
  bool dom = ((days_of_month_ >> day_of_month) & 1U) != 0;
  bool dow = ((days_of_week_ >> day_of_week) & 1U) != 0;
  // An unrestricted field has every bit set, so AND leaves the other field to decide.
  if (day_of_month_star_ || day_of_week_star_) return dom && dow;
  return dom || dow;
}

std::optional<int64_t> CronSchedule::nextFieldsFiring(int64_t after_seconds) const {
  constexpr int64_t kMinutesPerDay = 1440;
  // The first whole minute strictly after `after`.
  int64_t minute_index = floorDiv(after_seconds, 60) + 1;
  int64_t day = floorDiv(minute_index, kMinutesPerDay);
  int hour = static_cast<int>((minute_index - day * kMinutesPerDay) / 60);
  int minute = static_cast<int>((minute_index - day * kMinutesPerDay) % 60);

  year_month_day start{sys_days{std::chrono::days{day}}};
  const int64_t limit = sys_days{year_month_day{start.year() + std::chrono::years{kSearchYears},
                                                start.month(), std::chrono::day{1}}}
                            .time_since_epoch()
                            .count();
  while (day < limit) {
    sys_days date_days{std::chrono::days{day}};
    year_month_day date{date_days};
    if (((months_ >> static_cast<unsigned>(date.month())) & 1U) == 0) {
      // Skip to the first day of the next month.
      year_month_day next_month =
          year_month_day{date.year(), date.month(), std::chrono::day{1}} + std::chrono::months{1};
      day = sys_days{next_month}.time_since_epoch().count();
      hour = 0;
      minute = 0;
      continue;
    }
    unsigned day_of_week = std::chrono::weekday{date_days}.c_encoding();
    if (dayMatches(static_cast<unsigned>(date.day()), day_of_week)) {
      for (int h = nextBit(hours_, hour); h >= 0; h = nextBit(hours_, h + 1)) {
        int m = nextBit(minutes_, h == hour ? minute : 0);
        if (m >= 0) return (day * kMinutesPerDay + int64_t{h} * 60 + m) * 60;
      }
    }
    ++day;
    hour = 0;
    minute = 0;
  }
  return std::nullopt;
}

CronSchedule::TimePoint CronSchedule::next(TimePoint after) const {
  using std::chrono::seconds;
  const int64_t after_seconds = std::chrono::floor<seconds>(after.time_since_epoch()).count();
  const std::optional<int64_t> fire =
      every_seconds_ > 0 ? after_seconds + every_seconds_ : nextFieldsFiring(after_seconds);
  constexpr int64_t kMaxSeconds =
      std::chrono::duration_cast<seconds>(TimePoint::duration::max()).count();
  if (!fire || *fire > kMaxSeconds) return kNever;
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(seconds(*fire)));
}

}  // namespace clrk::controller
