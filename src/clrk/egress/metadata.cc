#include "clrk/egress/metadata.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace clrk::egress {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kEventPath = "/event";
constexpr std::string_view kResponsePath = "/response";

// A Content-Type worth keeping: printable ASCII (no CR/LF that could split a header later).
std::string cleanContentType(std::string_view value) {
  if (value.size() > kMaxMetadataContentTypeBytes) return "";
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return "";
  }
  return std::string(value);
}

std::string dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

MetadataReply methodNotAllowed(std::string_view method, std::string_view path,
                               std::string_view allowed) {
  MetadataReply reply = MetadataStore::error(405, "method_not_allowed",
                                             fmt::format("{} {}: use {}", method, path, allowed));
  reply.headers.emplace_back("Allow", std::string(allowed));
  return reply;
}

}  // namespace

MetadataReply MetadataStore::error(int status, std::string_view type, std::string_view message) {
  MetadataReply reply;
  reply.status = status;
  reply.body =
      dump({{"error",
             {{"code", status}, {"type", std::string(type)}, {"message", std::string(message)}}}});
  return reply;
}

MetadataReply MetadataStore::tooLarge() {
  return error(413, "response_too_large",
               fmt::format("the response body exceeds {} bytes", kMaxMetadataResponseBytes));
}

void MetadataStore::add(const std::string& execution_id, std::string event) {
  auto shared = std::make_shared<const std::string>(std::move(event));
  std::lock_guard lock(mutex_);
  entries_[execution_id] = Entry{std::move(shared), std::nullopt};
}

std::optional<MetadataResponse> MetadataStore::remove(const std::string& execution_id) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(execution_id);
  if (it == entries_.end()) return std::nullopt;
  std::optional<MetadataResponse> response = std::move(it->second.response);
  entries_.erase(it);
  return response;
}

size_t MetadataStore::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

MetadataReply MetadataStore::handle(const Identity* identity, const MetadataRequest& request) {
  std::string_view path = request.target.substr(0, request.target.find('?'));
  if (identity == nullptr || identity->execution_id.empty()) {
    return error(403, "unknown_caller",
                 "the metadata endpoint answers only sandboxes of this worker");
  }
  const std::string& id = identity->execution_id;
  if (path != "/" && path != kEventPath && path != kResponsePath) {
    return error(404, "not_found",
                 fmt::format("no {} here: GET {} reads the event, POST {} sets the response", path,
                             kEventPath, kResponsePath));
  }
  if (path == kResponsePath) {
    if (request.method != "POST") return methodNotAllowed(request.method, path, "POST");
  } else if (request.method != "GET") {
    return methodNotAllowed(request.method, path, "GET");
  }
  if (request.body.size() > kMaxMetadataResponseBytes) return tooLarge();

  std::unique_lock lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return error(404, "not_found",
                 fmt::format("execution {} does not use spec.delivery.mode Metadata (or has "
                             "finished)",
                             id));
  }
  if (path == "/") {
    lock.unlock();
    MetadataReply reply;
    reply.body = dump({{"event", kEventPath}, {"response", kResponsePath}});
    return reply;
  }
  if (path == kEventPath) {
    std::shared_ptr<const std::string> event = it->second.event;
    lock.unlock();
    MetadataReply reply;
    reply.content_type = "application/cloudevents+json; charset=utf-8";
    reply.body = *event;
    return reply;
  }
  bool replaced = it->second.response.has_value();
  MetadataResponse& response =
      it->second.response ? *it->second.response : it->second.response.emplace();
  response.content_type = cleanContentType(request.content_type);
  response.body.assign(request.body);
  ++response.posts;
  lock.unlock();
  MetadataReply reply;
  reply.body = dump({{"bytes", request.body.size()}, {"replaced", replaced}});
  return reply;
}

}  // namespace clrk::egress
