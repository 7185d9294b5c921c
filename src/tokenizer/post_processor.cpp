#include "tokenizer/post_processor.h"

#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_util.h"

namespace bidora::tok {

namespace {

int32_t checked_id(const nlohmann::json& v, const std::string& where) {
  if (!v.is_number_integer()) fail("{}: expected an integer token id, got {}", where, v.dump());
  const auto id = v.get<int64_t>();
  if (id < 0 || id > std::numeric_limits<int32_t>::max()) fail("{}: token id {} out of range", where, id);
  return static_cast<int32_t>(id);
}

class AffixProcessor final : public PostProcessor {
 public:
  AffixProcessor(std::vector<int32_t> prefix, std::vector<int32_t> suffix)
      : prefix_(std::move(prefix)), suffix_(std::move(suffix)) {}
  void process(std::vector<int32_t>& ids) const override {
    ids.insert(ids.begin(), prefix_.begin(), prefix_.end());
    ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  }

 private:
  std::vector<int32_t> prefix_, suffix_;
};

class NoopProcessor final : public PostProcessor {
 public:
  void process(std::vector<int32_t>&) const override {}
};

class SequenceProcessor final : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  void process(std::vector<int32_t>& ids) const override {
    for (const auto& s : steps_) s->process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

// TemplateProcessing "single": [{"SpecialToken": {"id": NAME}} | {"Sequence": {"id": "A"}}...]
// with NAME resolved through "special_tokens": {NAME: {"ids": [...]}}.
std::unique_ptr<PostProcessor> make_template(const nlohmann::json& j, const std::string& where) {
  using namespace json_util;
  const auto& single = require(j, "single", where);
  if (!single.is_array()) fail("{}.single: expected an array", where);
  const nlohmann::json empty = nlohmann::json::object();
  const auto* specials = j.contains("special_tokens") ? &j["special_tokens"] : &empty;
  if (!specials->is_object()) fail("{}.special_tokens: expected an object", where);
  std::vector<int32_t> prefix, suffix;
  int sequences = 0;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string w = fmt::format("{}.single[{}]", where, i);
    const auto& piece = single[i];
    if (piece.is_object() && piece.contains("Sequence")) {
      const std::string seq = get_string(piece["Sequence"], "id", w + ".Sequence");
      if (seq != "A") fail("{}: a single-sequence template may only contain sequence A, got \"{}\"", w, seq);
      ++sequences;
      continue;
    }
    if (!piece.is_object() || !piece.contains("SpecialToken"))
      fail("{}: expected {{\"SpecialToken\": ...}} or {{\"Sequence\": ...}}", w);
    const std::string name = get_string(piece["SpecialToken"], "id", w + ".SpecialToken");
    auto it = specials->find(name);
    if (it == specials->end()) fail("{}: special token \"{}\" is not defined in special_tokens", w, name);
    const std::string sw = fmt::format("{}.special_tokens[\"{}\"]", where, name);
    const auto& ids = require(*it, "ids", sw);
    if (!ids.is_array()) fail("{}.ids: expected an array", sw);
    auto& dst = sequences == 0 ? prefix : suffix;
    for (size_t k = 0; k < ids.size(); ++k)
      dst.push_back(checked_id(ids[k], fmt::format("{}.ids[{}]", sw, k)));
  }
  if (sequences != 1) fail("{}.single: expected exactly one Sequence A, found {}", where, sequences);
  return make_affix_processor(std::move(prefix), std::move(suffix));
}

// RobertaProcessing / BertProcessing: cls A sep, with "cls": [token, id], "sep": [token, id].
std::unique_ptr<PostProcessor> make_cls_sep(const nlohmann::json& j, const std::string& where) {
  auto id_of = [&](const char* key) {
    const auto& v = json_util::require(j, key, where);
    if (!v.is_array() || v.size() != 2) fail("{}.{}: expected [token, id]", where, key);
    return checked_id(v[1], fmt::format("{}.{}[1]", where, key));
  };
  return make_affix_processor({id_of("cls")}, {id_of("sep")});
}

}  // namespace

std::unique_ptr<PostProcessor> make_affix_processor(std::vector<int32_t> prefix,
                                                    std::vector<int32_t> suffix) {
  return std::make_unique<AffixProcessor>(std::move(prefix), std::move(suffix));
}

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = json_util::get_string(j, "type", where);
  if (type == "TemplateProcessing") return make_template(j, where);
  if (type == "ByteLevel") return std::make_unique<NoopProcessor>();
  if (type == "RobertaProcessing" || type == "BertProcessing") return make_cls_sep(j, where);
  if (type == "Sequence") {
    const auto& list = json_util::require(j, "processors", where);
    if (!list.is_array()) fail("{}: field \"processors\" must be an array", where);
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (size_t i = 0; i < list.size(); ++i)
      if (auto p = make_post_processor(list[i], fmt::format("{}.processors[{}]", where, i)))
        steps.push_back(std::move(p));
    return std::make_unique<SequenceProcessor>(std::move(steps));
  }
  fail(
      "{}: unsupported post_processor type \"{}\" (supported: TemplateProcessing, ByteLevel, "
      "RobertaProcessing, "
      "BertProcessing, Sequence)",
      where, type);
}

}  // namespace bidora::tok
