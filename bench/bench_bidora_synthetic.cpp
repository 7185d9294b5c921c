// BiDoRA vs DoRA with the same budget on the synthetic letter-mapping task where the held-out
// split matters: the larger version of tests/train/test_bidora_synthetic.cpp (design, runs and
// figures: tests/train/bidora_synthetic.h), repeated over several training seeds. Prints the table
// of every seed (TEST / VAL losses, wall clock, BiDoRA's time per optimiser step relative to
// DoRA's), then each figure's mean, sd and range over the seeds. Run by bench/bidora_vs_dora.sh.
//
//   build-*/bench_bidora_synthetic [--steps N] [--train N] [--val N] [--test N] [--noise F]
//       [--min-letters N] [--max-letters N]
//       [--batch N] [--lr F] [--warmup N] [--r N] [--alpha F] [--eval-steps N] [--seed N]
//       [--seeds N] [--threads N] [--model DIR] [--work DIR] [--json FILE]
// Seeds seed, seed+1, ... change the adapter init, the data order and dropout; the data are the
// same for every seed.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "../tests/train/bidora_synthetic.h"
#include "core/error.h"
#include "core/files.h"

namespace {

using namespace bidora::train::synthetic;
namespace fs = std::filesystem;

nlohmann::json to_json(const EvalResult& e) {
  return {{"loss", e.loss}, {"letter_accuracy", e.letter_accuracy}};
}

nlohmann::json to_json(const Comparison& c, const TaskOptions& t, const Budget& b) {
  nlohmann::json j;
  j["task"] = {{"train", t.train}, {"val", t.val},   {"test", t.test},
               {"noise", t.noise}, {"seed", t.seed}, {"letters", {t.min_letters, t.max_letters}}};
  j["budget"] = {{"steps", b.steps}, {"batch", b.batch}, {"lr", b.lr},     {"warmup", b.warmup},
                 {"r", b.r},         {"alpha", b.alpha}, {"seed", b.seed}, {"eval_steps", b.eval_steps}};
  j["base"] = {{"test", to_json(c.base_test)}, {"val", to_json(c.base_val)}};
  for (const MethodResult& m : c.runs) {
    nlohmann::json r = {{"name", m.name},
                        {"steps", m.steps},
                        {"seconds", m.seconds},
                        {"loop_seconds", m.loop_seconds},
                        {"test_final", to_json(m.test_final)},
                        {"val_final", to_json(m.val_final)},
                        {"val_held_out", m.val_held_out}};
    if (m.test_best) r["test_best"] = to_json(*m.test_best);
    if (m.test_search) r["test_search"] = to_json(*m.test_search);
    if (m.search_steps) r["search"] = {{"steps", m.search_steps}, {"seconds", m.search_seconds}};
    j["runs"].push_back(r);
  }
  return j;
}

// Mean, sample standard deviation, min and max of one figure over the seeds.
std::string spread(const std::vector<double>& v) {
  if (v.empty()) return "-";
  double mean = 0, lo = v[0], hi = v[0];
  for (double x : v) {
    mean += x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  mean /= static_cast<double>(v.size());
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  const double sd = v.size() > 1 ? std::sqrt(var / static_cast<double>(v.size() - 1)) : 0.0;
  return fmt::format("{:.4f} ± {:.4f} [{:.4f}, {:.4f}]", mean, sd, lo, hi);
}

// One line per method over every seed: what a single seed cannot show is whether a difference
// between methods is larger than the seed-to-seed spread of one method.
std::string summary(const std::vector<Comparison>& all) {
  std::string s = fmt::format("over {} training seeds: mean ± sd [min, max]\n", all.size());
  for (size_t k = 0; k < all.front().runs.size(); ++k) {
    std::vector<double> test, acc, val, best, search, step;
    for (const Comparison& c : all) {
      const MethodResult& m = c.runs[k];
      test.push_back(m.test_final.loss);
      acc.push_back(m.test_final.letter_accuracy);
      val.push_back(m.val_final.loss);
      if (m.test_best) best.push_back(m.test_best->loss);
      if (m.test_search) search.push_back(m.test_search->loss);
      step.push_back(m.loop_seconds / m.steps / (c.runs[0].loop_seconds / c.runs[0].steps));
    }
    const MethodResult& m = all.front().runs[k];
    s += fmt::format("  {}\n    test loss (final_model)   {}\n    test letter accuracy      {}\n", m.name,
                     spread(test), spread(acc));
    if (!best.empty()) s += fmt::format("    test loss (best_model)    {}\n", spread(best));
    if (!search.empty()) s += fmt::format("    test loss (search_model)  {}\n", spread(search));
    s += fmt::format("    val loss (final_model){}   {}\n    time per step vs dora     {}\n",
                     m.val_held_out ? " " : "*", spread(val), spread(step));
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  // The larger comparison: 4x the test's data, 2000 steps, 5 training seeds (a few minutes on
  // 2 cores). One thread by default: the step-time ratio is then not at the mercy of OpenMP
  // barriers on a shared machine.
  TaskOptions task{.train = 960, .val = 192, .test = 256};
  Budget budget{.steps = 2000, .batch = 8, .lr = 1e-2, .warmup = 200, .eval_steps = 200, .threads = 1};
  int64_t seeds = 5;
  std::string model = (fs::path(__FILE__).parent_path().parent_path() / "examples/tiny-qwen2").string();
  std::string work = (fs::temp_directory_path() / "bidora-bench-synthetic").string();
  std::string json_out;
  auto integer = [](int64_t& field) { return [&field](const std::string& v) { field = std::stoll(v); }; };
  auto real = [](double& field) { return [&field](const std::string& v) { field = std::stod(v); }; };
  auto text = [](std::string& field) { return [&field](const std::string& v) { field = v; }; };
  const std::map<std::string, std::function<void(const std::string&)>> options = {
      {"--steps", integer(budget.steps)},
      {"--train", integer(task.train)},
      {"--val", integer(task.val)},
      {"--test", integer(task.test)},
      {"--noise", real(task.noise)},
      {"--min-letters", integer(task.min_letters)},
      {"--max-letters", integer(task.max_letters)},
      {"--batch", integer(budget.batch)},
      {"--lr", real(budget.lr)},
      {"--warmup", integer(budget.warmup)},
      {"--r", integer(budget.r)},
      {"--alpha", real(budget.alpha)},
      {"--eval-steps", integer(budget.eval_steps)},
      {"--seed", integer(budget.seed)},
      {"--seeds", integer(seeds)},
      {"--threads", integer(budget.threads)},
      {"--model", text(model)},
      {"--work", text(work)},
      {"--json", text(json_out)}};
  try {
    for (int i = 1; i < argc; i += 2) {
      const auto it = options.find(argv[i]);
      if (it == options.end())
        bidora::fail("unknown option {} (see the header of bench_bidora_synthetic.cpp)", argv[i]);
      if (i + 1 >= argc) bidora::fail("{}: missing value", argv[i]);
      try {
        it->second(argv[i + 1]);
      } catch (const std::logic_error&) {  // std::stoll / std::stod: not a number, out of range
        bidora::fail("{} {}: not a number", argv[i], argv[i + 1]);
      }
    }
    if (seeds < 1) bidora::fail("--seeds {}: at least 1", seeds);
    std::cout << fmt::format(
        "synthetic letter mapping ({}-{} letters): train {} ({:.0f}% conflicting rule), val {}, test {} "
        "(clean)\n"
        "budget: {} steps, batch {}, lr {}, warmup {}, r {}, alpha {}, all 7 projections, {} thread(s)\n"
        "model: {}\n",
        task.min_letters, task.max_letters, task.train, task.noise * 100, task.val, task.test, budget.steps,
        budget.batch, budget.lr, budget.warmup, budget.r, budget.alpha, budget.threads, model);
    std::vector<Comparison> all;
    nlohmann::json j = nlohmann::json::array();
    for (int64_t k = 0; k < seeds; ++k) {
      Budget b = budget;
      b.seed = budget.seed + k;  // adapter init, data order and dropout; the data stay the same
      all.push_back(run_comparison(model, work, task, b));
      std::cout << fmt::format("\n-- training seed {}\n", b.seed) << format_table(all.back()) << std::flush;
      j.push_back(to_json(all.back(), task, b));
    }
    std::cout << "\n" << summary(all);
    if (!json_out.empty()) bidora::write_file_atomic(json_out, j.dump(2) + "\n");
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
