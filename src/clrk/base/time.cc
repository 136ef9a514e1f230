#include "clrk/base/time.h"

#include <cctype>
#include <cstdio>
#include <ctime>

namespace clrk {
namespace {

std::tm toUtc(SystemTime time) {
  std::time_t seconds = std::chrono::system_clock::to_time_t(time);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  return parts;
}

bool readDigits(std::string_view text, size_t& pos, size_t count, int& out) {
  if (pos + count > text.size()) return false;
  int value = 0;
  for (size_t digit_idx = 0; digit_idx < count; ++digit_idx) {
    char c = text[pos + digit_idx];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  pos += count;
  out = value;
  return true;
}

bool expect(std::string_view text, size_t& pos, char c) {
  if (pos >= text.size() || text[pos] != c) return false;
  ++pos;
  return true;
}

}  // namespace

std::string formatRfc3339(SystemTime time) {
  std::tm parts = toUtc(time);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return buf;
}

std::string formatRfc3339Micro(SystemTime time) {
  std::tm parts = toUtc(time);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()) %
                std::chrono::seconds(1);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &parts);
  char fraction[16];
  std::snprintf(fraction, sizeof(fraction), ".%06dZ", static_cast<int>(micros.count()));
  return std::string(buf) + fraction;
}

std::optional<SystemTime> parseRfc3339(std::string_view text) {
  size_t pos = 0;
  std::tm parts{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!readDigits(text, pos, 4, year) || !expect(text, pos, '-') ||
      !readDigits(text, pos, 2, month) || !expect(text, pos, '-') ||
      !readDigits(text, pos, 2, day) || pos >= text.size() ||
      (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ')) {
    return std::nullopt;
  }
  ++pos;
  if (!readDigits(text, pos, 2, hour) || !expect(text, pos, ':') ||
      !readDigits(text, pos, 2, minute) || !expect(text, pos, ':') ||
      !readDigits(text, pos, 2, second)) {
    return std::nullopt;
  }
  // system_clock (nanoseconds in int64) spans 1678..2261; refuse what it cannot represent.
  if (year < 1678 || year > 2261) return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  long long micros = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      if (digits < 6) micros = micros * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (size_t pad = digits; pad < 6; ++pad) micros *= 10;
  }
  long offset_seconds = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int off_hours = 0, off_minutes = 0;
    if (!readDigits(text, pos, 2, off_hours) || !expect(text, pos, ':') ||
        !readDigits(text, pos, 2, off_minutes)) {
      return std::nullopt;
    }
    offset_seconds = sign * (off_hours * 3600L + off_minutes * 60L);
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  parts.tm_year = year - 1900;
  parts.tm_mon = month - 1;
  parts.tm_mday = day;
  parts.tm_hour = hour;
  parts.tm_min = minute;
  parts.tm_sec = second;
  std::time_t epoch = timegm(&parts);
  return std::chrono::system_clock::from_time_t(epoch - offset_seconds) +
         std::chrono::microseconds(micros);
}

std::string formatAge(std::chrono::seconds age) {
  long long secs = age.count() < 0 ? 0 : age.count();
  if (secs < 120) return std::to_string(secs) + "s";
  if (secs < 2 * 3600) return std::to_string(secs / 60) + "m";
  if (secs < 48 * 3600) return std::to_string(secs / 3600) + "h";
  return std::to_string(secs / 86400) + "d";
}

std::optional<std::chrono::milliseconds> parseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text == "0") return std::chrono::milliseconds(0);
  double total_ms = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = pos;
    while (pos < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[pos])) || text[pos] == '.')) {
      ++pos;
    }
    if (start == pos) return std::nullopt;
    double number = 0;
    std::string digits(text.substr(start, pos - start));
    char* end = nullptr;
    number = std::strtod(digits.c_str(), &end);
    if (end != digits.c_str() + digits.size()) return std::nullopt;
    size_t unit_start = pos;
    while (pos < text.size() && std::isalpha(static_cast<unsigned char>(text[pos]))) ++pos;
    std::string_view unit = text.substr(unit_start, pos - unit_start);
    double scale = 0;
    if (unit == "h")
      scale = 3600e3;
    else if (unit == "m")
      scale = 60e3;
    else if (unit == "s")
      scale = 1e3;
    else if (unit == "ms")
      scale = 1;
    else if (unit == "us" || unit == "µs")
      scale = 1e-3;
    else if (unit == "ns")
      scale = 1e-6;
    else
      return std::nullopt;
    total_ms += number * scale;
  }
  if (total_ms > 1e15) return std::nullopt;
  return std::chrono::milliseconds(static_cast<long long>(total_ms));
}

}  // namespace clrk
