// In-process nftables (libnftables): runs nft command text without forking `nft`, and the rule
// text per-sandbox networking uses (kept here so it can be unit-tested without root).
// Thread model: Nftables is thread-safe (one nft context behind a mutex).
#pragma once

#include "clrk/base/status.h"
#include "clrk/sandbox/net/network.h"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct nft_ctx;

namespace clrk::sandbox::net {

class Nftables {
 public:
  static Result<std::unique_ptr<Nftables>> create();
  ~Nftables();
  Nftables(const Nftables&) = delete;
  Nftables& operator=(const Nftables&) = delete;

  // Runs `commands` (nft syntax, one transaction); the error names what nft rejected.
  Status run(const std::string& commands);
  // Runs `commands` and returns nft's output (e.g. of "list set ...").
  Result<std::string> query(const std::string& commands);

  // Adds, or removes idempotently, the set elements of `networks` (see addElementsCommand()) in
  // one transaction. This is the per-sandbox hot path, so it goes straight to the kernel as one
  // nfnetlink batch (~0.1 ms, where libnftables first refreshes its ruleset cache: 0.5-2 ms);
  // when that fails it runs the same change through libnftables, whose error is the one returned.
  Status addElements(const std::string& tag, const std::vector<SandboxNetwork>& networks);
  Status removeElements(const std::string& tag, const std::vector<SandboxNetwork>& networks);

 private:
  explicit Nftables(nft_ctx* context) : context_(context) {}

  std::mutex mutex_;
  nft_ctx* context_;
};

// "clrk_<tag>" / "clrk6_<tag>".
std::string ipTableName(const std::string& tag);
std::string ip6TableName(const std::string& tag);

// Replaces both tables of the tag (sets emptied) with the base rules; one transaction.
std::string tablesCommand(const NetworkOptions& options);
// Deletes both tables of the tag; succeeds when they do not exist.
std::string destroyTablesCommand(const std::string& tag);
// Adds (or removes, idempotently) the set elements of one sandbox network.
std::string addElementsCommand(const std::string& tag, const SandboxNetwork& network);
std::string removeElementsCommand(const std::string& tag, const SandboxNetwork& network);
// Empties the per-sandbox sets.
std::string flushSetsCommand(const std::string& tag);

}  // namespace clrk::sandbox::net
