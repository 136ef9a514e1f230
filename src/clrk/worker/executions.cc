#include "clrk/worker/executions.h"

#include "clrk/base/ids.h"
#include "clrk/base/log.h"
#include "clrk/base/time.h"

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <deque>
#include <filesystem>
#include <unistd.h>

namespace clrk::worker {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::string_view kFullMessage = "worker is full";
constexpr size_t kStderrTailBytes = 64 * 1024;
constexpr uint32_t kHostRootfsUid = 65534;  // nobody/nogroup on Debian
}  // namespace

struct ExecutionManager::Execution {
  ExecutionRequest request;
  mutable std::mutex mutex;
  mutable std::condition_variable cv;
  ExecutionStatus status;
  std::deque<LogEntry> logs;
  size_t logs_base = 0;  // index of logs.front()
  bool stop_requested = false;
  Clock::time_point stop_requested_at;
  std::shared_ptr<sandbox::Sandbox> sandbox;  // while started
  bool cleaned_up = false;                    // terminal and every resource released
  Clock::time_point finished_at;
  std::thread thread;
};

ExecutionManager::ExecutionManager(ExecutionManagerOptions options, sandbox::Runtime& runtime,
                                   sandbox::net::NetworkManager* network,
                                   sandbox::image::ImageStore* images,
                                   egress::IdentityMap* identities, egress::MetadataStore* metadata,
                                   PullAuthResolver pull_auth)
    : options_(std::move(options)),
      runtime_(runtime),
      network_(network),
      images_(images),
      identities_(identities),
      metadata_(metadata),
      pull_auth_(std::move(pull_auth)) {
  if (options_.max_executions < 1) options_.max_executions = 1;
  janitor_ = std::thread([this] { janitorLoop(); });
  WarmPoolOptions warm;
  warm.max_executions = options_.max_executions;
  warm.busy = [this] { return running() > 0; };
  warm_pool_ = std::make_unique<WarmPool>(
      warm, runtime_, network_,
      [this](const ExecutionRequest& request) { return sandboxSpecFor(request); });
}

void ExecutionManager::setWarmPools(std::vector<WarmPoolSpec> pools) {
  warm_pool_->setDesired(std::move(pools));
}

std::vector<WarmPoolState> ExecutionManager::warmPools() const { return warm_pool_->states(); }

ExecutionManager::~ExecutionManager() {
  warm_pool_->stop();
  drain(std::chrono::milliseconds(0));
  {
    std::lock_guard identity_lock(identity_mutex_);  // janitor order: identity_mutex_, mutex_
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  janitor_cv_.notify_all();
  if (janitor_.joinable()) janitor_.join();
  std::vector<std::shared_ptr<Execution>> all;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, execution] : executions_) all.push_back(execution);
  }
  for (auto& execution : all) {
    if (execution->thread.joinable()) execution->thread.join();
  }
  // Identities whose linger had not passed yet.
  std::lock_guard identity_lock(identity_mutex_);
  if (identities_ != nullptr) {
    for (const auto& removal : removals_) identities_->remove(removal.address);
  }
  removals_.clear();
}

bool ExecutionManager::isFullError(const Status& status) {
  return status.code() == Code::Unavailable && status.message().rfind(kFullMessage, 0) == 0;
}

void ExecutionManager::setOnChange(std::function<void()> on_change) {
  std::lock_guard lock(mutex_);
  on_change_ = std::move(on_change);
}

