#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "io/json_util.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/unicode.h"

namespace bidora {

using namespace tok;
using nlohmann::json;

struct Tokenizer::Impl {
  std::unique_ptr<BpeModel> model;
  AddedVocabulary added;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  SpecialTokenIds special;
  std::string chat_template;
  int32_t max_id = -1;

  void encode_text(std::string_view segment, bool at_origin, std::vector<int32_t>& out) const;
};

namespace {

// tokenizer_config.json classes whose transformers implementation rebuilds the post-processor
// from add_bos_token / add_eos_token (LlamaTokenizerFast.update_post_processor and kin).
bool rebuilds_post_processor(const std::string& cls) {
  for (const char* c : {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer",
                        "CodeLlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast"})
    if (cls == c) return true;
  return false;
}

AddedToken parse_added_token(const json& e, const std::string& where, std::optional<int64_t> id_override) {
  using namespace json_util;
  AddedToken t;
  const int64_t id = id_override ? *id_override : get_int(e, "id", where);
  if (id < 0 || id > std::numeric_limits<int32_t>::max() - 1) fail("{}: id {} is out of range", where, id);
  t.id = static_cast<int32_t>(id);
  t.content = get_string(e, "content", where);
  if (t.content.empty()) fail("{}: field \"content\" must not be empty", where);
  if (auto bad = find_invalid_utf8(t.content)) fail("{}: content is not valid UTF-8 (byte {})", where, *bad);
  t.single_word = opt_bool(e, "single_word", where).value_or(false);
  t.lstrip = opt_bool(e, "lstrip", where).value_or(false);
  t.rstrip = opt_bool(e, "rstrip", where).value_or(false);
  t.special = opt_bool(e, "special", where).value_or(false);
  t.normalized = opt_bool(e, "normalized", where).value_or(!t.special);  // Rust's default
  return t;
}

ConfigFile load_optional(const std::string& path) {
  ConfigFile f;
  f.path = path;
  if (!path.empty() && std::filesystem::exists(path)) f.json = json_util::parse_file(path);
  return f;
}

}  // namespace

void Tokenizer::Impl::encode_text(std::string_view segment, bool at_origin, std::vector<int32_t>& out) const {
  thread_local std::vector<Piece> pieces;
  thread_local std::vector<Segment> subs;
  std::string normalized(segment);
  if (normalizer) normalizer->normalize(normalized);
  // Added tokens with normalized=true are matched inside the normalized text.
  if (added.has_normalized_tokens()) {
    added.split(normalized, /*normalized_pass=*/true, /*skip_special=*/false, subs);
  } else {
    subs.assign(1, Segment{0, normalized.size(), -1});
  }
  for (const Segment& s : subs) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    if (s.begin == s.end) continue;
    pieces.clear();
    pieces.push_back({normalized.substr(s.begin, s.end - s.begin), at_origin && s.begin == 0});
    if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces);
    for (const Piece& p : pieces) model->tokenize(p.text, out);
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

struct Tokenizer::Sources {
  std::string tokenizer_json;         // path, or the name used in messages when text is given
  const std::string* text = nullptr;  // tokenizer.json content already in memory
  ConfigFile tokenizer_config, generation_config, model_config;
  std::string jinja_template;  // chat_template.jinja, "" when absent
};

Tokenizer Tokenizer::from_files(const std::string& tokenizer_json_path,
                                const std::string& tokenizer_config_path) {
  Sources src;
  src.tokenizer_json = tokenizer_json_path;
  src.tokenizer_config.path = tokenizer_config_path;
  if (!tokenizer_config_path.empty())
    src.tokenizer_config.json = json_util::parse_file(tokenizer_config_path);
  return load(src);
}

Tokenizer Tokenizer::from_json(const std::string& tokenizer_json, const std::string& tokenizer_config_json,
                               const std::string& name) {
  Sources src;
  src.tokenizer_json = name;
  src.text = &tokenizer_json;
  if (!tokenizer_config_json.empty()) {
    src.tokenizer_config.path = name + " (tokenizer_config.json)";
    src.tokenizer_config.json = json_util::parse(tokenizer_config_json, src.tokenizer_config.path);
  }
  return load(src);
}

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path d(dir);
  const std::string tj = (d / "tokenizer.json").string();
  if (!fs::exists(tj)) fail("{}: no tokenizer.json in this directory", dir);
  const fs::path jinja = d / "chat_template.jinja";
  Sources src;
  src.tokenizer_json = tj;
  src.tokenizer_config = load_optional((d / "tokenizer_config.json").string());
  src.generation_config = load_optional((d / "generation_config.json").string());
  src.model_config = load_optional((d / "config.json").string());
  if (fs::exists(jinja)) src.jinja_template = read_file(jinja.string());
  return load(src);
}

namespace {

// tokenizer.json `added_tokens`, then tokenizer_config.json `added_tokens_decoder` for the ids
// tokenizer.json lacks (transformers registers just the missing ones).
void load_added_tokens(const json& root, const std::string& path, const ConfigFile& tc, const BpeModel& model,
                       AddedVocabulary& added) {
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const auto& list = root["added_tokens"];
    if (!list.is_array()) fail("{}: field \"added_tokens\" must be an array", path);
    for (size_t i = 0; i < list.size(); ++i)
      added.add(parse_added_token(list[i], fmt::format("{}: added_tokens[{}]", path, i), std::nullopt));
  }
  if (!tc.json.is_object() || !tc.json.contains("added_tokens_decoder")) return;
  const auto& dec = tc.json["added_tokens_decoder"];
  if (!dec.is_object()) fail("{}: field \"added_tokens_decoder\" must be an object", tc.path);
  for (auto it = dec.begin(); it != dec.end(); ++it) {
    const std::string where = fmt::format("{}: added_tokens_decoder[\"{}\"]", tc.path, it.key());
    int64_t id = -1;
    const std::string& key = it.key();
    if (!key.empty() && key.size() <= 10 &&
        std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }))
      id = std::stoll(key);
    if (id < 0) fail("{}: key must be a token id", where);
    if (added.find_by_id(static_cast<int32_t>(id))) continue;
    AddedToken t = parse_added_token(it.value(), where, id);
    if (auto vid = model.token_to_id(t.content); vid && *vid != t.id)
      fail("{}: \"{}\" has id {} in tokenizer.json, not {}", where, t.content, *vid, t.id);
    added.add(std::move(t));
  }
}

