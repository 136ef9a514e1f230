#include "clrk/api/codec.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>
#include <unordered_map>

namespace clrk::api {
namespace {

constexpr size_t kMaxInputBytes = 16 * 1024 * 1024;
constexpr size_t kMaxDepth = 100;
// Bounds on the decoded size, alias expansion included ("billion laughs").
constexpr size_t kMaxNodes = 2'000'000;
constexpr size_t kMaxScalarBytes = 64 * 1024 * 1024;
// Values produced by alias expansion: at most kAliasBase plus kAliasRatio times the values
// written out in the text, and never more than kMaxAliasNodes (real manifests use a few small
// anchors; "billion laughs" inputs stop early).
constexpr size_t kAliasBase = 10'000;
constexpr size_t kAliasRatio = 10;
constexpr size_t kMaxAliasNodes = 200'000;
constexpr size_t kMaxLineEntries = 200'000;

// Thrown by the event handler; caught in decodeManifests.
struct DecodeFailure {
  std::string message;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
};

int lineOf(const YAML::Mark& mark) { return mark.is_null() ? 0 : mark.line + 1; }
int columnOf(const YAML::Mark& mark) { return mark.is_null() ? 0 : mark.column + 1; }

std::string jsonQuoted(std::string_view text) {
  return Json(std::string(text)).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// ---- scalar resolution (YAML 1.2 core schema, as JSON sees it) ------------------------------

bool isDigits(std::string_view s, bool (*pred)(char)) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}
bool isDec(char c) { return c >= '0' && c <= '9'; }
bool isHex(char c) { return isDec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool isOct(char c) { return c >= '0' && c <= '7'; }

bool isNullWord(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

std::optional<Json> parseInteger(std::string_view s) {
  std::string_view body = s;
  bool negative = false;
  if (!body.empty() && (body[0] == '-' || body[0] == '+')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  int base = 10;
  if (body.size() > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'o')) {
    base = body[1] == 'x' ? 16 : 8;
    body.remove_prefix(2);
    if (!isDigits(body, base == 16 ? isHex : isOct)) return std::nullopt;
  } else if (!isDigits(body, isDec)) {
    return std::nullopt;
  }
  uint64_t magnitude = 0;
  auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), magnitude, base);
  if (ec != std::errc() || ptr != body.data() + body.size()) {
    // Too large for 64 bits: Kubernetes decodes such numbers as floats.
    if (base != 10) return std::nullopt;
    return Json(std::strtod(std::string(s).c_str(), nullptr));
  }
  if (negative) {
    if (magnitude > static_cast<uint64_t>(INT64_MAX) + 1) {
      return Json(-static_cast<double>(magnitude));
    }
    if (magnitude == static_cast<uint64_t>(INT64_MAX) + 1) return Json(INT64_MIN);
    return Json(-static_cast<int64_t>(magnitude));
  }
  if (magnitude <= static_cast<uint64_t>(INT64_MAX)) return Json(static_cast<int64_t>(magnitude));
  return Json(magnitude);
}

std::optional<Json> parseFloat(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t mantissa = 0;
  while (i < s.size() && isDec(s[i])) ++i, ++mantissa;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && isDec(s[i])) ++i, ++mantissa;
  }
  if (mantissa == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exponent = 0;
    while (i < s.size() && isDec(s[i])) ++i, ++exponent;
    if (exponent == 0) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  double value = std::strtod(std::string(s).c_str(), nullptr);
  if (!std::isfinite(value)) return std::nullopt;  // JSON has no infinities: keep the text
  return Json(value);
}

Json resolvePlain(const std::string& text) {
  if (isNullWord(text)) return Json();
  if (text == "true" || text == "True" || text == "TRUE") return Json(true);
  if (text == "false" || text == "False" || text == "FALSE") return Json(false);
  if (!text.empty() && (isDec(text[0]) || text[0] == '-' || text[0] == '+' || text[0] == '.')) {
    if (auto i = parseInteger(text)) return *i;
    if (auto f = parseFloat(text)) return *f;
  }
  return Json(text);
}

Json resolveScalar(const std::string& tag, const std::string& text) {
  if (tag == "!" || tag == "tag:yaml.org,2002:str" || tag == "tag:yaml.org,2002:binary") {
    return Json(text);
  }
  return resolvePlain(text);
}

// ---- event handler building JSON --------------------------------------------------------------

struct Frame {
  Json value;
  bool is_map = false;
  YAML::anchor_t anchor = 0;
  std::string path;
  size_t nodes_at_start = 0;
  size_t bytes_at_start = 0;
  bool have_key = false;
  std::string key;
  int key_line = 0;
  bool merge_pending = false;
  std::set<std::string> merged_keys;  // keys that came from a `<<` merge (explicit keys win)
};

struct Anchored {
  Json value;
  size_t nodes = 0;
  size_t bytes = 0;
};

class JsonBuilder : public YAML::EventHandler {
 public:
  // Per document.
  void reset() {
    stack_.clear();
    anchors_.clear();
    root_.reset();
    lines_.clear();
    doc_line_ = 0;
  }
  std::optional<Json>& root() { return root_; }
  std::map<std::string, int>& lines() { return lines_; }
  int docLine() const { return doc_line_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    reset();
    doc_line_ = lineOf(mark);
    start_mark_ = mark;
  }
  const YAML::Mark& startMark() const { return start_mark_; }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (expectingKey()) {
      setKey("null", mark);
      return;
    }
    countNode(mark, 0);
    finish(Json(), mark, anchor, 1, 0);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) throw DecodeFailure{"unknown alias", lineOf(mark), columnOf(mark)};
    if (expectingKey()) {
      if (!it->second.value.is_string()) {
        throw DecodeFailure{"mapping keys must be strings", lineOf(mark), columnOf(mark)};
      }
      setKey(it->second.value.get<std::string>(), mark);
      return;
    }
    nodes_ += it->second.nodes;
    bytes_ += it->second.bytes;
    alias_nodes_ += it->second.nodes;
    size_t allowed = std::min(kMaxAliasNodes, kAliasBase + kAliasRatio * (nodes_ - alias_nodes_));
    if (alias_nodes_ > allowed) {
      throw DecodeFailure{
          "document too large: aliases expand to more than " + std::to_string(allowed) + " values",
          lineOf(mark), columnOf(mark)};
    }
    checkBounds(mark);
    finish(it->second.value, mark, 0, it->second.nodes, it->second.bytes);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    if (expectingKey()) {
      Frame& frame = stack_.back();
      if (tag == "?" && value == "<<") {
        frame.merge_pending = true;
        frame.have_key = true;
        frame.key = "<<";
        frame.key_line = lineOf(mark);
        return;
      }
      if (anchor != 0) anchors_[anchor] = Anchored{Json(value), 1, value.size()};
      setKey(value, mark);
      return;
    }
    countNode(mark, value.size());
    finish(resolveScalar(tag, value), mark, anchor, 1, value.size());
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value /*style*/) override {
    openContainer(mark, anchor, false);
  }
  void OnSequenceEnd() override { closeContainer(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value /*style*/) override {
    openContainer(mark, anchor, true);
  }
  void OnMapEnd() override { closeContainer(); }

 private:
  bool expectingKey() const {
    return !stack_.empty() && stack_.back().is_map && !stack_.back().have_key;
  }

  void checkBounds(const YAML::Mark& mark) const {
    if (nodes_ > kMaxNodes) {
      throw DecodeFailure{"document too large: more than " + std::to_string(kMaxNodes) +
                              " values (after expanding aliases)",
                          lineOf(mark), columnOf(mark)};
    }
    if (bytes_ > kMaxScalarBytes) {
      throw DecodeFailure{"document too large: more than 64 MiB of text (after expanding aliases)",
                          lineOf(mark), columnOf(mark)};
    }
  }

  // yaml-cpp 0.7 can emit events forever without consuming input (stray ',' after a flow
  // collection); real input moves the position forward within a few events.
  void checkProgress(const YAML::Mark& mark) {
    if (mark.is_null()) return;
    if (mark.pos != last_pos_) {
      last_pos_ = mark.pos;
      same_pos_events_ = 0;
      return;
    }
    if (++same_pos_events_ > 64) {
      throw DecodeFailure{"unexpected content (a stray ','?); the YAML parser cannot continue",
                          lineOf(mark), columnOf(mark)};
    }
  }

  void countNode(const YAML::Mark& mark, size_t bytes) {
    checkProgress(mark);
    ++nodes_;
    bytes_ += bytes;
    checkBounds(mark);
  }

  void recordLine(const std::string& path, int line) {
    if (line <= 0 || lines_.size() >= kMaxLineEntries) return;
    lines_.emplace(path, line);
  }

  void setKey(std::string key, const YAML::Mark& mark) {
    checkProgress(mark);
    Frame& frame = stack_.back();
    frame.key = std::move(key);
    frame.have_key = true;
    frame.key_line = lineOf(mark);
  }

  // Path of the value about to be added to the top container.
  std::string nextPath() const {
    if (stack_.empty()) return {};
    const Frame& frame = stack_.back();
    if (frame.is_map) {
      return frame.path.empty() ? frame.key : frame.path + "." + frame.key;
    }
    return frame.path + "[" + std::to_string(frame.value.size()) + "]";
  }

  void openContainer(const YAML::Mark& mark, YAML::anchor_t anchor, bool is_map) {
    if (expectingKey()) {
      throw DecodeFailure{
          "mapping keys must be strings, not " + std::string(is_map ? "mappings" : "sequences"),
          lineOf(mark), columnOf(mark)};
    }
    if (stack_.size() >= kMaxDepth) {
      throw DecodeFailure{"nesting deeper than " + std::to_string(kMaxDepth) + " levels",
                          lineOf(mark), columnOf(mark)};
    }
    countNode(mark, 0);
    Frame frame;
    frame.value = is_map ? Json::object() : Json::array();
    frame.is_map = is_map;
    frame.anchor = anchor;
    frame.path = nextPath();
    frame.nodes_at_start = nodes_ - 1;
    frame.bytes_at_start = bytes_;
    if (stack_.empty()) doc_line_ = lineOf(mark);
    if (!stack_.empty() && !stack_.back().merge_pending) recordValueLine(mark);
    stack_.push_back(std::move(frame));
  }

  void closeContainer() {
    if (stack_.empty()) return;
    Frame frame = std::move(stack_.back());
    stack_.pop_back();
    size_t nodes = nodes_ - frame.nodes_at_start;
    size_t bytes = bytes_ - frame.bytes_at_start;
    YAML::Mark mark = YAML::Mark::null_mark();
    finish(std::move(frame.value), mark, frame.anchor, nodes, bytes, /*record=*/false);
  }

  void recordValueLine(const YAML::Mark& mark) {
    const Frame& parent = stack_.back();
    if (parent.is_map) {
      std::string base = parent.path;
      recordLine(base.empty() ? parent.key : base + "." + parent.key, parent.key_line);
      recordLine(base + "[" + parent.key + "]", parent.key_line);
    } else {
      recordLine(parent.path + "[" + std::to_string(parent.value.size()) + "]", lineOf(mark));
    }
  }

  void finish(Json value, const YAML::Mark& mark, YAML::anchor_t anchor, size_t nodes, size_t bytes,
              bool record = true) {
    if (anchor != 0) anchors_[anchor] = Anchored{value, nodes, bytes};
    if (stack_.empty()) {
      root_ = std::move(value);
      return;
    }
    if (record && !stack_.back().merge_pending) recordValueLine(mark);
    Frame& parent = stack_.back();
    if (!parent.is_map) {
      parent.value.push_back(std::move(value));
      return;
    }
    if (parent.merge_pending) {
      merge(parent, value, mark);
    } else {
      auto existing = parent.value.find(parent.key);
      if (existing != parent.value.end() && !parent.merged_keys.count(parent.key)) {
        throw DecodeFailure{"duplicate key " + jsonQuoted(parent.key), parent.key_line, 0};
      }
      parent.merged_keys.erase(parent.key);
      parent.value[parent.key] = std::move(value);
    }
    parent.have_key = false;
    parent.merge_pending = false;
  }

  // YAML merge key: `<<: *base` or `<<: [*a, *b]`; keys already present win.
  void merge(Frame& parent, const Json& value, const YAML::Mark& mark) {
    auto mergeOne = [&](const Json& source) {
      if (!source.is_object()) {
        throw DecodeFailure{"merge key \"<<\" needs a mapping or a list of mappings",
                            parent.key_line, columnOf(mark)};
      }
      for (auto it = source.begin(); it != source.end(); ++it) {
        if (parent.value.contains(it.key())) continue;
        parent.value[it.key()] = it.value();
        parent.merged_keys.insert(it.key());
      }
    };
    if (value.is_array()) {
      for (const auto& item : value) mergeOne(item);
    } else {
      mergeOne(value);
    }
  }

  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, Anchored> anchors_;
  std::optional<Json> root_;
  std::map<std::string, int> lines_;
  int doc_line_ = 0;
  YAML::Mark start_mark_ = YAML::Mark::null_mark();
  // Across the whole input: alias expansion is bounded globally.
  size_t nodes_ = 0;
  size_t bytes_ = 0;
  size_t alias_nodes_ = 0;
  int last_pos_ = -1;
  int same_pos_events_ = 0;
};

