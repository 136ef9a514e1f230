# One-line helpers to declare libraries, tests, fuzzers and benchmarks.

set(CLRK_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
    -Wcast-align -Woverloaded-virtual -Wnull-dereference -Wimplicit-fallthrough)
if(CLRK_WERROR)
  list(APPEND CLRK_WARNINGS -Werror)
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # GCC 12 false positives inside Boost/nlohmann headers once optimised (-O2 inlining).
  list(APPEND CLRK_WARNINGS -Wno-maybe-uninitialized -Wno-stringop-overflow)
  if(NOT CMAKE_BUILD_TYPE STREQUAL "Debug")
    list(REMOVE_ITEM CLRK_WARNINGS -Wnull-dereference)
    # GCC 12 at -O2: a false positive on Boost.Asio's awaitable frame operator delete
    # (egress/metadata_session.cc).
    list(APPEND CLRK_WARNINGS -Wno-mismatched-new-delete)
  endif()
endif()

if(CLRK_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

# The servers' allocator. glibc malloc costs the egress data plane about a fifth of its CPU per
# proxied request (bench/egress README); tcmalloc's per-thread caches do not. Sanitizer builds keep
# the system allocator (ASan replaces it). CLRK_ALLOCATOR: tcmalloc (the default where
# libtcmalloc-minimal4 is installed) or system.
set(CLRK_ALLOCATOR "tcmalloc" CACHE STRING "Allocator linked into the servers: tcmalloc or system")
set_property(CACHE CLRK_ALLOCATOR PROPERTY STRINGS tcmalloc system)
set(CLRK_ALLOCATOR_LIBRARY "")
if(CLRK_ALLOCATOR STREQUAL "tcmalloc" AND NOT CLRK_SANITIZE)
  find_library(CLRK_TCMALLOC_LIBRARY NAMES tcmalloc_minimal libtcmalloc_minimal.so.4)
  if(CLRK_TCMALLOC_LIBRARY)
    set(CLRK_ALLOCATOR_LIBRARY ${CLRK_TCMALLOC_LIBRARY})
  else()
    message(STATUS "clrk: libtcmalloc-minimal4 not found; the servers use the system allocator")
  endif()
endif()

# clrk_use_server_allocator(TARGET): links the allocator chosen above into an executable. Nothing
# names its symbols, so it is kept with --no-as-needed; its malloc then interposes glibc's.
function(clrk_use_server_allocator target)
  if(CLRK_ALLOCATOR_LIBRARY)
    target_link_libraries(${target} PRIVATE
      -Wl,--push-state,--no-as-needed ${CLRK_ALLOCATOR_LIBRARY} -Wl,--pop-state)
  endif()
endfunction()

# clrk_library(NAME SOURCES a.cc b.cc DEPS clrk::base ...): a static library aliased clrk::NAME.
function(clrk_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(clrk_${name} STATIC ${ARG_SOURCES})
  add_library(clrk::${name} ALIAS clrk_${name})
  target_compile_options(clrk_${name} PRIVATE ${CLRK_WARNINGS})
  target_link_libraries(clrk_${name} PUBLIC ${ARG_DEPS})
endfunction()

# clrk_test(foo_test.cc [more.cc] DEPS clrk::x [LABELS l]): a GoogleTest binary registered with CTest.
function(clrk_test first)
  cmake_parse_arguments(ARG "" "TIMEOUT" "DEPS;LABELS;SOURCES" ${ARGN})
  get_filename_component(name ${first} NAME_WE)
  add_executable(${name} ${first} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${CLRK_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "CLRK_BUILD_DIR=${PROJECT_BINARY_DIR};CLRK_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  if(ARG_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()

# clrk_fuzz(foo_fuzz.cc CORPUS dir DEPS ...): with CLRK_FUZZ a libFuzzer binary; otherwise a
# replay driver that runs every corpus file through the target as a regular test.
function(clrk_fuzz first)
  cmake_parse_arguments(ARG "" "CORPUS" "DEPS" ${ARGN})
  get_filename_component(name ${first} NAME_WE)
  add_executable(${name} ${first})
  target_compile_options(${name} PRIVATE ${CLRK_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  if(CLRK_FUZZ)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    file(WRITE ${PROJECT_BINARY_DIR}/${name}.corpus ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_CORPUS})
  else()
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/fuzz/replay_main.cc)
    add_test(NAME ${name}_corpus COMMAND ${name} ${CMAKE_CURRENT_SOURCE_DIR}/${ARG_CORPUS})
  endif()
endfunction()

# clrk_bench(foo_bench.cc DEPS ...): a benchmark binary (not a test; prints figures).
function(clrk_bench first)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  get_filename_component(name ${first} NAME_WE)
  add_executable(${name} ${first})
  target_compile_options(${name} PRIVATE ${CLRK_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()
