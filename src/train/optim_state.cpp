#include "train/optim_state.h"

#include <charconv>
#include <set>

#include "core/error.h"

namespace bidora::train {

namespace {

std::string g17(double x) {
  return fmt::format("{:.17g}", x);
}

std::map<std::string, std::string> optimizer_metadata(const Optimizer& opt) {
  return {{"bidora.optimizer", opt.kind()},
          {"bidora.optimizer.beta1", g17(opt.config().beta1)},
          {"bidora.optimizer.beta2", g17(opt.config().beta2)},
          {"bidora.optimizer.eps", g17(opt.config().eps)}};
}

}  // namespace

void save_optimizer_state(const std::string& path, const Optimizer& opt, const LrSchedule& schedule) {
  SafetensorsWriter w;
  opt.save_state(w);
  std::map<std::string, std::string> md = optimizer_metadata(opt);
  md.merge(schedule.to_metadata());
  md["bidora.optimizer.step"] = std::to_string(opt.step_count());
  md["format"] = "pt";
  w.set_metadata(std::move(md));
  w.write(path);
}

int64_t load_optimizer_state(const std::string& path, Optimizer& opt, const LrSchedule& schedule) {
  const SafetensorsFile f(path);
  const auto& md = f.metadata();
  for (const auto& [key, want] : optimizer_metadata(opt)) {
    auto it = md.find(key);
    BIDORA_CHECK(it != md.end(), "{}: missing metadata '{}' (expected '{}')", path, key, want);
    BIDORA_CHECK(it->second == want, "{}: metadata '{}' is '{}' but this run uses '{}'", path, key,
                 it->second, want);
  }
  schedule.check_metadata(md, path);
  auto it = md.find("bidora.optimizer.step");
  BIDORA_CHECK(it != md.end(), "{}: missing metadata 'bidora.optimizer.step'", path);
  int64_t step = -1;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), step);
  BIDORA_CHECK(ec == std::errc() && end == s.data() + s.size() && step >= 0,
               "{}: metadata 'bidora.optimizer.step' is '{}' (expected a non-negative integer)", path, s);

  const std::vector<std::string> names = opt.state_tensor_names();
  const std::set<std::string> expected(names.begin(), names.end());
  for (const TensorView& t : f.tensors())
    BIDORA_CHECK(expected.count(t.name),
                 "{}: tensor '{}' does not belong to any parameter trained in this run", path, t.name);
  opt.load_state(f);  // checks presence, dtype and shape of every expected tensor
  opt.set_step_count(step);
  return step;
}

}  // namespace bidora::train
