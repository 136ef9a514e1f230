#include "clrk/apiserver/label_selector.h"

#include <cctype>
#include <cstdlib>
#include <utility>

namespace clrk::apiserver {
namespace {

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view text) {
  while (!text.empty() && isSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && isSpace(text.back())) text.remove_suffix(1);
  return text;
}

// Label keys: optional DNS prefix + '/' + name of [A-Za-z0-9._-], values the same (may be empty).
bool validToken(std::string_view token, bool allow_slash) {
  if (token.empty() || token.size() > 316) return false;
  for (char c : token) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
              (allow_slash && c == '/');
    if (!ok) return false;
  }
  return true;
}

bool validValue(std::string_view value) { return value.empty() || validToken(value, false); }

// Splits on commas that are not inside parentheses.
Result<std::vector<std::string_view>> splitTopLevel(std::string_view text) {
  std::vector<std::string_view> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    char c = text[pos];
    if (c == '(') {
      if (++depth > 1) return invalidArgument("unexpected '(' in selector");
    } else if (c == ')') {
      if (--depth < 0) return invalidArgument("unexpected ')' in selector");
    } else if (c == ',' && depth == 0) {
      parts.push_back(text.substr(start, pos - start));
      start = pos + 1;
    }
  }
  if (depth != 0) return invalidArgument("unclosed '(' in selector");
  parts.push_back(text.substr(start));
  return parts;
}

std::string labelValue(const api::Json& labels, const std::string& key, bool* present) {
  *present = false;
  if (!labels.is_object()) return {};
  auto it = labels.find(key);
  if (it == labels.end()) return {};
  *present = true;
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

bool parseInteger(std::string_view text, long long* out) {
  if (text.empty()) return false;
  std::string copy(text);
  char* end = nullptr;
  *out = std::strtoll(copy.c_str(), &end, 10);
  return end != nullptr && *end == '\0';
}

}  // namespace

