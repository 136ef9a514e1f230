#include "clrk/cli/cli.h"

#include "clrk/base/log.h"
#include "clrk/cli/common.h"

#include <iostream>

namespace clrk::cli {

int run(int argc, char** argv) {
  CLI::App app{"clrk: a Kubernetes-native runtime for LLM agents", "clrk"};
  app.require_subcommand(1);
  Globals globals;
  app.add_option("--kubeconfig", globals.kubeconfig, "Path to the kubeconfig file");
  app.add_option("--context", globals.context, "The kubeconfig context to use");
  app.add_flag("--local", globals.local,
               "Use the local stack's kubeconfig ($CLRK_HOME/kubeconfig.host)");
  app.add_option("-n,--namespace", globals.namespace_name,
                 "Namespace (default: the context's namespace, else \"default\")");
  app.add_option("-v,--log-level", globals.log_level, "Log level: trace|debug|info|warn|error|off");
  app.parse_complete_callback([&globals] {
    if (!setLogLevel(globals.log_level)) {
      throw CLI::ValidationError("--log-level", "unknown log level \"" + globals.log_level + "\"");
    }
  });

  addApplyCommand(app, globals);
  addGetCommand(app, globals);
  addDeleteCommand(app, globals);
  addSecretCommand(app, globals);
  addDevCommand(app, globals);
  addEgressCommand(app, globals);
  addRunTaskCommand(app, globals);
  addLogsCommand(app, globals);
  addTracesCommand(app, globals);
  addStatusCommand(app, globals);
  addInstallCommand(app, globals);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "error: " << e.what() << "\n"
              << "Run 'clrk --help' for usage.\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitError;
  }
  return globals.exit_code;
}

}  // namespace clrk::cli