std::string where(std::string_view source, int doc_index, int line, int column) {
  std::string out(source);
  out += ": document " + std::to_string(doc_index + 1);
  if (line > 0) {
    out += ": line " + std::to_string(line);
    if (column > 0) out += ", column " + std::to_string(column);
  }
  return out;
}

// Whether line `line` (1-based) of `text` starts with a tab in its indentation.
bool lineIndentedWithTab(std::string_view text, int line) {
  if (line <= 0) return false;
  size_t pos = 0;
  for (int i = 1; i < line; ++i) {
    pos = text.find('\n', pos);
    if (pos == std::string_view::npos) return false;
    ++pos;
  }
  for (; pos < text.size() && (text[pos] == ' ' || text[pos] == '\t'); ++pos) {
    if (text[pos] == '\t') return true;
  }
  return false;
}

// 1-based line of the first byte that is not valid UTF-8; 0 when the text is valid.
int invalidUtf8Line(std::string_view text) {
  int line = 1;
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') ++line;
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t extra = 0;
    uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      min = 0x10000;
    } else {
      return line;
    }
    if (i + extra >= text.size()) return line;
    uint32_t code = c & (0x3F >> extra);
    for (size_t k = 1; k <= extra; ++k) {
      auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return line;
      code = (code << 6) | (next & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return line;
    i += extra + 1;
  }
  return 0;
}

