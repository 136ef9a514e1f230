// Placeholder: filled in by the storage engineer.
namespace clrk::apiserver::storage {}
