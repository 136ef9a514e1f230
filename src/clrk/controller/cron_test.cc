#include "clrk/controller/cron.h"

#include "clrk/base/time.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace clrk::controller {
namespace {

using TimePoint = CronSchedule::TimePoint;

TimePoint at(std::string_view rfc3339) {
  auto parsed = parseRfc3339(rfc3339);
  EXPECT_TRUE(parsed.has_value()) << rfc3339;
  return parsed.value_or(TimePoint{});
}

std::string show(TimePoint time) {
  return time == CronSchedule::kNever ? "never" : formatRfc3339(time);
}

// The next `count` firings after `start`, each computed from the one before.
std::vector<std::string> firings(std::string_view expression, std::string_view start,
                                 size_t count) {
  auto schedule = CronSchedule::parse(expression);
  EXPECT_TRUE(schedule.ok()) << expression << ": " << schedule.status().toString();
  if (!schedule.ok()) return {};
  std::vector<std::string> out;
  TimePoint time = at(start);
  for (size_t idx = 0; idx < count && time != CronSchedule::kNever; ++idx) {
    time = schedule->next(time);
    out.push_back(show(time));
  }
  return out;
}

struct NextCase {
  std::string_view name;
  std::string_view expression;
  std::string_view start;
  std::vector<std::string> want;
};

class CronNextTest : public ::testing::TestWithParam<NextCase> {};

TEST_P(CronNextTest, Firings) {
  const NextCase& c = GetParam();
  EXPECT_EQ(firings(c.expression, c.start, c.want.size()), c.want) << c.expression;
}

INSTANTIATE_TEST_SUITE_P(
    Cron, CronNextTest,
    ::testing::Values(
        NextCase{"EveryMinute",
                 "* * * * *",
                 "2024-01-01T00:00:00Z",
                 {"2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"}},
        NextCase{"StrictlyAfterAFiringTime",
                 "0 0 * * *",
                 "2024-01-01T00:00:00Z",
                 {"2024-01-02T00:00:00Z"}},
        NextCase{"SubSecondBeforeMidnight",
                 "0 0 * * *",
                 "2023-12-31T23:59:59.999Z",
                 {"2024-01-01T00:00:00Z"}},
        NextCase{"SubSecondAfterAFiringTime",
                 "* * * * *",
                 "2024-01-01T00:00:00.5Z",
                 {"2024-01-01T00:01:00Z"}},
        NextCase{"StarStep",
                 "*/15 * * * *",
                 "2024-01-01T00:07:30Z",
                 {"2024-01-01T00:15:00Z", "2024-01-01T00:30:00Z", "2024-01-01T00:45:00Z",
                  "2024-01-01T01:00:00Z"}},
        NextCase{"RangeStep",
                 "5-20/5 * * * *",
                 "2024-01-01T00:20:00Z",
                 {"2024-01-01T01:05:00Z", "2024-01-01T01:10:00Z", "2024-01-01T01:15:00Z",
                  "2024-01-01T01:20:00Z", "2024-01-01T02:05:00Z"}},
        NextCase{"StartStepRunsToTheMaximum",
                 "50/4 * * * *",
                 "2024-01-01T00:00:00Z",
                 {"2024-01-01T00:50:00Z", "2024-01-01T00:54:00Z", "2024-01-01T00:58:00Z",
                  "2024-01-01T01:50:00Z"}},
        NextCase{"HourRangeStep",
                 "0 9-17/4 * * *",
                 "2024-01-01T10:00:00Z",
                 {"2024-01-01T13:00:00Z", "2024-01-01T17:00:00Z", "2024-01-02T09:00:00Z"}},
        NextCase{"List",
                 "0,30 6,18 * * *",
                 "2024-01-01T06:00:00Z",
                 {"2024-01-01T06:30:00Z", "2024-01-01T18:00:00Z", "2024-01-01T18:30:00Z",
                  "2024-01-02T06:00:00Z"}},
        NextCase{"WeekdayNames",  // 2024-03-01 is a Friday
                 "30 2 * * MON-FRI",
                 "2024-03-01T03:00:00Z",
                 {"2024-03-04T02:30:00Z", "2024-03-05T02:30:00Z"}},
        NextCase{"NamesAreCaseInsensitive",
                 "0 0 1 jan,Jul *",
                 "2024-02-01T00:00:00Z",
                 {"2024-07-01T00:00:00Z", "2025-01-01T00:00:00Z"}},
        NextCase{"SevenIsSunday",  // 2024-03-03 and 2024-03-10 are Sundays
                 "0 0 * * 7",
                 "2024-03-01T00:00:00Z",
                 {"2024-03-03T00:00:00Z", "2024-03-10T00:00:00Z"}},
        NextCase{"RangeEndingInSeven",
                 "0 0 * * 6-7",
                 "2024-03-04T00:00:00Z",
                 {"2024-03-09T00:00:00Z", "2024-03-10T00:00:00Z", "2024-03-16T00:00:00Z"}},
        NextCase{"Day31SkipsShortMonths",
                 "0 0 31 * *",
                 "2024-01-31T00:00:00Z",
                 {"2024-03-31T00:00:00Z", "2024-05-31T00:00:00Z", "2024-07-31T00:00:00Z",
                  "2024-08-31T00:00:00Z"}},
        NextCase{
            "AcrossTheYearEnd", "59 23 * * *", "2024-12-31T23:59:00Z", {"2025-01-01T23:59:00Z"}},
        NextCase{"LastMinuteOfTheYear",
                 "59 23 31 12 *",
                 "2024-12-31T23:58:59Z",
                 {"2024-12-31T23:59:00Z", "2025-12-31T23:59:00Z"}},
        NextCase{"LeapDay",
                 "0 12 29 2 *",
                 "2023-03-01T00:00:00Z",
                 {"2024-02-29T12:00:00Z", "2028-02-29T12:00:00Z"}},
        NextCase{"LeapDaySkipsACenturyThatIsNotALeapYear",
                 "0 0 29 2 *",
                 "2096-03-01T00:00:00Z",
                 {"2104-02-29T00:00:00Z"}},
        NextCase{
            "Year2000WasALeapYear", "0 0 29 2 *", "1997-01-01T00:00:00Z", {"2000-02-29T00:00:00Z"}},
        // Both day fields restricted: a day matches when EITHER does. 2024-09-01 is a Sunday;
        // 2024-10-13 is a Sunday the 13th.
        NextCase{"DayOfMonthOrDayOfWeek",
                 "0 0 13 * FRI",
                 "2024-09-01T00:00:00Z",
                 {"2024-09-06T00:00:00Z", "2024-09-13T00:00:00Z", "2024-09-20T00:00:00Z",
                  "2024-09-27T00:00:00Z", "2024-10-04T00:00:00Z", "2024-10-11T00:00:00Z",
                  "2024-10-13T00:00:00Z", "2024-10-18T00:00:00Z"}},
        NextCase{"StarDayOfMonthLeavesDayOfWeek",
                 "0 0 * * MON",
                 "2024-09-01T00:00:00Z",
                 {"2024-09-02T00:00:00Z", "2024-09-09T00:00:00Z"}},
        NextCase{"StarDayOfWeekLeavesDayOfMonth",
                 "0 0 15 * *",
                 "2024-09-01T00:00:00Z",
                 {"2024-09-15T00:00:00Z", "2024-10-15T00:00:00Z"}},
        NextCase{"QuestionMarkIsStar",
                 "0 0 ? * MON",
                 "2024-09-01T00:00:00Z",
                 {"2024-09-02T00:00:00Z", "2024-09-09T00:00:00Z"}},
        NextCase{"StarWithStepOneIsStar",
                 "0 0 */1 * MON",
                 "2024-09-01T00:00:00Z",
                 {"2024-09-02T00:00:00Z", "2024-09-09T00:00:00Z"}},
        // A stepped star restricts (as in Kubernetes CronJobs): odd days OR Mondays.
        NextCase{"SteppedStarRestricts",
                 "0 0 */2 * MON",
                 "2024-09-01T00:00:00Z",
                 {"2024-09-02T00:00:00Z", "2024-09-03T00:00:00Z", "2024-09-05T00:00:00Z"}},
        NextCase{"MonthRestrictsBothDayFields",
                 "0 0 1 FEB SUN",
                 "2024-01-01T00:00:00Z",
                 {"2024-02-01T00:00:00Z", "2024-02-04T00:00:00Z", "2024-02-11T00:00:00Z"}},
        NextCase{"Yearly", "@yearly", "2024-06-01T00:00:00Z", {"2025-01-01T00:00:00Z"}},
        NextCase{"Annually", "@annually", "2024-06-01T00:00:00Z", {"2025-01-01T00:00:00Z"}},
        NextCase{"Monthly", "@monthly", "2024-01-31T10:00:00Z", {"2024-02-01T00:00:00Z"}},
        NextCase{"Weekly",  // the next Sunday
                 "@weekly",
                 "2024-03-01T00:00:00Z",
                 {"2024-03-03T00:00:00Z", "2024-03-10T00:00:00Z"}},
        NextCase{"Daily", "@daily", "2024-02-28T10:00:00Z", {"2024-02-29T00:00:00Z"}},
        NextCase{"Midnight", "@midnight", "2023-02-28T10:00:00Z", {"2023-03-01T00:00:00Z"}},
        NextCase{"Hourly", "@hourly", "2024-01-01T10:59:59Z", {"2024-01-01T11:00:00Z"}},
        NextCase{"EverySeconds",
                 "@every 30s",
                 "2024-01-01T00:00:10.7Z",
                 {"2024-01-01T00:00:40Z", "2024-01-01T00:01:10Z"}},
        NextCase{"EveryCompound",
                 "@every 1h30m",
                 "2024-01-01T23:00:00Z",
                 {"2024-01-02T00:30:00Z", "2024-01-02T02:00:00Z"}},
        NextCase{"EveryBeforeTheEpoch",
                 "@every 30s",
                 "1969-12-31T23:59:29Z",
                 {"1969-12-31T23:59:59Z", "1970-01-01T00:00:29Z"}},
        NextCase{
            "CronTzUtc", "CRON_TZ=UTC 0 6 * * *", "2024-01-01T07:00:00Z", {"2024-01-02T06:00:00Z"}},
        NextCase{"TzUtcMacro", "TZ=UTC @daily", "2024-01-01T07:00:00Z", {"2024-01-02T00:00:00Z"}},
        NextCase{"ExtraWhitespace",
                 "  0\t0  * *   *  ",
                 "2024-01-01T07:00:00Z",
                 {"2024-01-02T00:00:00Z"}},
        NextCase{"ImpossibleFebruary30", "0 0 30 2 *", "2024-01-01T00:00:00Z", {"never"}},
        NextCase{"ImpossibleApril31", "0 0 31 4,6,9,11 *", "2024-01-01T00:00:00Z", {"never"}},
        NextCase{"NoFiringBeforeTheClockEnds", "0 0 1 6 *", "2261-07-01T00:00:00Z", {"never"}}),
    [](const ::testing::TestParamInfo<NextCase>& param_info) {
      return std::string(param_info.param.name);
    });

struct ErrorCase {
  std::string name;
  std::string expression;
  std::string message;
};

class CronErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(CronErrorTest, Message) {
  const ErrorCase& c = GetParam();
  auto schedule = CronSchedule::parse(c.expression);
  ASSERT_FALSE(schedule.ok()) << c.expression;
  EXPECT_EQ(schedule.status().code(), Code::InvalidArgument);
  EXPECT_EQ(schedule.status().message(), c.message);
}

INSTANTIATE_TEST_SUITE_P(
    Cron, CronErrorTest,
    ::testing::Values(
        ErrorCase{"MinuteOutOfRange", "61 * * * *",
                  R"(schedule "61 * * * *": minute field "61": value 61 out of range 0-59)"},
        ErrorCase{"OutOfRangeInAList", "0 1,24 * * *",
                  R"(schedule "0 1,24 * * *": hour field "1,24": value 24 out of range 0-23)"},
        ErrorCase{"DayOfMonthZero", "0 0 0 * *",
                  R"(schedule "0 0 0 * *": day-of-month field "0": value 0 out of range 1-31)"},
        ErrorCase{"MonthThirteen", "0 0 1 13 *",
                  R"(schedule "0 0 1 13 *": month field "13": value 13 out of range 1-12)"},
        ErrorCase{"DayOfWeekEight", "0 0 * * 8",
                  R"(schedule "0 0 * * 8": day-of-week field "8": value 8 out of range 0-7)"},
        ErrorCase{"HugeNumber", "99999999999 * * * *",
                  R"(schedule "99999999999 * * * *": minute field "99999999999": value )"
                  R"(99999999999 out of range 0-59)"},
        ErrorCase{"NotANumber", "x * * * *",
                  R"(schedule "x * * * *": minute field "x": "x" is not a number)"},
        ErrorCase{"MonthNameInTheHourField", "0 JAN * * *",
                  R"(schedule "0 JAN * * *": hour field "JAN": "JAN" is not a number)"},
        ErrorCase{"UnknownMonthName", "0 0 * FOO *",
                  R"(schedule "0 0 * FOO *": month field "FOO": "FOO" is not a number or )"
                  R"(month name (JAN-DEC))"},
        ErrorCase{"UnknownDayName", "0 0 * * FUN",
                  R"(schedule "0 0 * * FUN": day-of-week field "FUN": "FUN" is not a number )"
                  R"(or day name (SUN-SAT))"},
        ErrorCase{"FullDayName", "0 0 * * MONDAY",
                  R"(schedule "0 0 * * MONDAY": day-of-week field "MONDAY": "MONDAY" is not )"
                  R"(a number or day name (SUN-SAT))"},
        ErrorCase{"StepZero", "*/0 * * * *",
                  R"(schedule "*/0 * * * *": minute field "*/0": step "0" must be at least 1)"},
        ErrorCase{"StepNotANumber", "*/x * * * *",
                  R"(schedule "*/x * * * *": minute field "*/x": step "x" is not a positive )"
                  R"(number)"},
        ErrorCase{"StepMissing", "*/ * * * *",
                  R"(schedule "*/ * * * *": minute field "*/": step "" is not a positive number)"},
        ErrorCase{"TwoSteps", "1/2/3 * * * *",
                  R"(schedule "1/2/3 * * * *": minute field "1/2/3": step "2/3" is not a )"
                  R"(positive number)"},
        ErrorCase{"StepTooLarge", "*/99999999999 * * * *",
                  R"(schedule "*/99999999999 * * * *": minute field "*/99999999999": step )"
                  R"("99999999999" is too large)"},
        ErrorCase{"BackwardsRange", "30-10 * * * *",
                  R"(schedule "30-10 * * * *": minute field "30-10": range 30-10 runs )"
                  R"(backwards)"},
        ErrorCase{"BackwardsNamedRange", "0 0 * * SAT-SUN",
                  R"(schedule "0 0 * * SAT-SUN": day-of-week field "SAT-SUN": range SAT-SUN )"
                  R"(runs backwards)"},
        ErrorCase{"OpenRange", "5- * * * *",
                  R"(schedule "5- * * * *": minute field "5-": missing value)"},
        ErrorCase{"ThreePartRange", "1-2-3 * * * *",
                  R"(schedule "1-2-3 * * * *": minute field "1-2-3": "2-3" is not a number)"},
        ErrorCase{"EmptyListElement", "1,,2 * * * *",
                  R"(schedule "1,,2 * * * *": minute field "1,,2": empty list element)"},
        ErrorCase{"TrailingComma", "0 0 1, * *",
                  R"(schedule "0 0 1, * *": day-of-month field "1,": empty list element)"},
        ErrorCase{"QuestionMarkInMinutes", "? * * * *",
                  R"(schedule "? * * * *": minute field "?": "?" is only allowed in )"
                  R"(day-of-month and day-of-week)"},
        ErrorCase{"Empty", "", R"(schedule "": empty expression)"},
        ErrorCase{"Blank", " \t ", R"(schedule "": empty expression)"},
        ErrorCase{"FourFields", "* * * *",
                  R"(schedule "* * * *": expected 5 fields (minute hour day-of-month month )"
                  R"(day-of-week), got 4)"},
        ErrorCase{"SixFields", "0 * * * * *",
                  R"(schedule "0 * * * * *": expected 5 fields (minute hour day-of-month )"
                  R"(month day-of-week), got 6)"},
        ErrorCase{"UnknownMacro", "@fortnightly",
                  R"(schedule "@fortnightly": unknown macro "@fortnightly" (expected @yearly, )"
                  R"(@annually, @monthly, @weekly, @daily, @midnight, @hourly or @every )"
                  R"(<duration>))"},
        ErrorCase{"MacrosAreLowerCase", "@DAILY",
                  R"(schedule "@DAILY": unknown macro "@DAILY" (expected @yearly, @annually, )"
                  R"(@monthly, @weekly, @daily, @midnight, @hourly or @every <duration>))"},
        ErrorCase{"TextAfterMacro", "@daily 5",
                  R"(schedule "@daily 5": unexpected "5" after @daily)"},
        ErrorCase{"EveryWithoutDuration", "@every",
                  R"(schedule "@every": @every takes one duration, e.g. "@every 30s")"},
        ErrorCase{"EveryWithTwoDurations", "@every 1s 2s",
                  R"(schedule "@every 1s 2s": @every takes one duration, e.g. "@every 30s")"},
        ErrorCase{"EveryBadDuration", "@every 1x",
                  R"(schedule "@every 1x": @every duration "1x" is not like 30s or 1h30m)"},
        ErrorCase{"EveryNegative", "@every -5s",
                  R"(schedule "@every -5s": @every duration "-5s" is not like 30s or 1h30m)"},
        ErrorCase{"EveryTooShort", "@every 500ms",
                  R"(schedule "@every 500ms": @every duration "500ms" is shorter than 1s)"},
        ErrorCase{"EveryZero", "@every 0",
                  R"(schedule "@every 0": @every duration "0" is shorter than 1s)"},
        ErrorCase{"EveryFractionalSeconds", "@every 1500ms",
                  R"(schedule "@every 1500ms": @every duration "1500ms" is not a whole number )"
                  R"(of seconds)"},
        ErrorCase{"OtherTimeZone", "CRON_TZ=Europe/Berlin 0 0 * * *",
                  R"(schedule "CRON_TZ=Europe/Berlin 0 0 * * *": time zone "Europe/Berlin" is )"
                  R"(not supported: only UTC is)"},
        ErrorCase{"OtherTimeZoneTz", "TZ=America/New_York @daily",
                  R"(schedule "TZ=America/New_York @daily": time zone "America/New_York" is )"
                  R"(not supported: only UTC is)"},
        ErrorCase{"TimeZoneAlone", "TZ=UTC", R"(schedule "TZ=UTC": nothing follows TZ=UTC)"},
        ErrorCase{"ControlCharactersAreEscaped", "0 0 * * \x01\"",
                  R"(schedule "0 0 * * \x01\"": day-of-week field "\x01\"": "\x01\"" is not )"
                  R"(a number or day name (SUN-SAT))"},
        ErrorCase{"TooLong", std::string(257, '*'),
                  "schedule is 257 bytes long; at most 256 are allowed"}),
    [](const ::testing::TestParamInfo<ErrorCase>& param_info) { return param_info.param.name; });

