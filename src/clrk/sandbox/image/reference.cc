// Image reference normalisation (Docker's rules) and .dockerconfigjson parsing.
#include "clrk/base/ascii.h"
#include "clrk/sandbox/image/image_store.h"
#include "clrk/sandbox/image/manifest.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <string>

namespace clrk::sandbox::image {

namespace {

constexpr std::string_view kDockerHub = "registry-1.docker.io";
constexpr size_t kMaxReferenceLength = 4096;
constexpr size_t kMaxRepositoryLength = 255;
constexpr size_t kMaxTagLength = 128;

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Quotes untrusted text for an error message: printable ASCII kept, the rest escaped, bounded.
std::string quoted(std::string_view text) {
  std::string out = "\"";
  size_t limit = text.size() > 200 ? 200 : text.size();
  for (size_t i = 0; i < limit; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (limit < text.size()) out += "...";
  out += '"';
  return out;
}

// One repository path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
std::string checkPathComponent(std::string_view comp) {
  if (comp.empty()) return "empty path component";
  if (!isLowerAlnum(comp.front()) || !isLowerAlnum(comp.back())) {
    for (char c : comp) {
      if (c >= 'A' && c <= 'Z') return "repository name must be lowercase (" + quoted(comp) + ")";
    }
    return "path component " + quoted(comp) + " must start and end with [a-z0-9]";
  }
  size_t i = 0;
  while (i < comp.size()) {
    char c = comp[i];
    if (isLowerAlnum(c)) {
      ++i;
      continue;
    }
    if (c >= 'A' && c <= 'Z') return "repository name must be lowercase (" + quoted(comp) + ")";
    // A separator run: ".", "_", "__" or "-+".
    size_t start = i;
    if (c == '.') {
      ++i;
    } else if (c == '_') {
      ++i;
      if (i < comp.size() && comp[i] == '_') ++i;
    } else if (c == '-') {
      while (i < comp.size() && comp[i] == '-') ++i;
    } else {
      return "invalid character " + quoted(std::string_view(&comp[i], 1)) + " in path component " +
             quoted(comp);
    }
    if (i >= comp.size() || !isLowerAlnum(comp[i])) {
      return "invalid separator " + quoted(comp.substr(start, i - start + 1)) +
             " in path component " + quoted(comp);
    }
  }
  return {};
}

// host[:port], host = DNS labels or an IPv4 literal or "[ipv6]".
std::string checkRegistry(std::string_view registry) {
  std::string_view host = registry;
  std::string_view port;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return "registry " + quoted(registry) + ": unclosed '['";
    std::string_view inner = host.substr(1, close - 1);
    if (inner.empty()) return "registry " + quoted(registry) + ": empty IPv6 address";
    for (char c : inner) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return "registry " + quoted(registry) + ": invalid IPv6 address";
      }
    }
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return "registry " + quoted(registry) + ": junk after ']'";
      port = rest.substr(1);
      if (port.empty()) return "registry " + quoted(registry) + ": empty port";
    }
  } else {
    size_t colon = host.find(':');
    if (colon != std::string_view::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
      if (port.empty()) return "registry " + quoted(registry) + ": empty port";
    }
    if (host.empty()) return "registry " + quoted(registry) + ": empty host";
    size_t label_start = 0;
    for (size_t i = 0; i <= host.size(); ++i) {
      if (i == host.size() || host[i] == '.') {
        std::string_view label = host.substr(label_start, i - label_start);
        if (label.empty()) return "registry " + quoted(registry) + ": empty host label";
        if (label.front() == '-' || label.back() == '-') {
          return "registry " + quoted(registry) + ": host label " + quoted(label) +
                 " starts or ends with '-'";
        }
        label_start = i + 1;
        continue;
      }
      char c = host[i];
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') {
        return "registry " + quoted(registry) + ": invalid character " +
               quoted(std::string_view(&host[i], 1)) + " in host";
      }
    }
  }
  if (!port.empty()) {
    if (port.size() > 5) return "registry " + quoted(registry) + ": port out of range";
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return "registry " + quoted(registry) + ": port is not a number";
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return "registry " + quoted(registry) + ": port out of range";
  }
  return {};
}

std::string checkTag(std::string_view tag) {
  if (tag.empty()) return "empty tag";
  if (tag.size() > kMaxTagLength) return "tag longer than 128 characters";
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(tag.front())) return "tag " + quoted(tag) + " must start with [A-Za-z0-9_]";
  for (char c : tag) {
    if (!word(c) && c != '.' && c != '-') {
      return "invalid character " + quoted(std::string_view(&c, 1)) + " in tag " + quoted(tag);
    }
  }
  return {};
}

// Maps the Docker Hub aliases to the registry's API host.
std::string normaliseRegistryHost(std::string_view host) {
  std::string lower = asciiLowerCopy(host);
  if (lower == "docker.io" || lower == "index.docker.io" || lower == "registry.hub.docker.com") {
    return std::string(kDockerHub);
  }
  return lower;
}

Result<std::string> decodeBase64(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  size_t padding = 0;
  for (char c : text) {
    if (c == '=') {
      ++padding;
      continue;
    }
    if (c == '\n' || c == '\r' || c == ' ') continue;
    if (padding > 0) return invalidArgument("data after '=' padding");
    int v = value(c);
    if (v < 0)
      return invalidArgument("invalid base64 character " + quoted(std::string_view(&c, 1)));
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xff);
    }
  }
  if (padding > 2) return invalidArgument("too much '=' padding");
  return out;
}

}  // namespace