// Moves the entries under `prefix` ("items[3]") into a new map with the prefix removed.
std::map<std::string, int> rebaseLines(const std::map<std::string, int>& lines,
                                       const std::string& prefix) {
  std::map<std::string, int> out;
  for (auto it = lines.lower_bound(prefix); it != lines.end(); ++it) {
    const std::string& path = it->first;
    if (path.compare(0, prefix.size(), prefix) != 0) break;
    std::string rest = path.substr(prefix.size());
    if (rest.empty()) continue;
    if (rest[0] == '.') {
      out.emplace(rest.substr(1), it->second);
    } else if (rest[0] == '[') {
      // "items[3][key]" is the bracket form of a top-level key.
      size_t close = rest.find(']');
      if (close == rest.size() - 1)
        out.emplace(rest.substr(1, close - 1), it->second);
      else if (close != std::string::npos && rest.size() > 2 && !isDec(rest[1]))
        out.emplace(rest.substr(1, close - 1) + rest.substr(close + 1), it->second);
    }
  }
  return out;
}

bool isListKind(const Json& object) {
  auto kind = object.find("kind");
  auto items = object.find("items");
  if (kind == object.end() || !kind->is_string() || items == object.end()) return false;
  const auto& k = kind->get_ref<const std::string&>();
  return k.size() >= 4 && k.compare(k.size() - 4, 4, "List") == 0 && items->is_array();
}

