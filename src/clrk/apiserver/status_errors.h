// Kubernetes Status errors (metav1.Status with status "Failure") with the real server's reasons,
// codes and message formats, and their rendering into a Response.
// Thread model: plain values and pure functions.
#pragma once

#include "clrk/api/registry.h"
#include "clrk/api/validation.h"
#include "clrk/apiserver/handler.h"
#include "clrk/base/status.h"

#include <string>
#include <string_view>
#include <vector>

namespace clrk::apiserver {

struct ApiError {
  int code = 500;
  std::string reason;  // "NotFound", "Conflict", ...
  std::string message;
  api::Json details;  // null or {"name","group","kind","causes"}

  // The metav1.Status JSON object.
  api::Json toJson() const;
  // A response carrying toJson() with `code` as the HTTP status.
  Response toResponse() const;
};

// "taskagents.clrk.apoxy.dev \"x\" not found" (404 NotFound).
ApiError notFoundError(const api::ResourceType& type, std::string_view name);
// 404 for a resource or path this server does not serve.
ApiError unknownResourceError(std::string_view path);
// 409 AlreadyExists.
ApiError alreadyExistsError(const api::ResourceType& type, std::string_view name);
// 409 Conflict: "Operation cannot be fulfilled on <qualified> \"x\": <detail>".
ApiError conflictError(const api::ResourceType& type, std::string_view name,
                       std::string_view detail =
                           "the object has been modified; please apply your changes to the "
                           "latest version and try again");
// 422 Invalid with one cause per field error: "<Kind>.<group> \"x\" is invalid: [a, b]".
ApiError invalidError(const api::ResourceType& type, std::string_view name,
                      const std::vector<api::FieldError>& errors);
// 400 BadRequest.
ApiError badRequestError(std::string message);
// 403 Forbidden: "<qualified> \"x\" is forbidden: <detail>".
ApiError forbiddenError(const api::ResourceType& type, std::string_view name,
                        std::string_view detail);
// 405 MethodNotAllowed.
ApiError methodNotAllowedError();
// 406 NotAcceptable.
ApiError notAcceptableError(std::string_view accept);
// 415 UnsupportedMediaType.
ApiError unsupportedMediaTypeError(std::string_view content_type);
// 413 RequestEntityTooLarge.
ApiError tooLargeError(size_t limit);
// 410 Expired (watch / continue too old).
ApiError expiredError(std::string message);
// 500 InternalError.
ApiError internalError(std::string message);
// Maps a storage/base Status to the matching API error for (type, name).
ApiError fromStatus(const Status& status, const api::ResourceType& type, std::string_view name);

// Reason string for a FieldError type ("FieldValueRequired", ...).
std::string_view causeReason(const api::FieldError& error);

}  // namespace clrk::apiserver
