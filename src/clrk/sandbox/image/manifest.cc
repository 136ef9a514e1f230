#include "clrk/sandbox/image/manifest.h"

#include "clrk/base/ascii.h"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <cctype>
#include <sys/utsname.h>

namespace clrk::sandbox::image {

namespace {

using nlohmann::json;

std::string shortText(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 120)) {
    auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (text.size() > 120) out += "...";
  return out;
}

Result<std::string> optionalString(const json& object, const char* field,
                                   const std::string& where) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string()) return invalidArgument(where + "." + field + ": not a string");
  return it->get<std::string>();
}

Result<Descriptor> parseDescriptor(const json& value, const std::string& where) {
  if (!value.is_object()) return invalidArgument(where + ": not an object");
  Descriptor out;
  CLRK_ASSIGN_OR_RETURN(out.media_type, optionalString(value, "mediaType", where));
  CLRK_ASSIGN_OR_RETURN(out.digest, optionalString(value, "digest", where));
  if (std::string why = checkDigest(out.digest); !why.empty()) {
    return invalidArgument(where + ".digest: " + why);
  }
  auto size = value.find("size");
  if (size == value.end()) return invalidArgument(where + ".size: missing");
  if (!size->is_number_integer()) return invalidArgument(where + ".size: not an integer");
  if (size->is_number_unsigned()) {
    out.size = size->get<uint64_t>();
  } else {
    int64_t signed_size = size->get<int64_t>();
    if (signed_size < 0) return invalidArgument(where + ".size: negative");
    out.size = static_cast<uint64_t>(signed_size);
  }
  if (auto platform = value.find("platform"); platform != value.end() && !platform->is_null()) {
    if (!platform->is_object()) return invalidArgument(where + ".platform: not an object");
    std::string pwhere = where + ".platform";
    CLRK_ASSIGN_OR_RETURN(out.platform.os, optionalString(*platform, "os", pwhere));
    CLRK_ASSIGN_OR_RETURN(out.platform.architecture,
                          optionalString(*platform, "architecture", pwhere));
    CLRK_ASSIGN_OR_RETURN(out.platform.variant, optionalString(*platform, "variant", pwhere));
  }
  return out;
}

