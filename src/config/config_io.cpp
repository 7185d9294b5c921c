// YAML in and out, JSON out, and single-field overrides, all driven by config_fields().
#include <yaml-cpp/yaml.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "config/config_fields.h"
#include "config/train_config.h"
#include "core/error.h"
#include "core/files.h"
#include "core/utf8.h"

namespace bidora {
namespace {

using config::FieldInfo;
using config::FieldType;
using config::FieldValue;

const char* node_kind(const YAML::Node& n) {
  if (n.IsNull()) return "an empty value";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "a value";
}

bool is_section(const std::string& path) {
  const auto& s = config::config_sections();
  return std::find(s.begin(), s.end(), path) != s.end();
}

// The field that `key` names inside section `parent`, through its canonical name or an alias.
const FieldInfo* field_in(const std::string& parent, const std::string& key) {
  for (const auto& f : config::config_fields()) {
    if (f.parent() != parent) continue;
    if (f.key() == key || std::find(f.aliases.begin(), f.aliases.end(), key) != f.aliases.end()) return &f;
  }
  return nullptr;
}

std::string unknown_field_message(const std::string& parent, const std::string& key) {
  const std::string full = parent.empty() ? key : parent + "." + key;
  std::string msg =
      parent.empty() ? fmt::format("unknown section '{}'", key) : fmt::format("unknown field '{}'", full);
  // A typo of something in the same section?
  std::vector<std::string> local;
  for (const auto& f : config::config_fields()) {
    if (f.parent() == parent) local.push_back(f.key());
  }
  for (const auto& s : config::config_sections()) {
    const size_t dot = s.rfind('.');
    const std::string s_parent = dot == std::string::npos ? "" : s.substr(0, dot);
    if (s_parent == parent) local.push_back(s.substr(dot == std::string::npos ? 0 : dot + 1));
  }
  if (auto s = config::did_you_mean(key, local)) return msg + fmt::format(" (did you mean '{}'?)", *s);
  // The right name in the wrong section?
  for (const auto& f : config::config_fields()) {
    if (f.key() == key || std::find(f.aliases.begin(), f.aliases.end(), key) != f.aliases.end())
      return msg + fmt::format(" (did you mean '{}'?)", f.path);
  }
  if (parent.empty()) {
    std::vector<std::string> top;
    for (const auto& s : config::config_sections()) {
      if (s.find('.') == std::string::npos) top.push_back(s);
    }
    return msg + fmt::format(" (sections: {})", fmt::join(top, ", "));
  }
  return msg + fmt::format(" (fields of '{}': {})", parent, fmt::join(local, ", "));
}

// A scalar's text, or nullopt with `why` set when it is not UTF-8. The file was checked before
// parsing, but yaml-cpp decodes the double-quoted escapes \_ (U+00A0) and \N (U+0085) to single
// Latin-1 bytes instead of UTF-8.
std::optional<std::string> utf8_scalar(const YAML::Node& n, std::string& why) {
  const std::string& text = n.Scalar();
  if (find_invalid_utf8(text)) {
    why =
        "the value is not valid UTF-8 after YAML unescaping (the escapes \\_ and \\N are not "
        "supported: write the character itself)";
    return std::nullopt;
  }
  return text;
}

struct YamlLoader {
  const std::string& source;
  TrainConfig& cfg;
  ConfigOrigins origins;
  std::vector<std::string> problems;

  void problem(int line, const std::string& what) {
    problems.push_back(fmt::format("{}:{}: {}", source, line, what));
  }

