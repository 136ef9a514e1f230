// Replay driver for libFuzzer targets in non-fuzz builds: runs every file under the given paths
// through LLVMFuzzerTestOneInput, so each seed corpus is a regression test.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

int runFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int ran = 0;
  for (int arg_idx = 1; arg_idx < argc; ++arg_idx) {
    std::filesystem::path root(argv[arg_idx]);
    if (std::filesystem::is_directory(root)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
        if (entry.is_regular_file()) ran += runFile(entry.path());
      }
    } else if (std::filesystem::is_regular_file(root)) {
      ran += runFile(root);
    } else {
      std::fprintf(stderr, "replay: %s: no such file or directory\n", root.c_str());
      return 2;
    }
  }
  std::printf("replayed %d inputs\n", ran);
  return ran > 0 ? 0 : 1;
}