Result<std::vector<std::string>> stringList(const json& object, const char* field,
                                            const std::string& where) {
  std::vector<std::string> out;
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return out;
  if (!it->is_array()) return invalidArgument(where + "." + field + ": not an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& item = (*it)[i];
    if (!item.is_string()) {
      return invalidArgument(where + "." + field + "[" + std::to_string(i) + "]: not a string");
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

Result<Manifest> parseManifestJson(const json& doc, std::string_view content_type) {
  if (!doc.is_object()) return invalidArgument("manifest: top level is not an object");
  Manifest out;
  if (auto version = doc.find("schemaVersion"); version != doc.end()) {
    if (!version->is_number_integer()) {
      return invalidArgument("manifest: schemaVersion is not an integer");
    }
    if (version->get<int64_t>() == 1) {
      return invalidArgument(
          "manifest: Docker schema 1 manifests are not supported (push the image again with a "
          "current client)");
    }
    if (version->get<int64_t>() != 2) {
      return invalidArgument("manifest: unsupported schemaVersion " +
                             std::to_string(version->get<int64_t>()));
    }
  }
  CLRK_ASSIGN_OR_RETURN(out.media_type, optionalString(doc, "mediaType", "manifest"));
  if (out.media_type.empty()) {
    // Content-Type may carry parameters ("; charset=utf-8").
    std::string_view header = content_type.substr(0, content_type.find(';'));
    while (!header.empty() && header.back() == ' ') header.remove_suffix(1);
    out.media_type = std::string(header);
  }
  bool has_manifests = doc.contains("manifests");
  bool has_layers = doc.contains("layers");
  if (out.media_type.empty() || out.media_type == "application/json" ||
      out.media_type == "text/plain" || out.media_type == "application/octet-stream") {
    // OCI allows omitting mediaType; infer from the shape.
    if (has_manifests && !has_layers) {
      out.media_type = std::string(kOciIndex);
    } else if (has_layers && !has_manifests) {
      out.media_type = std::string(kOciManifest);
    } else {
      return invalidArgument("manifest: no mediaType and neither \"layers\" nor \"manifests\"");
    }
  }
  if (out.media_type == kOciIndex || out.media_type == kDockerList) {
    out.kind = ManifestKind::Index;
    auto manifests = doc.find("manifests");
    if (manifests == doc.end() || !manifests->is_array()) {
      return invalidArgument("index: \"manifests\" missing or not an array");
    }
    if (manifests->size() > kMaxIndexEntries) {
      return invalidArgument("index: more than 1024 manifests");
    }
    for (size_t i = 0; i < manifests->size(); ++i) {
      CLRK_ASSIGN_OR_RETURN(
          Descriptor entry,
          parseDescriptor((*manifests)[i], "index.manifests[" + std::to_string(i) + "]"));
      out.manifests.push_back(std::move(entry));
    }
    return out;
  }
  if (out.media_type == kOciManifest || out.media_type == kDockerManifest) {
    out.kind = ManifestKind::Image;
    auto config = doc.find("config");
    if (config == doc.end()) return invalidArgument("manifest: \"config\" missing");
    CLRK_ASSIGN_OR_RETURN(out.config, parseDescriptor(*config, "manifest.config"));
    if (out.config.size > kMaxConfigBytes) {
      return invalidArgument("manifest.config.size: " + std::to_string(out.config.size) +
                             " bytes is over the 1 MiB limit");
    }
    auto layers = doc.find("layers");
    if (layers == doc.end() || !layers->is_array()) {
      return invalidArgument("manifest: \"layers\" missing or not an array");
    }
    if (layers->size() > kMaxLayers) return invalidArgument("manifest: more than 256 layers");
    for (size_t i = 0; i < layers->size(); ++i) {
      std::string where = "manifest.layers[" + std::to_string(i) + "]";
      CLRK_ASSIGN_OR_RETURN(Descriptor layer, parseDescriptor((*layers)[i], where));
      if (!isSupportedLayerType(layer.media_type)) {
        return invalidArgument(where + ": unsupported layer media type \"" +
                               shortText(layer.media_type) + "\"");
      }
      if (layer.size > kMaxLayerBytes) {
        return invalidArgument(where + ".size: " + std::to_string(layer.size) +
                               " bytes is over the 16 GiB limit");
      }
      out.layers.push_back(std::move(layer));
    }
    return out;
  }
  if (out.media_type == "application/vnd.docker.distribution.manifest.v1+json" ||
      out.media_type == "application/vnd.docker.distribution.manifest.v1+prettyjws") {
    return invalidArgument("manifest: Docker schema 1 manifests are not supported");
  }
  return invalidArgument("manifest: unsupported media type \"" + shortText(out.media_type) + "\"");
}

// RFC 7235 auth-param list: name=token or name="quoted\"string", comma separated.
Status parseParams(std::string_view text, std::map<std::string, std::string>& params) {
  size_t i = 0;
  auto skipSpace = [&] {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == ',')) ++i;
  };
  while (true) {
    skipSpace();
    if (i >= text.size()) return {};
    size_t name_start = i;
    while (i < text.size() && text[i] != '=' && text[i] != ' ' && text[i] != ',') ++i;
    std::string name(text.substr(name_start, i - name_start));
    while (i < text.size() && text[i] == ' ') ++i;
    if (i >= text.size() || text[i] != '=') {
      return invalidArgument("WWW-Authenticate: parameter \"" + shortText(name) +
                             "\" has no value");
    }
    ++i;
    while (i < text.size() && text[i] == ' ') ++i;
    std::string value;
    if (i < text.size() && text[i] == '"') {
      ++i;
      bool closed = false;
      while (i < text.size()) {
        char c = text[i++];
        if (c == '\\' && i < text.size()) {
          value += text[i++];
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value += c;
        }
      }
      if (!closed) return invalidArgument("WWW-Authenticate: unterminated quoted string");
    } else {
      size_t value_start = i;
      while (i < text.size() && text[i] != ',' && text[i] != ' ') ++i;
      value = std::string(text.substr(value_start, i - value_start));
    }
    for (char& c : name) c = asciiLower(c);
    if (name.empty()) return invalidArgument("WWW-Authenticate: empty parameter name");
    params[name] = std::move(value);
    if (params.size() > 32) return invalidArgument("WWW-Authenticate: too many parameters");
  }
}

}  // namespace

std::string checkDigest(std::string_view digest) {
  if (digest.empty()) return "missing digest";
  size_t colon = digest.find(':');
  if (colon == std::string_view::npos)
    return "digest \"" + shortText(digest) + "\" has no algorithm";
  std::string_view algorithm = digest.substr(0, colon);
  std::string_view hex = digest.substr(colon + 1);
  if (algorithm != "sha256") {
    return "unsupported digest algorithm \"" + shortText(algorithm) + "\" (only sha256)";
  }
  if (hex.size() != 64) return "sha256 digest must have 64 hex characters";
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return "sha256 digest must be lower-case hex";
    }
  }
  return {};
}

std::string sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

Result<Manifest> parseManifest(std::string_view body, std::string_view content_type) {
  if (body.size() > kMaxManifestBytes) return invalidArgument("manifest: larger than 4 MiB");
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return invalidArgument("manifest: not valid JSON");
  try {
    return parseManifestJson(doc, content_type);
  } catch (const std::exception& e) {
    return invalidArgument(std::string("manifest: ") + e.what());
  }
}