uint64_t ExecutionManager::addListener(std::function<void()> listener) {
  std::lock_guard lock(listeners_mutex_);
  uint64_t id = next_listener_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

// Listeners run under listeners_mutex_, so once this returns none of them runs or will run.
void ExecutionManager::removeListener(uint64_t id) {
  std::lock_guard lock(listeners_mutex_);
  listeners_.erase(id);
}

void ExecutionManager::notifyChange() {
  std::function<void()> callback;
  {
    std::lock_guard lock(mutex_);
    callback = on_change_;
  }
  if (callback) callback();
  std::lock_guard lock(listeners_mutex_);
  for (const auto& [id, listener] : listeners_) listener();
}

Result<ExecutionStatus> ExecutionManager::submit(ExecutionRequest request) {
  if (!isValidExecutionId(request.execution_id)) {
    return invalidArgument("executionId: \"" + request.execution_id + "\" is not valid");
  }
  if (request.image.empty()) return invalidArgument("image: required");
  if (request.command.empty() && request.args.empty() && request.image == "host") {
    return invalidArgument("command: required with image \"host\" (it has no entrypoint)");
  }
  if (request.delivery_mode == DeliveryMode::Metadata) {
    if (request.stdin_data) {
      return invalidArgument("stdin: must be absent with deliveryMode Metadata");
    }
    if (request.event.empty()) {
      return invalidArgument("event: required with deliveryMode Metadata");
    }
  }
  auto execution = std::make_shared<Execution>();
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || draining_) {
      return Status(Code::Unavailable, "worker is draining: not accepting executions");
    }
    if (executions_.count(request.execution_id) != 0) {
      return Status(Code::AlreadyExists,
                    "execution \"" + request.execution_id + "\" already exists on this worker");
    }
    int active = 0;
    for (const auto& [id, other] : executions_) {
      std::lock_guard other_lock(other->mutex);
      if (!other->cleaned_up) ++active;
    }
    if (active >= options_.max_executions) {
      return Status(Code::Unavailable, fmt::format("{}: {} of {} executions running", kFullMessage,
                                                   active, options_.max_executions));
    }
    execution->status.execution_id = request.execution_id;
    execution->status.namespace_name = request.namespace_name;
    execution->status.agent = request.agent;
    execution->status.request_id = request.request_id;
    execution->status.phase = Phase::Pending;
    execution->status.message = "accepted";
    execution->request = std::move(request);
    executions_[execution->status.execution_id] = execution;
    execution->thread = std::thread([this, execution] { run(execution); });
  }
  prune();
  notifyChange();
  std::lock_guard lock(execution->mutex);
  return execution->status;
}

std::optional<ExecutionStatus> ExecutionManager::get(const std::string& id) const {
  std::shared_ptr<Execution> execution;
  {
    std::lock_guard lock(mutex_);
    auto it = executions_.find(id);
    if (it == executions_.end()) return std::nullopt;
    execution = it->second;
  }
  std::lock_guard lock(execution->mutex);
  return execution->status;
}

std::optional<ExecutionStatus> ExecutionManager::waitTerminal(
    const std::string& id, std::chrono::milliseconds timeout) const {
  std::shared_ptr<Execution> execution;
  {
    std::lock_guard lock(mutex_);
    auto it = executions_.find(id);
    if (it == executions_.end()) return std::nullopt;
    execution = it->second;
  }
  std::unique_lock lock(execution->mutex);
  execution->cv.wait_for(lock, timeout, [&] { return isTerminal(execution->status.phase); });
  return execution->status;
}

Result<ExecutionStatus> ExecutionManager::stop(const std::string& id) {
  std::shared_ptr<Execution> execution;
  {
    std::lock_guard lock(mutex_);
    auto it = executions_.find(id);
    if (it == executions_.end()) return notFound("execution \"" + id + "\" not found");
    execution = it->second;
  }
  std::shared_ptr<sandbox::Sandbox> sandbox;
  {
    std::lock_guard lock(execution->mutex);
    if (isTerminal(execution->status.phase)) return execution->status;
    if (!execution->stop_requested) {
      execution->stop_requested = true;
      execution->stop_requested_at = Clock::now();
      sandbox = execution->sandbox;
    }
  }
  if (sandbox) {
    Status signalled = sandbox->signal(SIGTERM);
    if (!signalled.ok()) {
      logger("worker")->warn("execution {}: SIGTERM: {}", id, signalled.toString());
    }
  }
  execution->cv.notify_all();
  std::lock_guard lock(execution->mutex);
  return execution->status;
}

