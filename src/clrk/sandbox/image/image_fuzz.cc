// Fuzzes the parsers that see registry and user bytes: manifests/indexes, image configs,
// WWW-Authenticate challenges, image references and .dockerconfigjson. The first byte picks the
// parser; every parser must return a Status, never crash, and accepted values must round-trip.
#include "clrk/sandbox/image/image_store.h"
#include "clrk/sandbox/image/manifest.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using namespace clrk::sandbox::image;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      auto manifest = parseManifest(input, "");
      if (manifest.ok() && manifest->kind == ManifestKind::Index) {
        (void)selectPlatform(*manifest, "linux", "amd64", "");
      }
      if (manifest.ok() && manifest->kind == ManifestKind::Image) {
        for (const Descriptor& layer : manifest->layers) {
          if (!checkDigest(layer.digest).empty() || !isSupportedLayerType(layer.media_type)) {
            std::abort();  // accepted manifests only hold validated layers
          }
        }
      }
      break;
    }
    case 1:
      (void)parseImageConfig(input);
      break;
    case 2:
      (void)parseAuthChallenge(input);
      break;
    case 3: {
      auto ref = parseImageReference(input);
      if (ref.ok()) {
        // A normalised reference parses to itself.
        auto again = parseImageReference(ref->str());
        if (!again.ok() || again->str() != ref->str()) std::abort();
      }
      break;
    }
    case 4:
      (void)parseDockerConfigJson(input);
      break;
  }
  return 0;
}