Result<LabelSelector> LabelSelector::parse(std::string_view text) {
  LabelSelector selector;
  text = trim(text);
  if (text.empty()) return selector;
  CLRK_ASSIGN_OR_RETURN(auto parts, splitTopLevel(text));
  for (std::string_view raw : parts) {
    std::string_view part = trim(raw);
    auto fail = [&](std::string_view why) {
      return invalidArgument("unable to parse requirement: " + std::string(why) + " in \"" +
                             std::string(part) + "\"");
    };
    if (part.empty()) return fail("empty requirement");
    Requirement requirement;
    if (part.front() == '!') {
      std::string_view key = trim(part.substr(1));
      if (!validToken(key, true)) return fail("invalid label key");
      requirement.key = std::string(key);
      requirement.op = Op::DoesNotExist;
      selector.requirements_.push_back(std::move(requirement));
      continue;
    }
    // Key runs until an operator character or whitespace.
    size_t pos = 0;
    while (pos < part.size() && !isSpace(part[pos]) && part[pos] != '=' && part[pos] != '!' &&
           part[pos] != '<' && part[pos] != '>' && part[pos] != '(')
      ++pos;
    std::string_view key = part.substr(0, pos);
    if (!validToken(key, true)) return fail("invalid label key");
    requirement.key = std::string(key);
    std::string_view rest = trim(part.substr(pos));
    if (rest.empty()) {
      requirement.op = Op::Exists;
    } else if (rest.rfind("==", 0) == 0 || rest.rfind("!=", 0) == 0 || rest.front() == '=') {
      size_t op_len = rest.front() == '=' && rest.rfind("==", 0) != 0 ? 1 : 2;
      requirement.op = rest.rfind("!=", 0) == 0 ? Op::NotEquals : Op::Equals;
      std::string_view value = trim(rest.substr(op_len));
      if (!validValue(value)) return fail("invalid label value");
      requirement.values.emplace_back(value);
    } else if (rest.front() == '<' || rest.front() == '>') {
      requirement.op = rest.front() == '<' ? Op::LessThan : Op::GreaterThan;
      std::string_view value = trim(rest.substr(1));
      long long number = 0;
      if (!parseInteger(value, &number))
        return fail("for 'Gt', 'Lt' operators, the value must be an integer");
      requirement.values.emplace_back(value);
    } else {
      bool is_in =
          rest.rfind("in", 0) == 0 && rest.size() > 2 && (isSpace(rest[2]) || rest[2] == '(');
      bool is_notin =
          rest.rfind("notin", 0) == 0 && rest.size() > 5 && (isSpace(rest[5]) || rest[5] == '(');
      if (!is_in && !is_notin) return fail("unknown operator");
      requirement.op = is_in ? Op::In : Op::NotIn;
      std::string_view set = trim(rest.substr(is_in ? 2 : 5));
      if (set.size() < 2 || set.front() != '(' || set.back() != ')')
        return fail("expected '(' value list ')'");
      set = set.substr(1, set.size() - 2);
      size_t start = 0;
      while (true) {
        size_t comma = set.find(',', start);
        std::string_view value = trim(set.substr(
            start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
        if (!validValue(value)) return fail("invalid label value");
        requirement.values.emplace_back(value);
        if (comma == std::string_view::npos) break;
        start = comma + 1;
      }
    }
    selector.requirements_.push_back(std::move(requirement));
  }
  return selector;
}

bool LabelSelector::matches(const api::Json& labels) const {
  for (const auto& requirement : requirements_) {
    bool present = false;
    std::string value = labelValue(labels, requirement.key, &present);
    switch (requirement.op) {
      case Op::Exists:
        if (!present) return false;
        break;
      case Op::DoesNotExist:
        if (present) return false;
        break;
      case Op::Equals:
        if (!present || value != requirement.values[0]) return false;
        break;
      case Op::NotEquals:
        if (present && value == requirement.values[0]) return false;
        break;
      case Op::In: {
        if (!present) return false;
        bool found = false;
        for (const auto& candidate : requirement.values) found = found || candidate == value;
        if (!found) return false;
        break;
      }
      case Op::NotIn: {
        if (!present) break;
        for (const auto& candidate : requirement.values) {
          if (candidate == value) return false;
        }
        break;
      }
      case Op::GreaterThan:
      case Op::LessThan: {
        long long actual = 0;
        long long bound = 0;
        if (!present || !parseInteger(value, &actual) ||
            !parseInteger(requirement.values[0], &bound))
          return false;
        if (requirement.op == Op::GreaterThan ? !(actual > bound) : !(actual < bound)) return false;
        break;
      }
    }
  }
  return true;
}

Result<FieldSelector> FieldSelector::parse(std::string_view text,
                                           const std::vector<std::string>& allowed) {
  FieldSelector selector;
  text = trim(text);
  if (text.empty()) return selector;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view part = trim(text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    Requirement requirement;
    size_t op = part.find_first_of("=!");
    if (op == std::string_view::npos || op == 0) {
      return invalidArgument("invalid selector: '" + std::string(part) + "'; can't understand '" +
                             std::string(part) + "'");
    }
    requirement.field = std::string(trim(part.substr(0, op)));
    std::string_view rest = part.substr(op);
    if (rest.rfind("!=", 0) == 0) {
      requirement.negated = true;
      rest.remove_prefix(2);
    } else if (rest.rfind("==", 0) == 0) {
      rest.remove_prefix(2);
    } else if (rest.front() == '=') {
      rest.remove_prefix(1);
    } else {
      return invalidArgument("invalid selector: '" + std::string(part) + "'");
    }
    requirement.value = std::string(trim(rest));
    bool known = false;
    for (const auto& name : allowed) known = known || name == requirement.field;
    if (!known) {
      std::string message = "\"" + requirement.field + "\" is not a known field selector: only ";
      for (size_t idx = 0; idx < allowed.size(); ++idx) {
        if (idx > 0) message += ", ";
        message += "\"" + allowed[idx] + "\"";
      }
      return invalidArgument(message);
    }
    selector.requirements_.push_back(std::move(requirement));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return selector;
}

bool FieldSelector::matches(const api::Json& object) const {
  for (const auto& requirement : requirements_) {
    const api::Json* node = &object;
    std::string_view path = requirement.field;
    while (node != nullptr && !path.empty()) {
      size_t dot = path.find('.');
      std::string key(path.substr(0, dot));
      path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
      if (!node->is_object()) {
        node = nullptr;
        break;
      }
      auto it = node->find(key);
      node = it == node->end() ? nullptr : &*it;
    }
    std::string value;
    if (node != nullptr && !node->is_null()) {
      value = node->is_string() ? node->get<std::string>() : node->dump();
    }
    if ((value == requirement.value) == requirement.negated) return false;
  }
  return true;
}

}  // namespace clrk::apiserver
