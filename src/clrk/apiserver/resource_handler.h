// The embedded API server's REST semantics over storage::Storage and api::Registry: CRUD, list,
// watch, patches (merge, JSON, strategic-as-merge, server-side apply), status subresources,
// finalizers, deletion propagation, garbage collection, namespace lifecycle and Table output.
// See handler.h for the contract and the thread model.
#pragma once

#include "clrk/api/registry.h"
#include "clrk/apiserver/handler.h"
#include "clrk/apiserver/storage/storage.h"

#include <chrono>
#include <cstddef>

namespace clrk::apiserver {

struct ResourceHandlerOptions {
  // Interval of BOOKMARK events on watches with allowWatchBookmarks=true.
  std::chrono::milliseconds bookmark_interval{10000};
  // How often the garbage collector re-examines pending work (retries, foreground deletions).
  std::chrono::milliseconds gc_resync_interval{1000};
  // Request bodies larger than this are rejected with 413.
  size_t max_body_bytes = 3 * 1024 * 1024;
  // Watches without timeoutSeconds end after this long.
  std::chrono::milliseconds default_watch_timeout{1800000};
};

// `storage` and `registry` must outlive the handler.
ResourceHandlerPtr makeResourceHandler(storage::Storage& storage, const api::Registry& registry);
ResourceHandlerPtr makeResourceHandler(storage::Storage& storage, const api::Registry& registry,
                                       ResourceHandlerOptions options);

}  // namespace clrk::apiserver
