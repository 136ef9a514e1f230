#include "clrk/apiserver/storage/storage.h"

namespace clrk::apiserver::storage {
// Temporary until the real backend lands (within the hour).
Result<StoragePtr> openSqliteStorage(const SqliteOptions&) {
  return Status(Code::Unavailable, "sqlite storage not implemented yet");
}
}  // namespace clrk::apiserver::storage