std::string ImageReference::str() const {
  std::string out = registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

Result<ImageReference> parseImageReference(std::string_view text) {
  auto fail = [&](const std::string& why) -> Status {
    return invalidArgument("image reference " + quoted(text) + ": " + why);
  };
  if (text.empty()) return fail("empty");
  if (text.size() > kMaxReferenceLength) return fail("longer than 4096 bytes");
  for (char c : text) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return fail("contains whitespace or a non-printable/non-ASCII byte");
    }
  }
  ImageReference ref;
  std::string_view name = text;
  if (size_t at = name.find('@'); at != std::string_view::npos) {
    std::string_view digest = name.substr(at + 1);
    name = name.substr(0, at);
    if (std::string why = checkDigest(digest); !why.empty()) return fail(why);
    ref.digest = std::string(digest);
  }
  // A tag is the text after the last ':' when that ':' is after the last '/'.
  size_t last_slash = name.rfind('/');
  size_t last_colon = name.rfind(':');
  if (last_colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || last_colon > last_slash)) {
    std::string_view tag = name.substr(last_colon + 1);
    if (std::string why = checkTag(tag); !why.empty()) return fail(why);
    ref.tag = std::string(tag);
    name = name.substr(0, last_colon);
  }
  if (name.empty()) return fail("empty repository name");
  // The first component is a registry host when it looks like one.
  std::string_view path = name;
  if (size_t slash = name.find('/'); slash != std::string_view::npos) {
    std::string_view first = name.substr(0, slash);
    bool is_host = first.find('.') != std::string_view::npos ||
                   first.find(':') != std::string_view::npos || first == "localhost" ||
                   (!first.empty() && first.front() == '[');
    if (is_host) {
      if (std::string why = checkRegistry(first); !why.empty()) return fail(why);
      ref.registry = normaliseRegistryHost(first);
      path = name.substr(slash + 1);
    }
  }
  if (ref.registry.empty()) ref.registry = std::string(kDockerHub);
  if (path.empty()) return fail("empty repository path");
  if (path.size() > kMaxRepositoryLength) return fail("repository path longer than 255 characters");
  // Structural errors first: "Foo//bar" is reported as an empty component.
  if (path.front() == '/' || path.back() == '/' || path.find("//") != std::string_view::npos) {
    return fail("empty path component");
  }
  size_t start = 0;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (std::string why = checkPathComponent(path.substr(start, i - start)); !why.empty()) {
        return fail(why);
      }
      start = i + 1;
    }
  }
  ref.repository = std::string(path);
  if (ref.registry == kDockerHub && ref.repository.find('/') == std::string::npos) {
    ref.repository = "library/" + ref.repository;
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

Result<std::map<std::string, RegistryAuth>> parseDockerConfigJson(std::string_view json) {
  if (json.size() > kMaxConfigJsonBytes) {
    return invalidArgument(".dockerconfigjson: larger than 1 MiB");
  }
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return invalidArgument(".dockerconfigjson: not valid JSON");
  if (!doc.is_object()) return invalidArgument(".dockerconfigjson: top level is not an object");
  // The current format nests under "auths"; the legacy .dockercfg is the map itself.
  const nlohmann::json* auths = &doc;
  if (auto it = doc.find("auths"); it != doc.end()) {
    if (!it->is_object()) return invalidArgument(".dockerconfigjson: \"auths\" is not an object");
    auths = &*it;
  }
  std::map<std::string, RegistryAuth> out;
  for (auto item = auths->begin(); item != auths->end(); ++item) {
    const std::string& key = item.key();
    const nlohmann::json& entry = item.value();
    std::string where = ".dockerconfigjson: auths." + key;
    if (!entry.is_object()) return invalidArgument(where + ": not an object");
    // Keys may be URLs ("https://index.docker.io/v1/"): keep the host[:port].
    std::string_view host = key;
    if (size_t scheme = host.find("://"); scheme != std::string_view::npos) {
      host = host.substr(scheme + 3);
    }
    if (size_t slash = host.find('/'); slash != std::string_view::npos)
      host = host.substr(0, slash);
    if (host.empty()) return invalidArgument(where + ": empty registry host");
    RegistryAuth auth;
    auto stringField = [&](const char* field, std::string& dest) -> Status {
      auto it = entry.find(field);
      if (it == entry.end() || it->is_null()) return {};
      if (!it->is_string()) return invalidArgument(where + "." + field + ": not a string");
      dest = it->get<std::string>();
      return {};
    };
    std::string encoded;
    std::string identity_token;
    CLRK_RETURN_IF_ERROR(stringField("auth", encoded));
    CLRK_RETURN_IF_ERROR(stringField("username", auth.username));
    CLRK_RETURN_IF_ERROR(stringField("password", auth.password));
    CLRK_RETURN_IF_ERROR(stringField("identitytoken", identity_token));
    if (!encoded.empty()) {
      auto decoded = decodeBase64(encoded);
      if (!decoded.ok()) return invalidArgument(where + ".auth: " + decoded.status().message());
      size_t colon = decoded->find(':');
      if (colon == std::string::npos) {
        return invalidArgument(where + ".auth: decoded value is not \"user:password\"");
      }
      auth.username = decoded->substr(0, colon);
      auth.password = decoded->substr(colon + 1);
    }
    if (auth.password.empty() && !identity_token.empty()) auth.password = identity_token;
    if (auth.username.empty() && auth.password.empty()) {
      return invalidArgument(where +
                             ": no \"auth\", \"username\"/\"password\" or \"identitytoken\"");
    }
    out[normaliseRegistryHost(host)] = std::move(auth);
  }
  return out;
}

std::optional<RegistryAuth> findRegistryAuth(const std::map<std::string, RegistryAuth>& auths,
                                             const ImageReference& ref) {
  auto it = auths.find(ref.registry);
  if (it == auths.end()) return std::nullopt;
  return it->second;
}

}  // namespace clrk::sandbox::image
