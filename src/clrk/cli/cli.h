// The `clrk` command line: global flags and one file per verb (apply, get, delete, secret, dev).
// Thread model: run() is called once from main().
#pragma once

namespace clrk::cli {

// Parses `argv` and runs the verb. Returns the process exit code: 0 ok, 1 error, 2 usage.
int run(int argc, char** argv);

}  // namespace clrk::cli
