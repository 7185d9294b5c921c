#include "adapters/merge.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <tuple>

#include "adapters/adapter_loading.h"
#include "core/error.h"
#include "core/files.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "io/json_util.h"
#include "io/model_files.h"
#include "io/safetensors.h"
#include "model/linear.h"
#include "model/weights.h"

namespace bidora {
namespace {

namespace fs = std::filesystem;

constexpr const char* kIndexFile = "model.safetensors.index.json";

// Copied next to the merged weights when the base has them: what transformers' from_pretrained
// and AutoTokenizer read besides the weights (config.json is rewritten, not copied).
constexpr const char* kCopiedFiles[] = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
};

bool is_floating(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F16;
}

// float32 → IEEE half, round to nearest even (torch's .to(torch.float16)). A finite value beyond
// half's range would become inf: an error naming the tensor, since that breaks the model silently.
uint16_t f32_to_f16(float f, const std::string& tensor) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (a == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // inf stays inf
  if (a >= 0x477ff000u)                                                // rounds to 65536 or more
    fail("tensor '{}': value {} is outside float16's range (±65504); use --dtype bf16 or f32", tensor, f);
  if (a < 0x38800000u) {  // below half's smallest normal: a multiple of 2^-24, rounded
    const float q = std::nearbyint(std::bit_cast<float>(a) * 16777216.0f);  // exact scaling by 2^24
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(q));
  }
  uint32_t r = a - (112u << 23);  // rebias the exponent 127 → 15
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
}

// Converts float32 values to `to` and appends them to `w` as tensor `name`.
void append_converted(SafetensorsStreamWriter& w, const std::string& name, const float* v, size_t n, DType to,
                      std::vector<uint16_t>& half) {
  if (to == DType::F32) {
    w.append(name, {reinterpret_cast<const uint8_t*>(v), n * 4});
    return;
  }
  half.resize(n);
  if (to == DType::BF16) {
    f32_to_bf16_n(v, half.data(), n);
  } else {
    for (size_t i = 0; i < n; ++i) half[i] = f32_to_f16(v[i], name);
  }
  w.append(name, {reinterpret_cast<const uint8_t*>(half.data()), n * 2});
}

// "model.layers.12.mlp.up_proj.weight" -> (12, Up); nullopt for any other tensor.
std::optional<std::pair<int64_t, LinearKind>> linear_of(const std::string& name, int64_t num_layers) {
  static const std::string prefix = "model.layers.";
  if (name.rfind(prefix, 0) != 0) return std::nullopt;
  size_t pos = prefix.size();
  int64_t layer = 0;
  const size_t digits_begin = pos;
  while (pos < name.size() && std::isdigit(static_cast<unsigned char>(name[pos])) && pos - digits_begin < 9)
    layer = layer * 10 + (name[pos++] - '0');
  if (pos == digits_begin || pos >= name.size() || name[pos] != '.' || layer >= num_layers)
    return std::nullopt;
  const std::string rest = name.substr(pos + 1);
  for (int k = 0; k < kNumLinearKinds; ++k) {
    const auto kind = static_cast<LinearKind>(k);
    if (rest == std::string(linear_path(kind)) + ".weight") return std::make_pair(layer, kind);
  }
  return std::nullopt;
}

// The order transformers' state_dict gives (and save_pretrained shards by): embeddings, then the
// layers in numeric order, then the final norm and lm_head; anything else after, by name.
struct TensorOrder {
  int group;
  int64_t layer;
  std::string name;
  bool operator<(const TensorOrder& o) const {
    return std::tie(group, layer, name) < std::tie(o.group, o.layer, o.name);
  }
};
TensorOrder order_key(const std::string& name) {
  if (name.rfind("model.embed_tokens.", 0) == 0) return {0, 0, name};
  if (name.rfind("model.layers.", 0) == 0) {
    const size_t p = 13;
    size_t end = p;
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
    if (end > p && end - p < 10) return {1, std::stoll(name.substr(p, end - p)), name};
  }
  if (name.rfind("model.", 0) == 0) return {2, 0, name};
  if (name.rfind("lm_head.", 0) == 0) return {3, 0, name};
  return {4, 0, name};
}

// True when `inner` is `outer` or lies inside it (both made absolute and normalised, symlinks
// resolved where they exist).
bool same_or_inside(const fs::path& inner, const fs::path& outer) {
  std::error_code ec;
  const fs::path a = fs::weakly_canonical(fs::absolute(inner, ec), ec);
  const fs::path b = fs::weakly_canonical(fs::absolute(outer, ec), ec);
  auto ai = a.begin();
  for (auto bi = b.begin(); bi != b.end(); ++bi, ++ai) {
    if (bi->empty()) continue;  // trailing "/" of a directory path
    if (ai == a.end() || *ai != *bi) return false;
  }
  return true;
}