TEST(CronTest, LongestAllowedExpressionParses) {
  std::string expression = "0 0 * * *" + std::string(CronSchedule::kMaxLength - 9, ' ');
  ASSERT_EQ(expression.size(), CronSchedule::kMaxLength);
  EXPECT_TRUE(CronSchedule::parse(expression).ok());
}

TEST(CronTest, ExpressionIsKeptTrimmed) {
  auto schedule = CronSchedule::parse("  @every 1m ");
  ASSERT_TRUE(schedule.ok());
  EXPECT_EQ(schedule->expression(), "@every 1m");
}

TEST(CronTest, NeverAtTheEndsOfTheClock) {
  auto daily = CronSchedule::parse("@daily");
  auto every = CronSchedule::parse("@every 1h");
  ASSERT_TRUE(daily.ok());
  ASSERT_TRUE(every.ok());
  EXPECT_EQ(daily->next(CronSchedule::kNever), CronSchedule::kNever);
  EXPECT_EQ(every->next(CronSchedule::kNever), CronSchedule::kNever);
  EXPECT_GT(daily->next(TimePoint::min()), TimePoint::min());
  EXPECT_GT(every->next(TimePoint::min()), TimePoint::min());
}

TEST(CronTest, ImpossibleScheduleAnswersQuickly) {
  // Every call searches the whole horizon; a thousand of them must still finish (no timing
  // assertion: the test's own timeout is the bound).
  auto schedule = CronSchedule::parse("0 0 30,31 2 *");
  ASSERT_TRUE(schedule.ok());
  TimePoint time = at("2024-01-01T00:00:00Z");
  for (int call_idx = 0; call_idx < 1000; ++call_idx) {
    EXPECT_EQ(schedule->next(time), CronSchedule::kNever);
    time += std::chrono::hours(24 * 7);
  }
}

}  // namespace
}  // namespace clrk::controller
