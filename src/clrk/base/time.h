// Wall-clock helpers in the formats the Kubernetes API uses.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace clrk {

using SystemTime = std::chrono::system_clock::time_point;

// RFC 3339 with second precision in UTC: "2026-11-25T03:56:34Z" (metav1.Time).
std::string formatRfc3339(SystemTime time);
// RFC 3339 with microseconds: "2026-11-25T03:56:34.123456Z" (metav1.MicroTime).
std::string formatRfc3339Micro(SystemTime time);
// Parses "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm)"; nullopt when malformed.
std::optional<SystemTime> parseRfc3339(std::string_view text);

// Kubernetes-style age: "45s", "12m", "3h", "5d".
std::string formatAge(std::chrono::seconds age);

// Go duration strings ("100s", "5m", "1h30m", "250ms"); nullopt when malformed or negative.
std::optional<std::chrono::milliseconds> parseDuration(std::string_view text);

}  // namespace clrk
