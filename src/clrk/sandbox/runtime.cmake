# clrk::sandbox: the Runtime contract (runtime.h) with the gvisor and namespaces backends.
find_library(CLRK_SECCOMP_LIB seccomp REQUIRED)

clrk_library(sandbox SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/runtime.cc
  ${CMAKE_CURRENT_LIST_DIR}/sandbox_util.cc
  ${CMAKE_CURRENT_LIST_DIR}/cgroups.cc
  ${CMAKE_CURRENT_LIST_DIR}/state_dir.cc
  ${CMAKE_CURRENT_LIST_DIR}/supervised_sandbox.cc
  ${CMAKE_CURRENT_LIST_DIR}/namespaces/namespaces_runtime.cc
  ${CMAKE_CURRENT_LIST_DIR}/gvisor/gvisor_runtime.cc
  DEPS clrk::base nlohmann_json::nlohmann_json ${CLRK_SECCOMP_LIB})

clrk_test(${CMAKE_CURRENT_LIST_DIR}/runtime_test.cc DEPS clrk::sandbox TIMEOUT 120 LABELS root)
clrk_test(${CMAKE_CURRENT_LIST_DIR}/sandbox_util_test.cc DEPS clrk::sandbox)
