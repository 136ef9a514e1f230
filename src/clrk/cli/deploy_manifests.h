// The deploy/ manifests, embedded into the binary at build time (cmake/embed_deploy.cmake) so
// `clrk install` works from anywhere.
#pragma once

#include <string_view>
#include <vector>

namespace clrk::cli {

struct ManifestFile {
  std::string_view path;  // relative to deploy/: "namespace.yaml", "crds/x.clrk.apoxy.dev.yaml"
  std::string_view text;
};

// Every deploy/**/*.yaml, sorted by path.
const std::vector<ManifestFile>& deployManifests();

}  // namespace clrk::cli
