// The `clrk` command line; all logic lives in clrk::cli.
#include "clrk/cli/cli.h"

int main(int argc, char** argv) { return clrk::cli::run(argc, argv); }