Status addDocument(std::vector<Document>& out, std::string_view source, int doc_index, int doc_line,
                   Json root, std::map<std::string, int> lines) {
  if (root.is_null()) return {};  // empty document
  if (!root.is_object()) {
    return invalidArgument(where(source, doc_index, doc_line, 0) +
                           ": expected a mapping with apiVersion and kind, got " +
                           (root.is_array() ? "a sequence" : "a scalar"));
  }
  if (!isListKind(root)) {
    out.push_back(
        Document{std::string(source), doc_index, doc_line, std::move(root), std::move(lines)});
    return {};
  }
  Json& items = root["items"];
  for (size_t i = 0; i < items.size(); ++i) {
    std::string prefix = "items[" + std::to_string(i) + "]";
    auto line_it = lines.find(prefix);
    int item_line = line_it == lines.end() ? doc_line : line_it->second;
    if (!items[i].is_object()) {
      return invalidArgument(where(source, doc_index, item_line, 0) + ": " + prefix +
                             ": expected a mapping with apiVersion and kind");
    }
    out.push_back(Document{std::string(source), doc_index, item_line, std::move(items[i]),
                           rebaseLines(lines, prefix)});
  }
  return {};
}

// The line of `path` or of its nearest recorded ancestor.
int lineForPath(const Document& document, std::string path) {
  while (!path.empty()) {
    auto it = document.field_lines.find(path);
    if (it != document.field_lines.end()) return it->second;
    if (path.back() == ']') {
      size_t open = path.rfind('[');
      if (open == std::string::npos) break;
      path.resize(open);
    } else {
      size_t dot = path.rfind('.');
      if (dot == std::string::npos) break;
      path.resize(dot);
    }
  }
  return document.line;
}