std::vector<ExecutionStatus> ExecutionManager::list() const {
  std::vector<std::shared_ptr<Execution>> all;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, execution] : executions_) all.push_back(execution);
  }
  std::vector<ExecutionStatus> out;
  out.reserve(all.size());
  for (const auto& execution : all) {
    std::lock_guard lock(execution->mutex);
    out.push_back(execution->status);
  }
  return out;
}

std::optional<ExecutionManager::LogSlice> ExecutionManager::logs(const std::string& id, size_t from,
                                                                 size_t max) const {
  std::shared_ptr<Execution> execution;
  {
    std::lock_guard lock(mutex_);
    auto it = executions_.find(id);
    if (it == executions_.end()) return std::nullopt;
    execution = it->second;
  }
  std::lock_guard lock(execution->mutex);
  LogSlice slice;
  size_t start = std::max(from, execution->logs_base);
  size_t end = execution->logs_base + execution->logs.size();
  for (size_t i = start; i < end && slice.entries.size() < max; ++i) {
    slice.entries.push_back(execution->logs[i - execution->logs_base]);
  }
  slice.next = start + slice.entries.size();
  slice.finished = isTerminal(execution->status.phase) && slice.next >= end;
  return slice;
}

void ExecutionManager::setDraining() {
  {
    std::lock_guard lock(mutex_);
    draining_ = true;
  }
  warm_pool_->stop();
}

bool ExecutionManager::draining() const {
  std::lock_guard lock(mutex_);
  return draining_;
}

int ExecutionManager::running() const {
  std::lock_guard lock(mutex_);
  int count = 0;
  for (const auto& [id, execution] : executions_) {
    std::lock_guard execution_lock(execution->mutex);
    if (!execution->cleaned_up) ++count;
  }
  return count;
}

WorkerCapacity ExecutionManager::capacity() const {
  WorkerCapacity c;
  c.max_executions = options_.max_executions;
  c.running = running();
  c.free = std::max(0, c.max_executions - c.running);
  c.runtime = runtime_.name();
  c.limits_support = runtime_.limitsSupport();
  c.cpu = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page_size > 0) c.memory_bytes = static_cast<int64_t>(pages) * page_size;
  return c;
}

int ExecutionManager::drain(std::chrono::milliseconds timeout) {
  setDraining();
  auto deadline = Clock::now() + timeout;
  while (running() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int stopped = 0;
  for (const auto& status : list()) {
    if (isTerminal(status.phase)) continue;
    if (stop(status.execution_id).ok()) ++stopped;
  }
  // Each stop escalates to SIGKILL after stop_grace; the threads then clean up.
  std::vector<std::shared_ptr<Execution>> all;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, execution] : executions_) all.push_back(execution);
  }
  for (auto& execution : all) {
    std::unique_lock lock(execution->mutex);
    execution->cv.wait_for(lock, options_.stop_grace + std::chrono::seconds(30),
                           [&] { return execution->cleaned_up; });
  }
  return stopped;
}

void ExecutionManager::finish(Execution& execution, Phase phase, std::optional<int> exit_code,
                              std::string message) {
  {
    std::lock_guard lock(execution.mutex);
    if (isTerminal(execution.status.phase)) return;
    execution.status.phase = phase;
    execution.status.exit_code = exit_code;
    execution.status.message = std::move(message);
    if (execution.status.finished_at.empty()) {
      execution.status.finished_at = formatRfc3339Micro(std::chrono::system_clock::now());
    }
    execution.finished_at = Clock::now();
  }
  // Waiters (waitTerminal, the API's long polls) answer now, before the clean-up that follows.
  execution.cv.notify_all();
  notifyChange();
}

void ExecutionManager::run(const std::shared_ptr<Execution>& execution) {
  try {
    lifecycle(execution);
  } catch (const std::exception& e) {
    finish(*execution, Phase::Failed, std::nullopt, std::string("internal error: ") + e.what());
  } catch (...) {
    finish(*execution, Phase::Failed, std::nullopt, "internal error");
  }
  {
    std::lock_guard lock(execution->mutex);
    execution->cleaned_up = true;
    if (!isTerminal(execution->status.phase)) {
      execution->status.phase = Phase::Failed;
      execution->status.message = "internal error: lifecycle ended without a result";
    }
  }
  execution->cv.notify_all();
  notifyChange();
  warm_pool_->nudge();  // boots wait while executions run
}

