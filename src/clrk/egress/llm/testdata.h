// Test helper: reads a fixture from testdata/ (path compiled in by CMake).
#pragma once

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace clrk::egress::llm::testing {

inline std::string readTestdata(const std::string& name) {
  std::ifstream in(std::string(CLRK_LLM_TESTDATA) + "/" + name, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace clrk::egress::llm::testing
