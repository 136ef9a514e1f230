#include "clrk/kube/fake_server_for_test.h"

#include <arpa/inet.h>
#include <chrono>
#include <cstring>
#include <netinet/in.h>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

namespace clrk::kube::testing {
namespace {

using nlohmann::json;

bool writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

struct Request {
  std::string method, target, path, body, content_type, authorization;
  std::map<std::string, std::string> query;
};

// Reads one request; false on EOF/error.
bool readRequest(int fd, std::string& buffer, Request& req) {
  size_t end;
  while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
    char chunk[4096];
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  std::istringstream head(buffer.substr(0, end));
  std::string line;
  std::getline(head, line);
  std::istringstream first(line);
  std::string version;
  first >> req.method >> req.target >> version;
  size_t content_length = 0;
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(c));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (name == "content-length") content_length = std::stoul(value);
    if (name == "content-type") req.content_type = value;
    if (name == "authorization") req.authorization = value;
  }
  buffer.erase(0, end + 4);
  while (buffer.size() < content_length) {
    char chunk[4096];
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  req.body = buffer.substr(0, content_length);
  buffer.erase(0, content_length);
  size_t q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) {
    std::istringstream qs(req.target.substr(q + 1));
    std::string kv;
    while (std::getline(qs, kv, '&')) {
      size_t eq = kv.find('=');
      std::string key = kv.substr(0, eq);
      std::string value = eq == std::string::npos ? "" : kv.substr(eq + 1);
      std::string decoded;
      for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '%' && i + 2 < value.size()) {
          decoded.push_back(static_cast<char>(std::stoi(value.substr(i + 1, 2), nullptr, 16)));
          i += 2;
        } else {
          decoded.push_back(value[i]);
        }
      }
      req.query[key] = decoded;
    }
  }
  return true;
}

bool respond(int fd, int status, const json& body) {
  std::string text = body.dump();
  std::string head =
      "HTTP/1.1 " + std::to_string(status) +
      " X\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(text.size()) +
      "\r\n\r\n";
  return writeAll(fd, head + text);
}

json statusBody(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
          {"status", "Failure"}, {"message", message}, {"reason", reason},
          {"code", code}};
}

bool sendChunk(int fd, const std::string& data) {
  std::ostringstream size;
  size << std::hex << data.size();
  return writeAll(fd, size.str() + "\r\n" + data + "\r\n");
}

}  // namespace

FakeServer::FakeServer(std::string token) : token_(std::move(token)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(listen_fd_, 64);
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  accept_thread_ = std::thread([this] { acceptLoop(); });
}

FakeServer::~FakeServer() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  {
    std::lock_guard lock(mutex_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }
  cv_.notify_all();
  accept_thread_.join();
  for (auto& t : threads_) t.join();
  for (int fd : fds_) ::close(fd);
}

std::string FakeServer::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

