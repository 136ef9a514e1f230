#include "clrk/apiserver/storage/storage.h"

namespace clrk::apiserver::storage {
// Temporary until the real backend lands (within the hour).
StoragePtr makeMemoryStorage() { return nullptr; }
}  // namespace clrk::apiserver::storage