Result<Descriptor> selectPlatform(const Manifest& index, std::string_view os,
                                  std::string_view architecture, std::string_view variant) {
  const Descriptor* best = nullptr;
  std::string offered;
  for (const Descriptor& entry : index.manifests) {
    const Platform& p = entry.platform;
    if (!offered.empty()) offered += ", ";
    offered += shortText(p.os);
    offered += '/';
    offered += shortText(p.architecture);
    if (!p.variant.empty()) {
      offered += '/';
      offered += shortText(p.variant);
    }
    if (p.os != os || p.architecture != architecture) continue;
    if (entry.media_type == kOciIndex || entry.media_type == kDockerList) continue;
    if (!variant.empty() && !p.variant.empty() && p.variant != variant) continue;
    // Prefer an exact variant match over an entry without a variant.
    if (best == nullptr || (p.variant == variant && best->platform.variant != variant)) {
      best = &entry;
    }
  }
  if (best == nullptr) {
    return notFound("no manifest for platform " + std::string(os) + "/" +
                    std::string(architecture) +
                    " in the image index (offered: " + (offered.empty() ? "none" : offered) + ")");
  }
  return *best;
}

std::string hostArchitecture() {
  struct utsname name {};
  if (::uname(&name) != 0) return "amd64";
  std::string_view machine = name.machine;
  if (machine == "x86_64") return "amd64";
  if (machine == "aarch64" || machine == "arm64") return "arm64";
  if (machine.starts_with("armv7") || machine.starts_with("armv6")) return "arm";
  if (machine == "i686" || machine == "i386") return "386";
  if (machine == "ppc64le") return "ppc64le";
  if (machine == "s390x") return "s390x";
  if (machine == "riscv64") return "riscv64";
  return std::string(machine);
}

std::string hostVariant() {
  std::string arch = hostArchitecture();
  if (arch == "arm64") return "v8";
  return {};
}

Result<ImageConfig> parseImageConfig(std::string_view body) {
  if (body.size() > kMaxConfigBytes) return invalidArgument("image config: larger than 1 MiB");
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return invalidArgument("image config: not valid JSON");
  if (!doc.is_object()) return invalidArgument("image config: top level is not an object");
  ImageConfig out;
  try {
    auto config = doc.find("config");
    if (config == doc.end() || config->is_null()) return out;
    if (!config->is_object()) return invalidArgument("image config: \"config\" is not an object");
    CLRK_ASSIGN_OR_RETURN(out.entrypoint, stringList(*config, "Entrypoint", "config"));
    CLRK_ASSIGN_OR_RETURN(out.cmd, stringList(*config, "Cmd", "config"));
    CLRK_ASSIGN_OR_RETURN(out.env, stringList(*config, "Env", "config"));
    CLRK_ASSIGN_OR_RETURN(out.working_dir, optionalString(*config, "WorkingDir", "config"));
    CLRK_ASSIGN_OR_RETURN(out.user, optionalString(*config, "User", "config"));
  } catch (const std::exception& e) {
    return invalidArgument(std::string("image config: ") + e.what());
  }
  return out;
}

Result<std::vector<std::string>> parseDiffIds(std::string_view body) {
  if (body.size() > kMaxConfigBytes) return invalidArgument("image config: larger than 1 MiB");
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return invalidArgument("image config: not a JSON object");
  }
  auto rootfs = doc.find("rootfs");
  if (rootfs == doc.end() || rootfs->is_null()) return std::vector<std::string>();
  if (!rootfs->is_object()) return invalidArgument("image config: rootfs is not an object");
  CLRK_ASSIGN_OR_RETURN(std::vector<std::string> ids, stringList(*rootfs, "diff_ids", "rootfs"));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (std::string why = checkDigest(ids[i]); !why.empty()) {
      return invalidArgument("image config: rootfs.diff_ids[" + std::to_string(i) + "]: " + why);
    }
  }
  return ids;
}

Result<AuthChallenge> parseAuthChallenge(std::string_view header) {
  if (header.size() > 8192) return invalidArgument("WWW-Authenticate: longer than 8 KiB");
  size_t i = 0;
  while (i < header.size() && header[i] == ' ') ++i;
  size_t scheme_start = i;
  while (i < header.size() && header[i] != ' ') ++i;
  AuthChallenge out;
  out.scheme = std::string(header.substr(scheme_start, i - scheme_start));
  if (out.scheme.empty()) return invalidArgument("WWW-Authenticate: no scheme");
  for (char& c : out.scheme) c = asciiLower(c);
  CLRK_RETURN_IF_ERROR(parseParams(header.substr(i), out.params));
  return out;
}

bool isSupportedLayerType(std::string_view media_type) {
  return media_type == "application/vnd.oci.image.layer.v1.tar" ||
         media_type == "application/vnd.oci.image.layer.v1.tar+gzip" ||
         media_type == "application/vnd.oci.image.layer.v1.tar+zstd" ||
         media_type == "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
         media_type == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
         media_type == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" ||
         media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
         media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" ||
         media_type == "application/vnd.docker.image.rootfs.diff.tar.zstd";
}

}  // namespace clrk::sandbox::image
