// libFuzzer target for the DNS wire parser and the builders fed from its output: nothing may
// crash, read out of bounds or loop; every accepted query must produce a well-formed response.
#include "clrk/egress/dns/message.h"
#include "clrk/egress/dns/responder.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

namespace {

using namespace clrk::egress::dns;

// The full resolver path too: a small table that recycles constantly, a policy that varies.
const Responder& responder() {
  static NameTable* table = [] {
    NameTable::Options options;
    options.cidr = "10.77.0.0/28";
    options.capacity = 4;
    options.min_reuse_age = std::chrono::seconds(0);
    return NameTable::create(options).value().release();
  }();
  static const Responder* r = new Responder(
      *table,
      [](const std::string& name, const std::string&) {
        switch (name.size() % 3) {
          case 0:
            return Answer::kSynthetic;
          case 1:
            return Answer::kNxDomain;
          default:
            return Answer::kRefused;
        }
      },
      Responder::Options{});
  return *r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> packet(data, size);
  auto reply = responder().respond(packet, "10.200.0.2", 5353);
  if (!reply.empty() && (reply.size() < kHeaderSize || reply.size() > 512)) std::abort();
  if (size >= kHeaderSize && (data[2] & 0x80) == 0 && reply.empty()) std::abort();
  auto query = parseQuery(packet);
  auto error = buildError(packet, kRcodeFormErr);
  if (size >= kHeaderSize && (data[2] & 0x80) == 0 && error.size() != kHeaderSize) std::abort();
  if (!query.ok()) return 0;
  if (query->question.name.size() > 253) std::abort();
  const std::array<uint8_t, 4> addr = {198, 18, 0, 1};
  auto response = buildResponse(*query, kRcodeNoError, std::span(&addr, 1), 30);
  auto ptr =
      buildPtrResponse(*query, query->question.name.empty() ? "x" : query->question.name, 30);
  const size_t limit = query->has_edns ? std::max<size_t>(512, query->edns_udp_size) : 512;
  if (response.size() > limit || ptr.size() > limit || response.size() < kHeaderSize) std::abort();
  // The response is a well-formed message: it must parse as a query once QR is cleared.
  response[2] &= 0x7F;
  auto reparsed = parseQuery(response);
  if (!reparsed.ok() || reparsed->question.name != query->question.name ||
      reparsed->question.type != query->question.type || reparsed->id != query->id) {
    std::abort();
  }
  return 0;
}
