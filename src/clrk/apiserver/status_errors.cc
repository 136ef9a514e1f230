#include "clrk/apiserver/status_errors.h"

#include <utility>

namespace clrk::apiserver {
namespace {

api::Json detailsFor(const api::ResourceType& type, std::string_view name, std::string_view kind) {
  api::Json details = api::Json::object();
  if (!name.empty()) details["name"] = name;
  if (!type.group.empty()) details["group"] = type.group;
  details["kind"] = kind;
  return details;
}

ApiError make(int code, std::string reason, std::string message, api::Json details = api::Json()) {
  ApiError error;
  error.code = code;
  error.reason = std::move(reason);
  error.message = std::move(message);
  error.details = std::move(details);
  return error;
}

std::string quoted(std::string_view name) {
  std::string out = "\"";
  out += name;
  out += '"';
  return out;
}

}  // namespace

api::Json ApiError::toJson() const {
  api::Json status = {
      {"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", api::Json::object()},
      {"status", "Failure"}, {"message", message}, {"reason", reason},
      {"code", code}};
  if (!details.is_null()) status["details"] = details;
  return status;
}

Response ApiError::toResponse() const {
  Response response;
  response.status = code;
  response.body = toJson().dump(-1, ' ', false, api::Json::error_handler_t::replace);
  return response;
}

ApiError notFoundError(const api::ResourceType& type, std::string_view name) {
  return make(404, "NotFound", type.qualifiedName() + " " + quoted(name) + " not found",
              detailsFor(type, name, type.plural));
}

ApiError unknownResourceError(std::string_view path) {
  return make(404, "NotFound",
              "the server could not find the requested resource (" + std::string(path) + ")",
              api::Json::object());
}

ApiError alreadyExistsError(const api::ResourceType& type, std::string_view name) {
  return make(409, "AlreadyExists", type.qualifiedName() + " " + quoted(name) + " already exists",
              detailsFor(type, name, type.plural));
}

ApiError conflictError(const api::ResourceType& type, std::string_view name,
                       std::string_view detail) {
  return make(409, "Conflict",
              "Operation cannot be fulfilled on " + type.qualifiedName() + " " + quoted(name) +
                  ": " + std::string(detail),
              detailsFor(type, name, type.plural));
}

std::string_view causeReason(const api::FieldError& error) {
  switch (error.type) {
    case api::FieldErrorType::Unknown:
      return "FieldValueInvalid";
    case api::FieldErrorType::Required:
      return "FieldValueRequired";
    case api::FieldErrorType::TypeMismatch:
      return "FieldValueTypeInvalid";
    case api::FieldErrorType::Invalid:
      if (error.detail.rfind("Unsupported value", 0) == 0) return "FieldValueNotSupported";
      if (error.detail.rfind("Forbidden", 0) == 0) return "FieldValueForbidden";
      if (error.detail.rfind("Duplicate value", 0) == 0) return "FieldValueDuplicate";
      if (error.detail.rfind("Too long", 0) == 0) return "FieldValueTooLong";
      return "FieldValueInvalid";
  }
  return "FieldValueInvalid";
}

ApiError invalidError(const api::ResourceType& type, std::string_view name,
                      const std::vector<api::FieldError>& errors) {
  std::string kind_name = type.group.empty() ? type.kind : type.kind + "." + type.group;
  std::string list;
  api::Json causes = api::Json::array();
  for (const auto& error : errors) {
    if (!list.empty()) list += ", ";
    list += error.toString();
    causes.push_back(
        {{"reason", causeReason(error)}, {"message", error.detail}, {"field", error.path}});
  }
  if (errors.size() > 1) list = "[" + list + "]";
  api::Json details = detailsFor(type, name, type.kind);
  details["causes"] = std::move(causes);
  return make(422, "Invalid", kind_name + " " + quoted(name) + " is invalid: " + list,
              std::move(details));
}

ApiError badRequestError(std::string message) {
  return make(400, "BadRequest", std::move(message));
}

ApiError forbiddenError(const api::ResourceType& type, std::string_view name,
                        std::string_view detail) {
  return make(403, "Forbidden",
              type.qualifiedName() + " " + quoted(name) + " is forbidden: " + std::string(detail),
              detailsFor(type, name, type.plural));
}

ApiError methodNotAllowedError() {
  return make(405, "MethodNotAllowed",
              "the server does not allow this method on the requested resource",
              api::Json::object());
}

ApiError notAcceptableError(std::string_view accept) {
  return make(406, "NotAcceptable",
              "the server was unable to respond with a content type that the client supports "
              "(accept: " +
                  std::string(accept) + "; supported: application/json)");
}

ApiError unsupportedMediaTypeError(std::string_view content_type) {
  return make(415, "UnsupportedMediaType",
              "the body of the request was in an unknown format (" + std::string(content_type) +
                  ") - accepted media types include: application/json, "
                  "application/json-patch+json, application/merge-patch+json, "
                  "application/strategic-merge-patch+json, application/apply-patch+yaml");
}

ApiError tooLargeError(size_t limit) {
  return make(413, "RequestEntityTooLarge",
              "Request entity too large: limit is " + std::to_string(limit));
}

ApiError expiredError(std::string message) { return make(410, "Expired", std::move(message)); }

ApiError internalError(std::string message) {
  return make(500, "InternalError", "Internal error occurred: " + message);
}

ApiError fromStatus(const Status& status, const api::ResourceType& type, std::string_view name) {
  switch (status.code()) {
    case Code::NotFound:
      return notFoundError(type, name);
    case Code::AlreadyExists:
      return alreadyExistsError(type, name);
    case Code::Conflict:
      return conflictError(type, name);
    case Code::Gone:
      return expiredError(status.message());
    case Code::InvalidArgument:
      return badRequestError(status.message());
    case Code::Forbidden:
      return forbiddenError(type, name, status.message());
    case Code::Unavailable:
      return make(503, "ServiceUnavailable", status.message());
    case Code::Timeout:
      return make(504, "Timeout", status.message());
    default:
      return internalError(status.message());
  }
}

}  // namespace clrk::apiserver