DType default_dtype(const std::string& config_path, const CheckpointTensors& ck) {
  const auto cfg = json_util::parse_file(config_path);
  for (const char* key : {"torch_dtype", "dtype"}) {  // transformers ≥ 4.56 writes "dtype"
    const auto it = cfg.find(key);
    if (it == cfg.end() || !it->is_string()) continue;
    const std::string v = it->get<std::string>();
    if (v == "float32") return DType::F32;
    if (v == "bfloat16") return DType::BF16;
    if (v == "float16") return DType::F16;
  }
  // "auto" or absent: what the checkpoint stores.
  const TensorView& e = ck.get("model.embed_tokens.weight");
  return is_floating(e.dtype) ? e.dtype : DType::F32;
}

// config.json with torch_dtype (and transformers' newer "dtype", when present) set to the
// output dtype; every other key kept in its order.
std::string merged_config(const std::string& config_path, DType dtype) {
  auto cfg = nlohmann::ordered_json::parse(read_file(config_path), nullptr, /*allow_exceptions=*/false);
  if (!cfg.is_object()) fail("{}: not a JSON object", config_path);
  cfg["torch_dtype"] = torch_dtype_name(dtype);
  if (cfg.contains("dtype")) cfg["dtype"] = torch_dtype_name(dtype);
  return cfg.dump(2) + "\n";
}

}  // namespace

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "float32";
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    default:
      fail("output dtype {} is not a floating type", dtype_name(t));
  }
}

uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  std::string s;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) s.push_back(static_cast<char>(std::toupper(c)));
  static const std::pair<const char*, double> units[] = {
      {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0}, {"TIB", 1099511627776.0},
      {"KB", 1e3},     {"MB", 1e6},        {"GB", 1e9},           {"TB", 1e12},
      {"B", 1.0}};
  double mult = 1.0;
  for (const auto& [unit, m] : units) {
    const std::string u = unit;
    if (s.size() > u.size() && s.compare(s.size() - u.size(), u.size(), u) == 0) {
      s.resize(s.size() - u.size());
      mult = m;
      break;
    }
  }
  double value = 0;
  size_t used = 0;
  try {
    value = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (s.empty() || used != s.size() || !std::isfinite(value) || value <= 0 || s[0] == '+' || s[0] == '-')
    fail("{}: '{}' is not a size (e.g. 5GB, 500MB, 2GiB or a number of bytes)", what, text);
  const double bytes = std::floor(value * mult);
  if (bytes < 1 || bytes > 1.8e19) fail("{}: '{}' is out of range", what, text);
  return static_cast<uint64_t>(bytes);
}

std::vector<std::vector<size_t>> plan_shards(const std::vector<uint64_t>& sizes, uint64_t max_bytes) {
  std::vector<std::vector<size_t>> shards;
  std::vector<size_t> current;
  uint64_t current_bytes = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] > max_bytes) {
      shards.push_back({i});
      continue;
    }
    if (current_bytes + sizes[i] > max_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(i);
    current_bytes += sizes[i];
  }
  if (!current.empty()) shards.push_back(std::move(current));
  return shards;
}

std::string shard_file_name(size_t index, size_t count) {
  if (count == 1) return "model.safetensors";
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index + 1, count);
}

