#include "cli/config_options.h"

#include <fmt/format.h>

#include <cctype>

#include "config/config_fields.h"
#include "core/error.h"

namespace bidora::cli {

using config::FieldInfo;
using config::FieldType;

struct ConfigOptions::Binding {
  const FieldInfo* field = nullptr;
  CLI::Option* option = nullptr;
  std::string text;                // Int, Float, String, Enum
  std::vector<std::string> items;  // List
  bool flag = false;               // Bool
};

namespace {

std::vector<std::string> split_names(const std::string& flags) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= flags.size()) {
    size_t comma = flags.find(',', start);
    if (comma == std::string::npos) comma = flags.size();
    out.push_back(flags.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::string first_long_name(const std::string& flags) {
  for (const auto& n : split_names(flags)) {
    if (n.rfind("--", 0) == 0) return n;
  }
  return flags;
}

std::string group_of(const FieldInfo& f) {
  const std::string parent = f.parent();
  if (parent == "training.bidora") return "BiDoRA";
  std::string g = parent;
  g[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(g[0])));
  return g;
}

std::string describe(const FieldInfo& f) {
  const TrainConfig defaults;
  std::string d = f.help;
  if (f.type == FieldType::Enum) d += fmt::format(" ({})", fmt::join(f.choices, "|"));
  if (f.type == FieldType::Int || f.type == FieldType::Float)
    d += fmt::format(" ({})", f.range.describe(f.key()));
  std::string def = config::format_value(f.get(defaults));
  if (f.type == FieldType::Bool) def = std::get<bool>(f.get(defaults)) ? "on" : "off";
  if (!def.empty()) d += fmt::format(" [default: {}]", def);
  return d;
}

}  // namespace

ConfigOptions::ConfigOptions(CLI::App& app) {
  app.add_option("-c,--config", config_file_, "YAML configuration file; flags override its values")
      ->type_name("FILE")
      ->group("Configuration");
  for (const auto& f : config::config_fields()) {
    auto b = std::make_unique<Binding>();
    b->field = &f;
    switch (f.type) {
      case FieldType::Bool: {
        // --packing / --no-packing: one option whose value is the last form given.
        std::string names = f.flags;
        for (const auto& n : split_names(f.flags)) {
          if (n.rfind("--", 0) == 0) names += ",!--no-" + n.substr(2);
        }
        b->option = app.add_flag(names, b->flag, describe(f));
        break;
      }
      case FieldType::List:
        b->option = app.add_option(f.flags, b->items, describe(f))->delimiter(',')->type_name("LIST");
        break;
      default: {
        const char* type = f.type == FieldType::Int     ? "INT"
                           : f.type == FieldType::Float ? "NUMBER"
                           : f.type == FieldType::Enum  ? "NAME"
                                                        : "TEXT";
        // A flag given twice keeps the last value, so scripts can append overrides.
        b->option = app.add_option(f.flags, b->text, describe(f))
                        ->type_name(type)
                        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
        if (!f.implicit_value.empty()) b->option->expected(0, 1);
        break;
      }
    }
    b->option->group(group_of(f));
    bindings_.push_back(std::move(b));
  }
}

ConfigOptions::~ConfigOptions() = default;

TrainConfig ConfigOptions::resolve(ConfigOrigins* origins) const {
  ConfigOrigins local;
  for (const auto& f : config::config_fields()) local[f.path] = "default";
  TrainConfig cfg;
  if (!config_file_.empty()) cfg = load_config_file(config_file_, &local);
  for (const auto& b : bindings_) {
    if (b->option->count() == 0) continue;
    const FieldInfo& f = *b->field;
    const std::string flag = first_long_name(f.flags);
    switch (f.type) {
      case FieldType::Bool:
        f.set(cfg, b->flag);
        local[f.path] = b->flag ? flag : "--no-" + flag.substr(2);
        break;
      case FieldType::List: {
        std::string why;
        auto v = config::parse_list(f, b->items, why);
        if (!v) fail("{} ({}): {}", flag, f.path, why);
        f.set(cfg, *v);
        local[f.path] = flag;
        break;
      }
      default:
        set_field(cfg, f.path, b->text.empty() && !f.implicit_value.empty() ? f.implicit_value : b->text,
                  flag, &local);
        break;
    }
  }
  if (origins) *origins = std::move(local);
  return cfg;
}

}  // namespace bidora::cli