// transformers' LlamaTokenizerFast (and kin) replace tokenizer.json's post-processor by
// [bos] $A [eos] according to add_bos_token (default true) / add_eos_token (default false).
std::unique_ptr<PostProcessor> transformers_post_processor(const ConfigFile& tc,
                                                           const SpecialTokenIds& special) {
  if (!tc.json.is_object()) return nullptr;
  const std::string cls = json_util::opt_string(tc.json, "tokenizer_class", tc.path).value_or("");
  if (!rebuilds_post_processor(cls)) return nullptr;
  const bool add_bos = json_util::opt_bool(tc.json, "add_bos_token", tc.path).value_or(true);
  const bool add_eos = json_util::opt_bool(tc.json, "add_eos_token", tc.path).value_or(false);
  if (add_bos && !special.bos) fail("{}: add_bos_token is true but there is no bos_token", tc.path);
  if (add_eos && !special.eos) fail("{}: add_eos_token is true but there is no eos_token", tc.path);
  std::vector<int32_t> prefix, suffix;
  if (add_bos) prefix.push_back(*special.bos);
  if (add_eos) suffix.push_back(*special.eos);
  return make_affix_processor(std::move(prefix), std::move(suffix));
}

}  // namespace

Tokenizer Tokenizer::load(const Sources& src) {
  using namespace json_util;
  const std::string& path = src.tokenizer_json;
  const ConfigFile& tc = src.tokenizer_config;
  auto impl = std::make_unique<Impl>();
  const json root = src.text ? parse(*src.text, path) : parse_file(path);
  if (!root.is_object()) fail("{}: expected a JSON object", path);

  impl->model = BpeModel::from_json(require(root, "model", path), path + ": model");
  load_added_tokens(root, path, tc, *impl->model, impl->added);
  impl->max_id = impl->model->max_id();
  for (const auto& t : impl->added.tokens()) impl->max_id = std::max(impl->max_id, t.id);

  impl->normalizer = make_normalizer(root.value("normalizer", json()), path + ": normalizer");
  impl->pre_tokenizer = make_pre_tokenizer(root.value("pre_tokenizer", json()), path + ": pre_tokenizer");
  impl->post_processor = make_post_processor(root.value("post_processor", json()), path + ": post_processor");
  impl->decoder = make_decoder(root.value("decoder", json()), path + ": decoder");
  impl->added.build(impl->normalizer.get());

  const Impl* raw = impl.get();
  const VocabLookup lookup{[raw](std::string_view t) -> std::optional<int32_t> {
                             if (const auto* a = raw->added.find_by_content(t)) return a->id;
                             return raw->model->token_to_id(t);
                           },
                           [raw](int32_t id) -> std::optional<std::string> {
                             if (const auto* a = raw->added.find_by_id(id)) return a->content;
                             if (const auto* s = raw->model->id_to_token(id)) return *s;
                             return std::nullopt;
                           }};
  impl->special =
      resolve_special_tokens(tc, src.generation_config, src.model_config, impl->model->unk_token(), lookup);
  impl->chat_template = resolve_chat_template(tc, src.jinja_template);
  if (auto pp = transformers_post_processor(tc, impl->special)) impl->post_processor = std::move(pp);
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  EncodeOptions o;
  o.add_special_tokens = add_special_tokens;
  return encode(text, o);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& opts) const {
  if (auto bad = find_invalid_utf8(text)) fail("tokenizer: input text is not valid UTF-8 (byte {})", *bad);
  const Impl& m = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<Segment> segments;
  m.added.split(text, /*normalized_pass=*/false, opts.split_special_tokens, segments);
  for (const Segment& s : segments) {
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else {
      m.encode_text(text.substr(s.begin, s.end - s.begin), s.begin == 0, ids);
    }
  }
  if (opts.add_special_tokens && m.post_processor) m.post_processor->process(ids);
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (const auto* a = m.added.find_by_id(id)) {
      if (!(skip_special_tokens && a->special)) tokens.push_back(a->content);
    } else if (const auto* s = m.model->id_to_token(id)) {
      tokens.push_back(*s);
    }
  }
  if (!m.decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  m.decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (const auto* a = impl_->added.find_by_content(token)) return a->id;
  return impl_->model->token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (const auto* a = impl_->added.find_by_id(id)) return a->content;
  if (const auto* s = impl_->model->id_to_token(id)) return *s;
  return {};
}

bool Tokenizer::is_special(int32_t id) const {
  const auto* a = impl_->added.find_by_id(id);
  return a && a->special;
}

size_t Tokenizer::vocab_size() const {
  return static_cast<size_t>(impl_->max_id + 1);
}
const SpecialTokenIds& Tokenizer::special() const {
  return impl_->special;
}
const std::string& Tokenizer::chat_template() const {
  return impl_->chat_template;
}
const char* Tokenizer::unicode_version() {
  return tok::unicode_version();
}

}  // namespace bidora
