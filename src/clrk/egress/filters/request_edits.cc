#include "clrk/egress/filters/request_edits.h"

#include "clrk/base/ascii.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string_view>

namespace clrk::egress::filters {
namespace {

constexpr std::array<std::string_view, 5> kCredentialHeaders = {
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key"};

// Drops every `name=...` (or bare `name`) parameter from the query of `target`.
void removeQueryParam(std::string& target, std::string_view name) {
  size_t query_start = target.find('?');
  if (query_start == std::string::npos) return;
  std::string_view query(target);
  query.remove_prefix(query_start + 1);
  std::string kept;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    std::string_view key = param.substr(0, param.find('='));
    if (param.empty() || key == name) continue;
    if (!kept.empty()) kept += '&';
    kept.append(param);
  }
  target.resize(query_start);
  if (!kept.empty()) {
    target += '?';
    target += kept;
  }
}

}  // namespace

std::string percentEncode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

void stripAgentCredentials(Headers& headers, std::string& target) {
  for (std::string_view name : kCredentialHeaders) headers.remove(name);
  removeQueryParam(target, "key");
}

void filterRequestTrailers(std::vector<std::pair<std::string, std::string>>& trailers,
                           const config::Credential* credential,
                           const config::HeaderMutation& mutation) {
  std::erase_if(trailers, [&](const auto& field) {
    const std::string& name = field.first;
    if (credential && credential->target == config::Credential::Target::kHeader &&
        asciiEqualsIgnoreCase(name, credential->name)) {
      return true;
    }
    for (const auto& removed : mutation.remove) {
      if (asciiEqualsIgnoreCase(name, removed)) return true;
    }
    for (const auto& [set, value] : mutation.set) {
      if (asciiEqualsIgnoreCase(name, set)) return true;
    }
    return std::find(kCredentialHeaders.begin(), kCredentialHeaders.end(), name) !=
           kCredentialHeaders.end();
  });
}

void injectCredential(const config::Credential& credential, Headers& headers, std::string& target) {
  stripAgentCredentials(headers, target);
  if (credential.target == config::Credential::Target::kHeader) {
    headers.set(credential.name, credential.value);
    return;
  }
  removeQueryParam(target, credential.name);
  target += target.find('?') == std::string::npos ? '?' : '&';
  target += percentEncode(credential.name);
  target += '=';
  target += percentEncode(credential.value);
}

void applyHeaderMutation(const config::HeaderMutation& mutation, Headers& headers) {
  for (const auto& name : mutation.remove) headers.remove(name);
  for (const auto& [name, value] : mutation.set) headers.set(name, value);
  for (const auto& [name, value] : mutation.add) headers.add(name, value);
}

}  // namespace clrk::egress::filters