Result<sandbox::SandboxSpec> ExecutionManager::sandboxSpecFor(
    const ExecutionRequest& request,
    const std::function<void(const std::string&)>& progress) const {
  // 1. Root filesystem and the image's defaults.
  sandbox::SandboxSpec spec;
  std::vector<std::string> image_env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> image_cmd;
  std::string image_workdir;
  if (request.image == "host") {
    spec.rootfs_kind = sandbox::RootfsKind::Host;
  } else if (request.image.rfind("dir:", 0) == 0) {
    spec.rootfs_kind = sandbox::RootfsKind::Directory;
    spec.rootfs_dir = request.image.substr(4);
    std::error_code ec;
    if (!fs::is_directory(spec.rootfs_dir, ec)) {
      return Status(Code::InvalidArgument,
                    "image: " + spec.rootfs_dir.string() + " is not a directory on the worker");
    }
  } else {
    if (images_ == nullptr) {
      return Status(Code::InvalidArgument,
                    "image: this worker has no image store; use \"host\" or \"dir:/path\"");
    }
    auto reference = sandbox::image::parseImageReference(request.image);
    if (!reference.ok()) {
      return Status(Code::InvalidArgument, "image: " + reference.status().message());
    }
    sandbox::image::PullOptions pull;
    pull.insecure_http =
        std::find(options_.insecure_registries.begin(), options_.insecure_registries.end(),
                  reference->registry) != options_.insecure_registries.end();
    if (!request.image_pull_secrets.empty() && pull_auth_) {
      auto auth =
          pull_auth_(request.namespace_name, request.image_pull_secrets, reference->registry);
      if (!auth.ok()) {
        return Status(Code::InvalidArgument, "imagePullSecrets: " + auth.status().message());
      }
      pull.auth = auth.value();
    }
    if (progress) progress("pulling " + request.image);
    auto pulled = images_->pull(request.image, pull);
    if (!pulled.ok()) {
      return Status(Code::InvalidArgument,
                    "pulling image " + request.image + ": " + pulled.status().message());
    }
    spec.rootfs_kind = sandbox::RootfsKind::Directory;
    spec.rootfs_dir = pulled->rootfs;
    image_env = pulled->config.env;
    entrypoint = pulled->config.entrypoint;
    image_cmd = pulled->config.cmd;
    image_workdir = pulled->config.working_dir;
  }
  if (!request.command.empty()) {
    spec.argv = request.command;
    spec.argv.insert(spec.argv.end(), request.args.begin(), request.args.end());
  } else {
    spec.argv = entrypoint;
    const auto& tail = request.args.empty() ? image_cmd : request.args;
    spec.argv.insert(spec.argv.end(), tail.begin(), tail.end());
  }
  if (spec.argv.empty()) {
    return Status(Code::InvalidArgument,
                  "command: empty, and the image defines no entrypoint or cmd");
  }
  spec.mounts.insert(spec.mounts.end(), options_.shared_mounts.begin(),
                     options_.shared_mounts.end());
  // Environment: the image's, then the request's (later entries win).
  std::map<std::string, std::string> env;
  std::vector<std::string> order;
  auto put = [&](const std::string& name, const std::string& value) {
    if (env.count(name) == 0) order.push_back(name);
    env[name] = value;
  };
  for (const auto& entry : image_env) {
    size_t eq = entry.find('=');
    if (eq != std::string::npos) put(entry.substr(0, eq), entry.substr(eq + 1));
  }
  for (const auto& var : request.env) put(var.name, var.value);
  const bool metadata_delivery = request.delivery_mode == DeliveryMode::Metadata;
  if (metadata_delivery) put("CLRK_METADATA_URL", std::string(egress::kMetadataUrl));
  if (spec.rootfs_kind == sandbox::RootfsKind::Host) {
    // The host's / is shown read-only: run as nobody so root-only host files (/etc/shadow,
    // other services' 0600 files) stay unreadable even without capabilities.
    spec.uid = kHostRootfsUid;
    spec.gid = kHostRootfsUid;
    if (env.count("HOME") == 0) put("HOME", "/tmp");
  }
  for (const auto& name : order) spec.env.push_back(name + "=" + env[name]);
  spec.working_dir = !request.working_dir.empty() ? request.working_dir
                     : !image_workdir.empty()     ? image_workdir
                                                  : "/";
  spec.ca_cert_pem = options_.ca_cert_pem;
  if (!request.resources.cpu.empty()) {
    auto cpu = parseCpuMillis(request.resources.cpu, "resources.cpu");
    if (cpu.ok()) spec.limits.cpu_millis = cpu.value();
  }
  if (!request.resources.memory.empty()) {
    auto memory = parseMemoryBytes(request.resources.memory, "resources.memory");
    if (memory.ok()) spec.limits.memory_bytes = memory.value();
  }
  spec.limits.pids = options_.default_pids_limit;
  spec.timeout = std::chrono::seconds(request.timeout_seconds);
  spec.stdin_data = metadata_delivery ? std::nullopt : request.stdin_data;
  return spec;
}