MergeResult merge_adapter(const MergeOptions& o, const MergeProgress& progress) {
  BIDORA_CHECK(!o.output.empty(), "--output: no directory given");
  BIDORA_CHECK(o.max_shard_bytes > 0, "--max-shard-size must be positive");
  BIDORA_CHECK(!o.dtype || is_floating(*o.dtype), "--dtype: {} is not one of f32, bf16, f16",
               dtype_name(*o.dtype));
  std::error_code ec;
  // Refusals that need nothing loaded come first, so a mistake costs no loading time.
  if (fs::exists(o.output, ec) && !o.overwrite)
    fail("{}: already exists; pass --overwrite to replace it", o.output);
  BIDORA_CHECK(fs::is_directory(o.adapter, ec), "{}: no such adapter directory", o.adapter);
  const std::string model_dir = resolve_model_dir(o.model);
  for (const auto& [dir, what] :
       {std::pair{model_dir, "the base model"}, std::pair{o.adapter, "the adapter"}})
    BIDORA_CHECK(!same_or_inside(dir, o.output),
                 "--output {} would replace {} ({}): choose another directory", o.output, what, dir);

  // The adapter is checked against the model as every command checks it; the model's linears are
  // kept in the checkpoint's own storage where that costs no copy (f32 or bf16 mapped in place).
  // The merge itself reads the checkpoint tensors, never these matrices.
  WeightStorage storage = WeightStorage::BF16;
  {
    const CheckpointTensors probe(model_dir);
    if (const TensorView* q = probe.find("model.layers.0.self_attn.q_proj.weight");
        q && q->dtype == DType::F32)
      storage = WeightStorage::F32;
  }
  const auto weights = ModelWeights::load(model_dir, LoadOptions(storage));
  const LoadedAdapter adapter = load_adapter_for_model(o.adapter, *weights, o.model, o.allow_base_mismatch);
  const AdapterSet& set = *adapter.set;
  const CheckpointTensors& ck = weights->checkpoint();
  // Loading a DoRA adapter read every projection once (its initial row norms); drop those pages
  // so that resident memory grows by one tensor at a time below, not by the whole model.
  for (const std::string& name : ck.names()) release_mapped_range(ck.get(name).data, ck.get(name).nbytes);
  const std::string config_path = (fs::path(model_dir) / "config.json").string();

  MergeResult result;
  result.output = o.output;
  result.model_dir = model_dir;
  result.dtype = o.dtype ? *o.dtype : default_dtype(config_path, ck);

  // Every tensor of the base, in state_dict order, with its output dtype and size.
  struct Item {
    std::string name;
    const TensorView* src;
    DType dtype;
    const LoraLayer* lora;  // the adapter of this projection, or nullptr
  };
  std::vector<std::string> names = ck.names();
  std::sort(names.begin(), names.end(),
            [](const std::string& a, const std::string& b) { return order_key(a) < order_key(b); });
  std::vector<Item> items;
  std::vector<uint64_t> sizes;
  const int64_t num_layers = weights->config().num_layers;
  for (const std::string& name : names) {
    const TensorView& t = ck.get(name);
    const LoraLayer* lora = nullptr;
    if (const auto lk = linear_of(name, num_layers)) lora = set.find(lk->first, lk->second);
    const DType dt = is_floating(t.dtype) ? result.dtype : t.dtype;  // integer buffers keep theirs
    items.push_back({name, &t, dt, lora});
    sizes.push_back(static_cast<uint64_t>(t.numel()) * dtype_size(dt));
    result.total_size += sizes.back();
    result.merged_linears += lora ? 1 : 0;
  }
  BIDORA_CHECK(result.merged_linears == static_cast<int64_t>(set.all().size()),
               "{}: {} adapted linears but only {} of their weights found in {}", o.adapter, set.all().size(),
               result.merged_linears, model_dir);
  const auto shards = plan_shards(sizes, o.max_shard_bytes);

  replace_directory(o.output, [&](const std::string& tmp) {
    WeightTile tile;
    std::vector<float> f32;
    std::vector<uint16_t> half;
    for (size_t s = 0; s < shards.size(); ++s) {
      const std::string file = shard_file_name(s, shards.size());
      std::vector<SafetensorsStreamWriter::Entry> entries;
      std::map<std::string, const Item*> by_name;
      for (size_t i : shards[s]) {
        entries.push_back({items[i].name, items[i].dtype, items[i].src->shape});
        by_name[items[i].name] = &items[i];
      }
      SafetensorsStreamWriter w((fs::path(tmp) / file).string(), std::move(entries));
      for (const auto& e : w.order()) {
        const Item& it = *by_name.at(e.name);
        const TensorView& t = *it.src;
        const std::string& source = ck.file_of(it.name);
        if (it.lora) {
          // The base weight as stored, as float32: bf16 and f32 read in place, f16 converted.
          const FrozenMatrix W = FrozenMatrix::from_tensor(
              t, t.dtype == DType::BF16 ? WeightStorage::BF16 : WeightStorage::F32, source);
          const std::vector<float> merged = it.lora->merged_weight(W, tile);
          append_converted(w, it.name, merged.data(), merged.size(), it.dtype, half);
        } else if (t.dtype == it.dtype) {
          w.append(it.name, {t.data, t.nbytes});  // bit-exact copy
        } else {
          // Converted a slice at a time: an embedding matrix never exists in float32 whole.
          const size_t n = static_cast<size_t>(t.numel()), chunk = size_t{1} << 20,
                       in_size = dtype_size(t.dtype);
          for (size_t i = 0; i < n; i += chunk) {
            TensorView part = t;
            const size_t m = std::min(chunk, n - i);
            part.shape = {static_cast<int64_t>(m)};
            part.data = t.data + i * in_size;
            part.nbytes = m * in_size;
            f32.resize(m);
            tensor_to_f32(part, f32.data(), source);
            append_converted(w, it.name, f32.data(), m, it.dtype, half);
          }
        }
        // Done with these source pages: they leave this process's RSS (re-read from disk if needed).
        release_mapped_range(t.data, t.nbytes);
        ++result.tensors;
      }
      w.finish();
      result.files.push_back(file);
      if (progress) progress(s, shards.size(), file, w.file_size());
    }
    if (shards.size() > 1) {
      // As transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
      nlohmann::json index;
      index["metadata"]["total_size"] = result.total_size;
      auto& map = index["weight_map"] = nlohmann::json::object();
      for (size_t s = 0; s < shards.size(); ++s)
        for (size_t i : shards[s]) map[items[i].name] = shard_file_name(s, shards.size());
      write_file_atomic((fs::path(tmp) / kIndexFile).string(), index.dump(2) + "\n");
    }
    write_file_atomic((fs::path(tmp) / "config.json").string(), merged_config(config_path, result.dtype));
    result.copied.push_back("config.json");
    for (const char* name : kCopiedFiles) {
      const fs::path src = fs::path(model_dir) / name;
      if (!fs::is_regular_file(src, ec)) continue;
      fs::copy_file(src, fs::path(tmp) / name, ec);
      if (ec) fail("{}: cannot copy to {}: {}", src.string(), tmp, ec.message());
      result.copied.push_back(name);
    }
  });
  return result;
}

}  // namespace bidora