// ---- YAML emitter -----------------------------------------------------------------------------

bool needsQuotes(const std::string& s) {
  if (s.empty()) return true;
  // Anything that would read back as another type, including YAML 1.1 booleans.
  static const std::set<std::string> kReserved = {
      "y",    "Y",     "yes",   "Yes",  "YES",  "n",    "N",   "no",   "No",
      "NO",   "on",    "On",    "ON",   "off",  "Off",  "OFF", ".inf", ".Inf",
      ".INF", "-.inf", "+.inf", ".nan", ".NaN", ".NAN", "<<",  "=",    "-"};
  if (kReserved.count(s)) return true;
  if (!resolvePlain(s).is_string()) return true;
  if (s.front() == ' ' || s.back() == ' ' || s.back() == ':') return true;
  static const std::string kLeading = "-?:,[]{}#&*!|>'\"%@`";
  if (kLeading.find(s.front()) != std::string::npos) {
    // "-x" and "?x" and ":x" are plain in block context only when followed by non-space; quote
    // anyway for safety.
    return true;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) return true;
    if (c == ':' && i + 1 < s.size() && s[i + 1] == ' ') return true;
    if (c == '#' && i > 0 && s[i - 1] == ' ') return true;
    if (c >= 0x80) return true;  // keep non-ASCII exact through JSON-style escaping
  }
  // Numbers-with-leading-dot and similar forms that other YAML parsers treat specially.
  if (s.find_first_not_of("0123456789_:.+-eExXoObB") == std::string::npos &&
      s.find_first_of("0123456789") != std::string::npos) {
    return true;
  }
  return false;
}

std::string scalarText(const Json& value) {
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    return needsQuotes(s) ? jsonQuoted(s) : s;
  }
  if (value.is_null()) return "null";
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void emitYaml(const Json& value, int indent, std::string& out, int depth);