void ExecutionManager::lifecycle(const std::shared_ptr<Execution>& execution) {
  auto log = logger("worker");
  const ExecutionRequest& request = execution->request;
  const std::string& id = request.execution_id;
  std::string sandbox_id = "ex-" + randomHex(8);
  {
    std::lock_guard lock(execution->mutex);
    execution->status.sandbox_id = sandbox_id;
  }
  auto stopRequested = [&] {
    std::lock_guard lock(execution->mutex);
    return execution->stop_requested;
  };

  // 1. Root filesystem, process, limits (the image's defaults under the request's).
  auto resolved = sandboxSpecFor(request, [&execution](const std::string& message) {
    std::lock_guard lock(execution->mutex);
    execution->status.message = message;
  });
  if (!resolved.ok()) {
    finish(*execution, Phase::Failed, std::nullopt, resolved.status().message());
    return;
  }
  sandbox::SandboxSpec spec = std::move(resolved).value();
  spec.id = sandbox_id;
  const bool metadata_delivery = request.delivery_mode == DeliveryMode::Metadata;
  std::weak_ptr<Execution> weak = execution;
  size_t max_lines = options_.log_lines_max;
  spec.on_log = [weak, max_lines](const sandbox::LogLine& line) {
    auto self = weak.lock();
    if (!self) return;
    std::lock_guard lock(self->mutex);
    LogEntry entry{formatRfc3339Micro(line.time), line.is_stderr ? "stderr" : "stdout", line.text};
    if (line.is_stderr) {
      auto& tail = self->status.output.stderr_tail;
      tail += line.text;
      tail += '\n';
      if (tail.size() > kStderrTailBytes) tail.erase(0, tail.size() - kStderrTailBytes);
    } else {
      auto& out = self->status.output.stdout_text;
      if (!self->status.output.truncated) {
        if (out.size() + line.text.size() + 1 <= kMaxOutputBytes) {
          out += line.text;
          out += '\n';
        } else {
          out.append(line.text, 0, kMaxOutputBytes - std::min(kMaxOutputBytes, out.size()));
          self->status.output.truncated = true;
        }
      }
    }
    self->logs.push_back(std::move(entry));
    while (self->logs.size() > max_lines) {
      self->logs.pop_front();
      ++self->logs_base;
    }
  };

  if (stopRequested()) {
    finish(*execution, Phase::Stopped, std::nullopt, "stopped before start");
    return;
  }

  if (metadata_delivery &&
      (network_ == nullptr || identities_ == nullptr || metadata_ == nullptr)) {
    finish(*execution, Phase::Failed, std::nullopt,
           "deliveryMode Metadata: this worker runs sandboxes without the egress network, so "
           "there is no metadata endpoint; use delivery mode Stdin");
    return;
  }
  // 2. A warm sandbox of the agent's pool (network and sandbox ready), else a new network,
  // then the identity (+ the event of a Metadata delivery).
  std::optional<sandbox::net::SandboxNetwork> network;
  std::shared_ptr<sandbox::Sandbox> box;
  if (auto warm = warm_pool_->claim(request.namespace_name + "/" + request.agent,
                                    WarmPool::shapeOf(spec))) {
    sandbox_id = warm->sandbox_id;
    network = warm->network;
    box = std::move(warm->box);
    std::lock_guard lock(execution->mutex);
    execution->status.sandbox_id = sandbox_id;
  } else if (network_ != nullptr) {
    auto allocated = network_->allocate(sandbox_id);
    if (!allocated.ok()) {
      finish(*execution, Phase::Failed, std::nullopt,
             "sandbox network: " + allocated.status().message());
      return;
    }
    network = allocated.value();
  }
  if (network) {
    spec.netns_path = network->netns_path;
    {
      std::lock_guard lock(execution->mutex);
      execution->status.sandbox_address = network->sandbox_address;
    }
    if (identities_ != nullptr) {
      egress::Identity identity;
      identity.namespace_name = request.namespace_name;
      identity.agent = request.agent;
      identity.agent_kind = request.agent_kind;
      identity.agent_labels = request.agent_labels;
      identity.execution_id = id;
      identity.request_id = request.request_id;
      identity.sandbox_id = sandbox_id;
      identity.gateway = request.gateway;
      identity.caller = request.caller_identity;
      identity.caller_verified = request.caller_identity_verified;
      std::lock_guard lock(identity_mutex_);
      identities_->set(network->sandbox_address, std::move(identity));
    }
    if (metadata_delivery) metadata_->add(id, request.event);
  }
  // Once the sandbox's processes are gone (its end was seen, or it is destroyed) no request can
  // reach the endpoint any more, so the response taken here is final.
  auto takeResponse = [&] {
    if (!metadata_delivery || !network) return;
    if (auto posted = metadata_->remove(id)) {
      ExecutionResponse response;
      response.content_type = std::move(posted->content_type);
      response.bytes = static_cast<int64_t>(posted->body.size());
      response.body = std::move(posted->body);
      std::lock_guard lock(execution->mutex);
      execution->status.response = std::move(response);
    }
  };
  auto releaseNetwork = [&] {
    if (!network) return;
    takeResponse();
    Status released = network_->releaseSoon(*network);
    if (!released.ok()) {
      log->warn("execution {}: releasing network {}: {}", id, network->netns_name,
                released.toString());
    }
    if (identities_ != nullptr) scheduleIdentityRemoval(network->sandbox_address, id);
    network.reset();
  };
  auto destroySandbox = [&] {
    if (!box) return;
    Status destroyed = box->destroy();
    if (!destroyed.ok()) {
      log->warn("execution {}: destroying sandbox {}: {}", id, box->id(), destroyed.toString());
    }
    box.reset();
    std::lock_guard lock(execution->mutex);
    execution->sandbox.reset();
  };

  // 3. Sandbox: launch the warm one; a new one (or a warm one whose launcher died) is prepared
  // and started in the same network.
  Status started;
  if (box) {
    if (stopRequested()) {
      destroySandbox();
      releaseNetwork();
      finish(*execution, Phase::Stopped, std::nullopt, "stopped before start");
      return;
    }
    sandbox::Launch launch;
    launch.argv = spec.argv;
    launch.env = spec.env;
    launch.working_dir = spec.working_dir;
    launch.stdin_data = spec.stdin_data;
    launch.timeout = spec.timeout;
    launch.on_log = spec.on_log;
    started = box->launch(std::move(launch));
    if (!started.ok()) {
      log->warn("execution {}: warm sandbox {} could not launch ({}); starting a new one", id,
                sandbox_id, started.message());
      destroySandbox();
    }
  }
  if (!box) {
    auto prepared = runtime_.prepare(spec);
    if (!prepared.ok()) {
      releaseNetwork();
      finish(*execution, Phase::Failed, std::nullopt,
             "preparing the sandbox: " + prepared.status().message());
      return;
    }
    box = std::move(prepared).value();
    {
      std::lock_guard lock(execution->mutex);
      execution->status.sandbox_id = spec.id;
    }
    if (stopRequested()) {
      destroySandbox();
      releaseNetwork();
      finish(*execution, Phase::Stopped, std::nullopt, "stopped before start");
      return;
    }
    started = box->start();
  }
  if (!started.ok()) {
    destroySandbox();
    releaseNetwork();
    finish(*execution, Phase::Failed, std::nullopt, "starting the sandbox: " + started.message());
    return;
  }
  bool stop_pending = false;
  {
    std::lock_guard lock(execution->mutex);
    execution->sandbox = box;
    execution->status.phase = Phase::Running;
    execution->status.message = "running";
    execution->status.started_at = formatRfc3339Micro(std::chrono::system_clock::now());
    stop_pending = execution->stop_requested;
  }
  execution->cv.notify_all();
  notifyChange();
  if (stop_pending) (void)box->signal(SIGTERM);  // stop() raced with start()

  // 4. Wait, escalating a stop request to SIGKILL after the grace period.
  std::optional<sandbox::ExitStatus> exit;
  std::string wait_error;
  bool killed = false;
  for (;;) {
    auto waited = box->wait(std::chrono::milliseconds(200));
    if (waited.ok()) {
      exit = waited.value();
      break;
    }
    if (waited.status().code() != Code::Timeout) {
      wait_error = waited.status().message();
      break;
    }
    std::lock_guard lock(execution->mutex);
    if (execution->stop_requested && !killed &&
        Clock::now() - execution->stop_requested_at >= options_.stop_grace) {
      killed = true;
      (void)box->signal(SIGKILL);
    }
  }

  // 5. The result first (waiters answer at once), then the clean-up: the slot stays taken until
  // run() marks the execution cleaned up, so capacity never counts a sandbox twice.
  bool stopped = stopRequested();
  Phase phase = Phase::Failed;
  std::optional<int> exit_code;
  std::string message;
  if (!exit) {
    phase = stopped ? Phase::Stopped : Phase::Failed;
    message = "waiting for the sandbox: " + wait_error;
  } else {
    {
      std::lock_guard lock(execution->mutex);
      execution->status.started_at = formatRfc3339Micro(exit->started_at);
      execution->status.finished_at = formatRfc3339Micro(exit->finished_at);
    }
    phase = exit->timed_out        ? Phase::TimedOut
            : stopped              ? Phase::Stopped
            : exit->exit_code == 0 ? Phase::Succeeded
                                   : Phase::Failed;
    exit_code = exit->exit_code;
    message = exit->message;
    if (message.empty()) message = fmt::format("exited {}", exit->exit_code);
    if (exit->oom_killed) message += " (out of memory)";
    if (phase == Phase::Stopped) message = "stopped: " + message;
  }
  if (exit) takeResponse();  // the process tree has ended: nothing can post any more
  finish(*execution, phase, exit_code, message);
  log->info("execution {} ({}/{}) {}: {}", id, request.namespace_name, request.agent,
            phaseName(phase), message);
  destroySandbox();
  releaseNetwork();
}