  void walk(const YAML::Node& map, const std::string& parent) {
    std::set<std::string> seen;
    for (const auto& entry : map) {
      // Copies: yaml-cpp nodes are handles, and the pair an iterator yields is a temporary.
      const YAML::Node k = entry.first;
      const YAML::Node v = entry.second;
      const int line = k.Mark().line + 1;
      if (!k.IsScalar()) {
        problem(line, "a key must be a plain name");
        continue;
      }
      const std::string key = k.Scalar();
      const std::string full = parent.empty() ? key : parent + "." + key;
      if (is_section(full)) {
        if (!seen.insert(full).second) problem(line, fmt::format("section '{}' appears twice", full));
        if (v.IsNull()) continue;  // an empty section keeps its defaults
        if (!v.IsMap()) {
          problem(line, fmt::format("'{}' must be a mapping of fields, got {}", full, node_kind(v)));
          continue;
        }
        walk(v, full);
        continue;
      }
      const FieldInfo* f = parent.empty() ? nullptr : field_in(parent, key);
      if (!f) {
        problem(line, unknown_field_message(parent, key));
        continue;
      }
      if (!seen.insert(f->path).second) {
        problem(line, fmt::format("'{}' is set twice (here as '{}')", f->path, key));
        continue;
      }
      std::string why;
      std::optional<FieldValue> value;
      if (v.IsNull()) {
        if (f->type == FieldType::String) value = FieldValue{std::string()};
        if (f->type == FieldType::List) value = FieldValue{std::vector<std::string>()};
        if (!value) why = fmt::format("expected {}, got an empty value", config::expected_type(*f));
      } else if (v.IsScalar()) {
        if (auto text = utf8_scalar(v, why)) value = config::parse_value(*f, *text, why);
      } else if (v.IsSequence() && f->type == FieldType::List) {
        std::vector<std::string> items;
        for (const auto& item : v) {
          if (!item.IsScalar()) {
            why = fmt::format("expected {}, got a nested {}", config::expected_type(*f), node_kind(item));
            break;
          }
          auto text = utf8_scalar(item, why);
          if (!text) break;
          items.push_back(std::move(*text));
        }
        if (why.empty()) value = config::parse_list(*f, items, why);
      } else {
        why = fmt::format("expected {}, got {}", config::expected_type(*f), node_kind(v));
      }
      if (!value) {
        problem(line, fmt::format("{}: {}", f->path, why));
        continue;
      }
      f->set(cfg, *value);
      origins[f->path] = fmt::format("{}:{}", source, line);
    }
  }
};

std::string yaml_scalar(const FieldValue& v, FieldType type) {
  if (type == FieldType::String) {
    YAML::Emitter e;
    e << YAML::DoubleQuoted << std::get<std::string>(v);
    return e.c_str();
  }
  if (type == FieldType::List) {
    return fmt::format("[{}]", fmt::join(std::get<std::vector<std::string>>(v), ", "));
  }
  return config::format_value(v);
}

}  // namespace

void apply_yaml(TrainConfig& cfg, const std::string& text, const std::string& source,
                ConfigOrigins* origins) {
  // YAML text is Unicode; yaml-cpp passes invalid UTF-8 through into string fields, which then
  // neither print back as the same YAML nor serialise as JSON (bidora config --json).
  if (auto bad = find_invalid_utf8(text)) {
    const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + *bad, '\n'));
    fail("{}:{}: not valid UTF-8 (byte offset {}); YAML files must be UTF-8 text", source, line, *bad);
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    fail("{}:{}:{}: YAML syntax error: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  if (!root || root.IsNull()) return;  // an empty file keeps every default
  if (!root.IsMap()) {
    fail("{}:{}: expected a mapping of sections (model, adapter, training, data, output, hardware), got {}",
         source, root.Mark().line + 1, node_kind(root));
  }
  TrainConfig updated = cfg;  // nothing changes unless the whole file is valid
  YamlLoader loader{source, updated, {}, {}};
  try {
    loader.walk(root, "");
  } catch (const YAML::Exception& e) {
    fail("{}:{}: {}", source, e.mark.line + 1, e.msg);
  }
  if (loader.problems.size() == 1) throw Error(loader.problems.front());
  if (!loader.problems.empty()) {
    throw Error(fmt::format("{} problems in {}:\n  {}", loader.problems.size(), source,
                            fmt::join(loader.problems, "\n  ")));
  }
  cfg = std::move(updated);
  if (origins) {
    for (auto& [k, v] : loader.origins) (*origins)[k] = v;
  }
}

TrainConfig load_config_file(const std::string& path, ConfigOrigins* origins) {
  TrainConfig cfg;
  apply_yaml(cfg, read_file(path), path, origins);
  return cfg;
}

void set_field(TrainConfig& cfg, const std::string& path, const std::string& text, const std::string& origin,
               ConfigOrigins* origins) {
  const FieldInfo* f = config::find_field(path);
  if (!f) fail("{}: unknown configuration field '{}'", origin, path);
  std::string why;
  auto value = config::parse_value(*f, text, why);
  if (!value) fail("{} ({}): {}", origin, path, why);
  f->set(cfg, *value);
  if (origins) (*origins)[path] = origin;
}

std::string to_yaml(const TrainConfig& cfg) {
  // Fields in table order, grouped by section; help as trailing comments so the output doubles
  // as a documented template.
  std::vector<std::pair<std::string, std::string>> lines;  // (text, comment)
  std::string open_parent;
  for (const auto& f : config::config_fields()) {
    const std::string parent = f.parent();
    if (parent != open_parent) {
      // Open every level of `parent` that is not already open.
      const size_t dot = parent.find('.');
      const std::string top = parent.substr(0, dot);
      if (open_parent.substr(0, open_parent.find('.')) != top) {
        if (!lines.empty()) lines.emplace_back("", "");
        lines.emplace_back(top + ":", "");
      }
      if (dot != std::string::npos) lines.emplace_back("  " + parent.substr(dot + 1) + ":", "");
      open_parent = parent;
    }
    const std::string indent(2 * (1 + std::count(parent.begin(), parent.end(), '.')), ' ');
    lines.emplace_back(indent + f.key() + ": " + yaml_scalar(f.get(cfg), f.type), f.help);
  }
  size_t width = 0;
  for (const auto& [text, comment] : lines) {
    if (!comment.empty()) width = std::max(width, text.size());
  }
  std::string out = "# bidora training configuration. Load it with: bidora <command> --config FILE\n";
  for (const auto& [text, comment] : lines) {
    out += text;
    if (!comment.empty()) out += std::string(width - text.size() + 2, ' ') + "# " + comment;
    out += "\n";
  }
  return out;
}

nlohmann::json to_json(const TrainConfig& cfg) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& f : config::config_fields()) {
    nlohmann::json* node = &j;
    const std::string parent = f.parent();
    size_t start = 0;
    while (start <= parent.size()) {
      size_t dot = parent.find('.', start);
      if (dot == std::string::npos) dot = parent.size();
      node = &(*node)[parent.substr(start, dot - start)];
      start = dot + 1;
    }
    (*node)[f.key()] = std::visit([](const auto& x) { return nlohmann::json(x); }, f.get(cfg));
  }
  return j;
}

double lora_scaling(const AdapterSection& a) {
  const double r = static_cast<double>(a.r);
  return a.use_rslora ? a.alpha / std::sqrt(r) : a.alpha / r;
}

}  // namespace bidora
