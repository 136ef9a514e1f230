// Label and field selectors with the grammar and semantics of the Kubernetes list/watch APIs.
//   labelSelector: "app=web,tier!=db,env in (a,b),team notin (x),release,!canary,count>3"
//   fieldSelector: "metadata.name=x,metadata.namespace!=y" (=, ==, !=)
// Thread model: immutable after parsing; match() is safe to call concurrently.
#pragma once

#include "clrk/api/schema.h"
#include "clrk/base/status.h"

#include <string>
#include <string_view>
#include <vector>

namespace clrk::apiserver {

class LabelSelector {
 public:
  enum class Op { Equals, NotEquals, In, NotIn, Exists, DoesNotExist, GreaterThan, LessThan };
  struct Requirement {
    std::string key;
    Op op = Op::Exists;
    std::vector<std::string> values;
  };

  // InvalidArgument with a message naming the offending part when malformed.
  static Result<LabelSelector> parse(std::string_view text);

  bool empty() const { return requirements_.empty(); }
  // `labels` is metadata.labels (an object of strings) or null.
  bool matches(const api::Json& labels) const;
  const std::vector<Requirement>& requirements() const { return requirements_; }

 private:
  std::vector<Requirement> requirements_;
};

class FieldSelector {
 public:
  struct Requirement {
    std::string field;  // "metadata.name"
    bool negated = false;
    std::string value;
  };

  // `allowed` lists the field paths the resource supports; any other field is InvalidArgument.
  static Result<FieldSelector> parse(std::string_view text,
                                     const std::vector<std::string>& allowed);

  bool empty() const { return requirements_.empty(); }
  // Compares the string form of each field's value in `object` (absent = "").
  bool matches(const api::Json& object) const;
  const std::vector<Requirement>& requirements() const { return requirements_; }

 private:
  std::vector<Requirement> requirements_;
};

}  // namespace clrk::apiserver