void ExecutionManager::scheduleIdentityRemoval(const std::string& address,
                                               const std::string& execution_id) {
  {
    std::lock_guard lock(identity_mutex_);
    removals_.push_back({Clock::now() + options_.identity_linger, address, execution_id});
  }
  janitor_cv_.notify_all();
}

void ExecutionManager::janitorLoop() {
  std::unique_lock lock(identity_mutex_);
  for (;;) {
    auto now = Clock::now();
    auto next = now + std::chrono::seconds(10);
    for (auto it = removals_.begin(); it != removals_.end();) {
      if (it->due <= now) {
        // Remove only if the address still maps to this execution (it may have been reused).
        auto current = identities_->lookup(it->address);
        if (current && current->execution_id == it->execution_id) {
          identities_->remove(it->address);
        }
        it = removals_.erase(it);
      } else {
        next = std::min(next, it->due);
        ++it;
      }
    }
    bool stop = false;
    {
      // mutex_ is never held while taking identity_mutex_, so this order is safe.
      std::lock_guard state_lock(mutex_);
      stop = stopping_;
    }
    if (stop) return;
    janitor_cv_.wait_until(lock, next);
    lock.unlock();
    prune();
    lock.lock();
  }
}

void ExecutionManager::prune() {
  std::vector<std::shared_ptr<Execution>> removed;
  {
    std::lock_guard lock(mutex_);
    auto now = Clock::now();
    std::vector<std::pair<Clock::time_point, std::string>> finished;
    for (const auto& [id, execution] : executions_) {
      std::lock_guard execution_lock(execution->mutex);
      if (execution->cleaned_up) finished.emplace_back(execution->finished_at, id);
    }
    std::sort(finished.begin(), finished.end());
    size_t excess =
        finished.size() > options_.max_retained ? finished.size() - options_.max_retained : 0;
    for (size_t i = 0; i < finished.size(); ++i) {
      if (i < excess || now - finished[i].first > options_.retention) {
        auto it = executions_.find(finished[i].second);
        removed.push_back(it->second);
        executions_.erase(it);
      }
    }
  }
  for (auto& execution : removed) {
    if (execution->thread.joinable()) execution->thread.join();
  }
  discardOldResponses();
}