void emitKeyValue(const std::string& key, const Json& value, int indent, std::string& out,
                  int depth) {
  std::string key_text = scalarText(Json(key));
  if (key_text.size() > 1000) {
    // YAML caps implicit keys at 1024 characters; longer ones need the explicit "? " form.
    out += "? " + key_text + "\n" + std::string(static_cast<size_t>(indent), ' ');
  } else {
    out += key_text;
  }
  out += ':';
  if (value.is_object() && !value.empty()) {
    out += '\n';
    emitYaml(value, indent + 2, out, depth + 1);
  } else if (value.is_array() && !value.empty()) {
    out += '\n';
    emitYaml(value, indent, out, depth + 1);  // kubectl style: "- " at the key's indentation
  } else {
    out += ' ';
    if (value.is_object()) {
      out += "{}";
    } else if (value.is_array()) {
      out += "[]";
    } else {
      out += scalarText(value);
    }
    out += '\n';
  }
}

void emitYaml(const Json& value, int indent, std::string& out, int depth) {
  const std::string pad(static_cast<size_t>(indent), ' ');
  if (depth > 512) {
    out += pad + "null\n";
    return;
  }
  if (value.is_object()) {
    if (value.empty()) {
      out += pad + "{}\n";
      return;
    }
    for (auto it = value.begin(); it != value.end(); ++it) {
      out += pad;
      emitKeyValue(it.key(), it.value(), indent, out, depth);
    }
    return;
  }
  if (value.is_array()) {
    if (value.empty()) {
      out += pad + "[]\n";
      return;
    }
    for (const auto& item : value) {
      out += pad + "- ";
      if (item.is_object() && !item.empty()) {
        bool first = true;
        for (auto it = item.begin(); it != item.end(); ++it) {
          if (!first) out += pad + "  ";
          first = false;
          emitKeyValue(it.key(), it.value(), indent + 2, out, depth + 1);
        }
      } else if (item.is_array() && !item.empty()) {
        out.pop_back();  // "-" alone on its line, the nested sequence below it
        out += '\n';
        emitYaml(item, indent + 2, out, depth + 1);
      } else if (item.is_object()) {
        out += "{}\n";
      } else if (item.is_array()) {
        out += "[]\n";
      } else {
        out += scalarText(item) + "\n";
      }
    }
    return;
  }
  out += pad + scalarText(value) + "\n";
}

}  // namespace

Result<std::vector<Document>> decodeManifests(std::string_view text, std::string_view source) {
  if (text.size() > kMaxInputBytes) {
    return invalidArgument(std::string(source) + ": input is " + std::to_string(text.size()) +
                           " bytes; the limit is 16 MiB");
  }
  std::vector<Document> out;
  int doc_index = 0;
  if (int line = invalidUtf8Line(text)) {
    return invalidArgument(std::string(source) + ": line " + std::to_string(line) +
                           ": input is not valid UTF-8");
  }
  try {
    std::istringstream stream{std::string(text)};
    YAML::Parser parser(stream);
    JsonBuilder builder;
    YAML::Mark last_empty_mark = YAML::Mark::null_mark();
    while (true) {
      builder.reset();
      bool more = false;
      try {
        more = parser.HandleNextDocument(builder);
      } catch (const DecodeFailure& failure) {
        return invalidArgument(where(source, doc_index, failure.line, failure.column) + ": " +
                               failure.message);
      } catch (const YAML::Exception& e) {
        int line = lineOf(e.mark);
        std::string message = e.msg;
        if (lineIndentedWithTab(text, line) || lineIndentedWithTab(text, line + 1)) {
          message += " (tabs are not allowed for indentation in YAML; use spaces)";
        }
        return invalidArgument(where(source, doc_index, line, columnOf(e.mark)) + ": " + message);
      }
      if (!more) break;
      // yaml-cpp 0.7 loops forever, yielding empty documents, on a stray ',' after a top-level
      // flow collection or quoted scalar (`[1],`). Every real document consumes input.
      if (!builder.root()) {
        const YAML::Mark& mark = builder.startMark();
        bool stuck =
            !mark.is_null() && !last_empty_mark.is_null() && mark.pos == last_empty_mark.pos;
        if (stuck || static_cast<size_t>(doc_index) > text.size() / 3 + 2) {
          return invalidArgument(where(source, doc_index, lineOf(mark), columnOf(mark)) +
                                 ": unexpected content after the end of a value (a stray ','?)");
        }
        last_empty_mark = mark;
      } else {
        last_empty_mark = YAML::Mark::null_mark();
      }
      if (builder.root()) {
        try {
          // Escapes such as "\ud800" can still produce strings JSON cannot carry.
          (void)builder.root()->dump();
        } catch (const std::exception&) {
          return invalidArgument(where(source, doc_index, builder.docLine(), 0) +
                                 ": a string is not valid UTF-8 after unescaping");
        }
        CLRK_RETURN_IF_ERROR(addDocument(out, source, doc_index, builder.docLine(),
                                         std::move(*builder.root()), std::move(builder.lines())));
      }
      ++doc_index;
    }
  } catch (const std::exception& e) {
    return invalidArgument(where(source, doc_index, 0, 0) + ": " + e.what());
  }
  return out;
}

