// clrk-gen-crds: writes deploy/crds/<plural>.<group>.yaml for every clrk.apoxy.dev type.
// Usage: clrk-gen-crds <output-directory>
#include "clrk/api/generate.h"
#include "clrk/base/files.h"

#include <filesystem>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: clrk-gen-crds <output-directory>\n";
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::cerr << "clrk-gen-crds: cannot create " << dir << ": " << ec.message() << "\n";
    return 1;
  }
  int written = 0;
  for (const auto& type : clrk::api::Registry::builtin().types()) {
    if (type.group != clrk::api::kGroup) continue;
    std::filesystem::path file = dir / (type.qualifiedName() + ".yaml");
    clrk::Status status = clrk::writeFileAtomic(file, clrk::api::crdYaml(type), 0644);
    if (!status.ok()) {
      std::cerr << "clrk-gen-crds: " << status.message() << "\n";
      return 1;
    }
    std::cout << "wrote " << file.string() << "\n";
    ++written;
  }
  std::cout << written << " CRDs\n";
  return 0;
}