void FakeServer::acceptLoop() {
  while (!stopping_) {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    std::lock_guard lock(mutex_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    ++connections_;
    fds_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void FakeServer::compact() {
  {
    std::lock_guard lock(mutex_);
    compacted_rv_ = rv_;
    ++generation_;
  }
  cv_.notify_all();
}

void FakeServer::bookmark() {
  {
    std::lock_guard lock(mutex_);
    ++bookmarks_;
  }
  cv_.notify_all();
}

int64_t FakeServer::resourceVersion() const {
  std::lock_guard lock(mutex_);
  return rv_;
}

std::vector<std::string> FakeServer::watchTargets() const {
  std::lock_guard lock(mutex_);
  return watch_targets_;
}

void FakeServer::record(const std::string& type, const std::string& collection,
                        const std::string& ns, json object) {
  events_.push_back({rv_, type, collection, ns, std::move(object)});
  cv_.notify_all();
}

void FakeServer::put(const std::string& path_key, json object, bool emit_event) {
  std::lock_guard lock(mutex_);
  size_t a = path_key.find('|');
  size_t b = path_key.find('|', a + 1);
  ++rv_;
  object["metadata"]["resourceVersion"] = std::to_string(rv_);
  bool existed = objects_.count(path_key) > 0;
  objects_[path_key] = object;
  if (emit_event)
    record(existed ? "MODIFIED" : "ADDED", path_key.substr(0, a), path_key.substr(a + 1, b - a - 1),
           object);
}

void FakeServer::erase(const std::string& path_key) {
  std::lock_guard lock(mutex_);
  auto it = objects_.find(path_key);
  if (it == objects_.end()) return;
  size_t a = path_key.find('|');
  size_t b = path_key.find('|', a + 1);
  ++rv_;
  json object = it->second;
  object["metadata"]["resourceVersion"] = std::to_string(rv_);
  objects_.erase(it);
  record("DELETED", path_key.substr(0, a), path_key.substr(a + 1, b - a - 1), object);
}

void FakeServer::serve(int fd) {
  std::string buffer;
  Request req;
  while (!stopping_) {
    req = Request{};
    if (!readRequest(fd, buffer, req)) return;
    ++requests_;
    if (req.authorization != "Bearer " + token_) {
      respond(fd, 401, statusBody(401, "Unauthorized", "Unauthorized"));
      continue;
    }
    // Route: /api/v1/... or /apis/<g>/<v>/...
    std::vector<std::string> seg;
    std::istringstream ps(req.path);
    std::string s;
    while (std::getline(ps, s, '/')) {
      if (!s.empty()) seg.push_back(s);
    }
    size_t prefix_len = (!seg.empty() && seg[0] == "api") ? 2 : 3;
    if (seg.size() <= prefix_len) {
      respond(fd, 404,
              statusBody(404, "NotFound", "the server could not find the requested resource"));
      continue;
    }
    std::string prefix;
    for (size_t i = 0; i < prefix_len; ++i) prefix += "/" + seg[i];
    std::vector<std::string> rest(seg.begin() + static_cast<long>(prefix_len), seg.end());
    std::string ns, plural, name;
    if (rest.size() >= 3 && rest[0] == "namespaces") {
      ns = rest[1];
      plural = rest[2];
      if (rest.size() >= 4) name = rest[3];
    } else {
      plural = rest[0];
      if (rest.size() >= 2) name = rest[1];
    }
    std::string group = prefix_len == 3 ? seg[1] : "";
    std::string qualified = group.empty() ? plural : plural + "." + group;
    std::string collection = prefix + "/" + plural;
    std::string key = collection + "|" + ns + "|" + name;
    std::unique_lock lock(mutex_);
    auto notFound = [&] {
      return statusBody(404, "NotFound", qualified + " \"" + name + "\" not found");
    };
    if (req.method == "GET" && name.empty() && req.query.count("watch")) {
      watch_targets_.push_back(req.target);
      std::string rv_text = req.query["resourceVersion"];
      int64_t from = rv_text.empty() || rv_text == "0" ? rv_ : std::stoll(rv_text);
      if (from < compacted_rv_ || fail_next_watch_) {
        fail_next_watch_ = false;
        json gone = statusBody(
            410, "Expired",
            "too old resource version: " + rv_text + " (" + std::to_string(compacted_rv_) + ")");
        if (!gone_as_event_) {
          lock.unlock();
          respond(fd, 410, gone);
          continue;
        }
        lock.unlock();
        writeAll(fd,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
        sendChunk(fd, json{{"type", "ERROR"}, {"object", gone}}.dump() + "\n");
        sendChunk(fd, "");
        continue;
      }
      int timeout = req.query.count("timeoutSeconds") ? std::stoi(req.query["timeoutSeconds"]) : 60;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
      int generation = generation_;
      int bookmarks = bookmarks_;
      lock.unlock();
      if (!writeAll(fd,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n")) {
        return;
      }
      int64_t sent = from;
      bool ok = true;
      lock.lock();
      while (ok && !stopping_ && generation == generation_ &&
             std::chrono::steady_clock::now() < deadline) {
        std::string out;
        for (const auto& ev : events_) {
          if (ev.rv > sent && ev.collection == collection && (ns.empty() || ev.ns == ns)) {
            out += json{{"type", ev.type}, {"object", ev.object}}.dump() + "\n";
            sent = ev.rv;
          }
        }
        if (bookmarks != bookmarks_) {
          bookmarks = bookmarks_;
          sent = std::max(sent, rv_);
          out += json{{"type", "BOOKMARK"},
                      {"object",
                       {{"kind", "X"}, {"metadata", {{"resourceVersion", std::to_string(rv_)}}}}}}
                     .dump() +
                 "\n";
        }
        if (!out.empty()) {
          lock.unlock();
          ok = sendChunk(fd, out);
          lock.lock();
          continue;
        }
        cv_.wait_until(lock, deadline);
      }
      lock.unlock();
      sendChunk(fd, "");
      continue;
    }
    int status = 200;
    json body;
    if (req.method == "GET" && name.empty()) {
      json items = json::array();
      for (const auto& [k, obj] : objects_) {
        if (k.rfind(collection + "|", 0) == 0 &&
            (ns.empty() || k.rfind(collection + "|" + ns + "|", 0) == 0)) {
          items.push_back(obj);
        }
      }
      body = {{"kind", "List"},
              {"apiVersion", "v1"},
              {"metadata", {{"resourceVersion", std::to_string(rv_)}}},
              {"items", items}};
    } else if (req.method == "GET") {
      auto it = objects_.find(key);
      if (it == objects_.end()) {
        status = 404;
        body = notFound();
      } else {
        body = it->second;
      }
    } else if (req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      json in;
      try {
        in = json::parse(req.body);
      } catch (const json::exception&) {
        status = 400;
        body = statusBody(400, "BadRequest", "body is not JSON");
      }
      if (status == 200) {
        if (req.method == "POST") name = in["metadata"].value("name", "");
        if (req.method == "PUT" && req.path.size() > 7 &&
            req.path.substr(req.path.size() - 7) == "/status") {
          name = rest.back() == "status" ? rest[rest.size() - 2] : name;
        }
        key = collection + "|" + ns + "|" + name;
        auto it = objects_.find(key);
        if (req.method == "POST" && it != objects_.end()) {
          status = 409;
          body = statusBody(409, "AlreadyExists", qualified + " \"" + name + "\" already exists");
        } else if (req.method == "PUT" && it == objects_.end()) {
          status = 404;
          body = notFound();
        } else if (req.method == "PUT" && in["metadata"].value("resourceVersion", "") !=
                                              it->second["metadata"].value("resourceVersion", "")) {
          status = 409;
          body = statusBody(409, "Conflict",
                            "Operation cannot be fulfilled on " + qualified + " \"" + name +
                                "\": the object has been modified; please apply your changes "
                                "to the latest version and try again");
        } else if (req.method == "PATCH" && it == objects_.end() &&
                   req.content_type != "application/apply-patch+yaml") {
          status = 404;
          body = notFound();
        } else {
          json obj = it == objects_.end() ? json::object() : it->second;
          json before = obj;
          if (req.method == "PATCH") {
            obj.merge_patch(in);
          } else {
            json keep_meta = obj.value("metadata", json::object());
            obj = in;
            if (keep_meta.contains("uid")) obj["metadata"]["uid"] = keep_meta["uid"];
          }
          obj["metadata"]["name"] = name;
          if (!ns.empty()) obj["metadata"]["namespace"] = ns;
          if (!obj["metadata"].contains("uid")) obj["metadata"]["uid"] = "uid-" + name;
          if (obj != before) {
            ++rv_;
            obj["metadata"]["resourceVersion"] = std::to_string(rv_);
            objects_[key] = obj;
            record(it == objects_.end() ? "ADDED" : "MODIFIED", collection, ns, obj);
          }
          status = before.empty() ? 201 : 200;
          body = obj;
        }
      }
    } else if (req.method == "DELETE") {
      auto it = objects_.find(key);
      if (it == objects_.end()) {
        status = 404;
        body = notFound();
      } else {
        json obj = it->second;
        objects_.erase(it);
        ++rv_;
        obj["metadata"]["resourceVersion"] = std::to_string(rv_);
        record("DELETED", collection, ns, obj);
        body = obj;
      }
    } else {
      status = 405;
      body = statusBody(405, "MethodNotAllowed", "method not allowed");
    }
    lock.unlock();
    if (!respond(fd, status, body)) return;
  }
}

}  // namespace clrk::kube::testing