Status checkDocument(const Registry& registry, Document& document) {
  std::string prefix = document.source + ": document " + std::to_string(document.index + 1);
  Json& object = document.object;
  if (!object.is_object()) {
    return invalidArgument(prefix + ": expected a mapping with apiVersion and kind");
  }
  auto api_version = object.find("apiVersion");
  auto kind = object.find("kind");
  std::vector<std::string> missing;
  if (api_version == object.end() || !api_version->is_string() ||
      api_version->get_ref<const std::string&>().empty()) {
    missing.push_back("apiVersion");
  }
  if (kind == object.end() || !kind->is_string() || kind->get_ref<const std::string&>().empty()) {
    missing.push_back("kind");
  }
  if (!missing.empty()) {
    std::string what = missing.size() == 2 ? "apiVersion and kind are" : missing[0] + " is";
    return invalidArgument(prefix + ": line " + std::to_string(document.line) + ": " + what +
                           " required (a string) in every document");
  }
  const auto& kind_name = kind->get_ref<const std::string&>();
  const auto& version_name = api_version->get_ref<const std::string&>();
  const ResourceType* type = registry.byKind(version_name, kind_name);
  if (!type) {
    std::string message = prefix + ": line " + std::to_string(document.line) + ": no kind " +
                          jsonQuoted(kind_name) + " is registered for version " +
                          jsonQuoted(version_name);
    for (const auto& candidate : registry.types()) {
      if (candidate.kind == kind_name) {
        message += " (did you mean apiVersion " + jsonQuoted(candidate.apiVersion()) + "?)";
        break;
      }
    }
    if (message.back() != ')') {
      if (const ResourceType* near = registry.resolve(kind_name)) {
        message += " (did you mean kind " + jsonQuoted(near->kind) + " in " +
                   jsonQuoted(near->apiVersion()) + "?)";
      }
    }
    return invalidArgument(message);
  }

  std::string label = kind_name;
  auto metadata = object.find("metadata");
  if (metadata != object.end() && metadata->is_object()) {
    auto name = metadata->find("name");
    auto generate = metadata->find("generateName");
    if (name != metadata->end() && name->is_string()) {
      label += " " + jsonQuoted(name->get<std::string>());
    } else if (generate != metadata->end() && generate->is_string()) {
      label += " " + jsonQuoted(generate->get<std::string>() + "*");
    }
  }
  prefix += " (" + label + ")";

  applyDefaults(*type, object);
  std::vector<FieldError> errors = validateObject(*type, object, UnknownFields::Reject);
  if (errors.empty()) return {};
  std::string message;
  for (const auto& error : errors) {
    if (!message.empty()) message += '\n';
    message += prefix + ": line " + std::to_string(lineForPath(document, error.path)) + ": " +
               error.toString();
  }
  return invalidArgument(message);
}

std::string toYaml(const Json& value) {
  std::string out;
  try {
    emitYaml(value, 0, out, 0);
  } catch (const std::exception& e) {
    out += std::string("# rendering failed: ") + e.what() + "\n";
  }
  return out;
}

}  // namespace clrk::api