// Keeps the response bodies of finished executions within max_retained_response_bytes, newest
// first; older ones are dropped (the execution itself stays readable). A terminal execution's
// response is final (taken before finish()), even while its clean-up still runs.
void ExecutionManager::discardOldResponses() {
  std::vector<std::pair<Clock::time_point, std::shared_ptr<Execution>>> finished;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, execution] : executions_) {
      std::lock_guard execution_lock(execution->mutex);
      if (isTerminal(execution->status.phase) && execution->status.response &&
          !execution->status.response->body.empty()) {
        finished.emplace_back(execution->finished_at, execution);
      }
    }
  }
  std::sort(finished.begin(), finished.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  size_t kept = 0;
  for (auto& [finished_at, execution] : finished) {
    std::lock_guard lock(execution->mutex);
    auto& response = *execution->status.response;
    if (kept + response.body.size() <= options_.max_retained_response_bytes) {
      kept += response.body.size();
      continue;
    }
    response.body.clear();
    response.body.shrink_to_fit();
    response.discarded = true;
  }
}

Result<sandbox::BindMount> parseShare(std::string_view text) {
  std::string value(text);
  bool writable = false;
  if (value.size() > 3 && value.compare(value.size() - 3, 3, ":rw") == 0) {
    writable = true;
    value.resize(value.size() - 3);
  } else if (value.size() > 3 && value.compare(value.size() - 3, 3, ":ro") == 0) {
    value.resize(value.size() - 3);
  }
  size_t colon = value.find(':');
  std::string host = value.substr(0, colon);
  std::string inside = colon == std::string::npos ? "" : value.substr(colon + 1);
  if (host.empty() || host.front() != '/' || inside.empty() || inside.front() != '/') {
    return invalidArgument("--share \"" + std::string(text) +
                           "\": want HOST_DIR:SANDBOX_PATH[:rw] with absolute paths");
  }
  if (inside == "/" || inside.find("/..") != std::string::npos) {
    return invalidArgument("--share \"" + std::string(text) + "\": sandbox path " + inside +
                           " is not allowed");
  }
  std::error_code ec;
  if (!fs::is_directory(host, ec)) {
    return invalidArgument("--share \"" + std::string(text) + "\": " + host +
                           " is not a directory");
  }
  return sandbox::BindMount{fs::canonical(host, ec), inside, !writable};
}

}  // namespace clrk::worker
