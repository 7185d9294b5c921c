#include "tokenizer/special_tokens.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace bidora::tok {

std::optional<std::string> token_content(const nlohmann::json& v, const std::string& where) {
  if (v.is_null()) return std::nullopt;
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    auto it = v.find("content");
    if (it != v.end() && it->is_string()) return it->get<std::string>();
  }
  fail("{}: expected a token string, {{\"content\": ...}} or null, got {}", where, v.dump().substr(0, 200));
}

namespace {

// `key` of a generation_config.json / config.json: an int or a list of ints; all of them.
std::vector<int32_t> token_ids(const ConfigFile& f, const char* key) {
  std::vector<int32_t> out;
  if (!f.json.is_object()) return out;
  auto it = f.json.find(key);
  if (it == f.json.end() || it->is_null()) return out;
  auto one = [&](const nlohmann::json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
        v.get<int64_t>() > std::numeric_limits<int32_t>::max())
      fail("{}: field \"{}\" must be a token id or a list of token ids, got {}", f.path, key, it->dump());
    out.push_back(static_cast<int32_t>(v.get<int64_t>()));
  };
  if (it->is_array()) {
    for (const auto& v : *it) one(v);
  } else {
    one(*it);
  }
  return out;
}

struct Resolved {
  std::optional<int32_t> id;
  std::string token;
};

Resolved resolve_one(const char* name, const ConfigFile& tc, const ConfigFile& gen, const ConfigFile& mc,
                     const std::optional<std::string>& fallback_token, const VocabLookup& vocab) {
  const std::string key = std::string(name) + "_token";
  if (tc.json.is_object() && tc.json.contains(key)) {
    const std::string where = fmt::format("{}: field \"{}\"", tc.path, key);
    auto content = token_content(tc.json[key], where);
    if (!content) return {};
    auto id = vocab.token_to_id(*content);
    if (!id) fail("{}: token \"{}\" is not in the tokenizer's vocabulary", where, *content);
    return {id, *content};
  }
  const std::string id_key = key + "_id";
  for (const ConfigFile* f : {&gen, &mc}) {
    auto ids = token_ids(*f, id_key.c_str());
    if (ids.empty()) continue;
    auto tok = vocab.id_to_token(ids[0]);
    if (!tok) fail("{}: field \"{}\" = {} is not a token id of the tokenizer", f->path, id_key, ids[0]);
    return {ids[0], *tok};
  }
  if (fallback_token) {
    if (auto id = vocab.token_to_id(*fallback_token)) return {id, *fallback_token};
  }
  return {};
}

}  // namespace

SpecialTokenIds resolve_special_tokens(const ConfigFile& tc, const ConfigFile& gen, const ConfigFile& mc,
                                       const std::optional<std::string>& model_unk,
                                       const VocabLookup& vocab) {
  if (!tc.json.is_null() && !tc.json.is_object()) fail("{}: expected a JSON object", tc.path);
  SpecialTokenIds s;
  auto bos = resolve_one("bos", tc, gen, mc, std::nullopt, vocab);
  auto eos = resolve_one("eos", tc, gen, mc, std::nullopt, vocab);
  auto pad = resolve_one("pad", tc, gen, mc, std::nullopt, vocab);
  auto unk = resolve_one("unk", tc, ConfigFile{}, ConfigFile{}, model_unk, vocab);
  s.bos = bos.id, s.bos_token = bos.token;
  s.eos = eos.id, s.eos_token = eos.token;
  s.unk = unk.id, s.unk_token = unk.token;
  if (pad.id) {
    s.pad = pad.id, s.pad_token = pad.token;
  } else if (eos.id) {
    s.pad = eos.id, s.pad_token = eos.token, s.pad_is_eos = true;
  }
  if (s.eos) s.stop_ids.push_back(*s.eos);
  for (int32_t id : token_ids(gen, "eos_token_id")) {
    if (!vocab.id_to_token(id))
      fail("{}: field \"eos_token_id\" = {} is not a token id of the tokenizer", gen.path, id);
    if (std::find(s.stop_ids.begin(), s.stop_ids.end(), id) == s.stop_ids.end()) s.stop_ids.push_back(id);
  }
  return s;
}

std::string resolve_chat_template(const ConfigFile& tc, const std::string& jinja_file) {
  if (!jinja_file.empty()) return jinja_file;
  if (!tc.json.is_object()) return {};
  auto it = tc.json.find("chat_template");
  if (it == tc.json.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    const nlohmann::json* first = nullptr;
    for (size_t i = 0; i < it->size(); ++i) {
      const auto& e = (*it)[i];
      if (!e.is_object() || !e.contains("template") || !e["template"].is_string())
        fail("{}: chat_template[{}] must be {{\"name\": ..., \"template\": \"...\"}}", tc.path, i);
      if (!first) first = &e;
      if (e.contains("name") && e["name"] == "default") return e["template"].get<std::string>();
    }
    return first ? (*first)["template"].get<std::string>() : std::string();
  }
  fail("{}: field \"chat_template\" must be a string or a list of {{name, template}}, got {}", tc.path,
       it->dump().substr(0, 200));
}

}  // namespace bidora::tok
