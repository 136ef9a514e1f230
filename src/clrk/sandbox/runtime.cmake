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

# The first process of booted sandboxes (launcher/launcher_main.cc): static, so it runs in any
# root filesystem, and next to clrk-worker, where findLauncher() looks. No sanitizers: they do
# not link statically.
add_executable(clrk-sandbox-launcher ${CMAKE_CURRENT_LIST_DIR}/launcher/launcher_main.cc)
target_compile_options(clrk-sandbox-launcher PRIVATE ${CLRK_WARNINGS} -fno-sanitize=all)
target_link_options(clrk-sandbox-launcher PRIVATE -static -fno-sanitize=all)
set_target_properties(clrk-sandbox-launcher PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/src/exe)
target_compile_definitions(clrk_sandbox PRIVATE
  CLRK_BUILT_LAUNCHER="$<TARGET_FILE:clrk-sandbox-launcher>")
add_dependencies(clrk_sandbox clrk-sandbox-launcher)
