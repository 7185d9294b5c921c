// training_plot.svg: a strict little XML parser checks every document is well-formed (balanced
// tags, quoted attributes, only the five XML entities and character references, valid UTF-8,
// no control characters), then the tests read the plot back: series point counts, tick labels
// for known ranges, the pixel positions of extreme values, escaping, NaN/inf, empty and huge logs.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/train_config.h"
#include "core/error.h"
#include "strict_xml.h"
#include "train/metrics_plot.h"

namespace bidora::train {
namespace {

using test::by_id;
using test::find_all;
using test::Node;
using test::StrictXml;

// The <text> labels of the group with class `cls` inside `panel`.
std::vector<std::string> labels(const Node& panel, const std::string& cls) {
  std::vector<std::string> out;
  for (const Node* g : find_all(panel, [&](const Node& n) { return n.attr("class") == cls; }))
    for (const Node& t : g->children)
      if (t.name == "text") out.push_back(t.text);
  return out;
}

struct Pt {
  double x, y;
};
std::vector<Pt> polyline(const Node& root, const std::string& id) {
  const Node* n = by_id(root, id);
  if (!n || n->name != "polyline") throw std::runtime_error("no polyline " + id);
  std::vector<Pt> out;
  std::istringstream in(n->attr("points"));
  std::string tok;
  while (in >> tok) {
    const size_t comma = tok.find(',');
    out.push_back({std::stod(tok.substr(0, comma)), std::stod(tok.substr(comma + 1))});
  }
  return out;
}
struct Box {
  double x, y, w, h;
};
Box plot_area(const Node& panel) {
  auto v = find_all(panel, [](const Node& n) { return n.attr("class") == "plot-area"; });
  if (v.size() != 1) throw std::runtime_error("panel without exactly one plot-area");
  return {v[0]->num("x"), v[0]->num("y"), v[0]->num("width"), v[0]->num("height")};
}
size_t count_polylines(const Node& root) {
  return find_all(root, [](const Node& n) { return n.name == "polyline"; }).size();
}

// Every coordinate drawn is a finite number inside the page.
void expect_all_coordinates_finite(const Node& root) {
  for (const Node* n : find_all(root, [](const Node&) { return true; })) {
    for (const char* k : {"x", "y", "cx", "cy", "x1", "x2", "y1", "y2", "width", "height"}) {
      if (!n->attrs.count(k) || n->attr(k).find('%') != std::string::npos) continue;
      const double v = n->num(k);
      EXPECT_TRUE(std::isfinite(v) && v >= 0 && v <= 900) << n->name << " " << k << "=" << n->attr(k);
    }
  }
  for (const Node* n : find_all(root, [](const Node& n) { return n.name == "polyline"; }))
    for (const Pt& p : polyline(root, n->attr("id"))) {
      EXPECT_TRUE(std::isfinite(p.x) && p.x >= 0 && p.x <= 900) << p.x;
      EXPECT_TRUE(std::isfinite(p.y) && p.y >= 0 && p.y <= 600) << p.y;
    }
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// A 10-step run: loss 3.2 -> 0.5, lr warmup to 2e-4 then decay, evaluations at steps 5 and 10.
std::vector<PlotPoint> small_run() {
  const double loss[] = {3.2, 2.5, 2.0, 1.6, 1.3, 1.1, 0.9, 0.8, 0.6, 0.5};
  const double lr[] = {1e-4, 2e-4, 1.75e-4, 1.5e-4, 1.25e-4, 1e-4, 7.5e-5, 5e-5, 2.5e-5, 0};
  std::vector<PlotPoint> pts;
  for (int i = 0; i < 10; ++i) pts.push_back({i + 1, loss[i], lr[i], std::nullopt});
  pts[4].eval_loss = 1.4;
  pts[9].eval_loss = 0.9;
  return pts;
}

TEST(NiceTicks, StepsAreOneTwoFiveTimesAPowerOfTen) {
  Ticks t = nice_ticks(0.5, 3.2);
  EXPECT_DOUBLE_EQ(t.step, 0.5);
  EXPECT_EQ(t.values, (std::vector<double>{0.5, 1.0, 1.5, 2.0, 2.5, 3.0}));
  t = nice_ticks(0, 1);
  EXPECT_DOUBLE_EQ(t.step, 0.2);
  ASSERT_EQ(t.values.size(), 6u);
  EXPECT_DOUBLE_EQ(t.values[3], 0.6000000000000001);  // 3 * 0.2, not accumulated 0.2 + 0.2 + 0.2
  t = nice_ticks(0, 2e-4, 4);
  EXPECT_DOUBLE_EQ(t.step, 5e-5);
  EXPECT_EQ(t.values.size(), 5u);
  t = nice_ticks(-1.3, 2.1);  // crosses zero: an exact 0 tick, no -0 or 1e-17
  EXPECT_DOUBLE_EQ(t.step, 0.5);
  EXPECT_EQ(t.values, (std::vector<double>{-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0}));
  EXPECT_FALSE(std::signbit(t.values[2]));
  t = nice_ticks(0, 10000, 8);  // 1428 per interval rounds to 1000, not 2000
  EXPECT_DOUBLE_EQ(t.step, 1000);
  EXPECT_EQ(t.values.size(), 11u);
  t = nice_ticks(0, 14000, 8);  // 2000 per interval
  EXPECT_DOUBLE_EQ(t.step, 2000);
  t = nice_ticks(7, 7);
  EXPECT_EQ(t.values, std::vector<double>{7});
  const double big = std::numeric_limits<double>::max();
  t = nice_ticks(-big, big);  // the range overflows: just the ends
  EXPECT_EQ(t.step, 0);
  EXPECT_EQ(t.values, (std::vector<double>{-big, big}));
}

TEST(NiceTicks, LabelsShowTheDigitsTheStepResolves) {
  EXPECT_EQ(format_tick(1.5, 0.5), "1.5");
  EXPECT_EQ(format_tick(1, 0.5), "1.0");
  EXPECT_EQ(format_tick(0.95, 0.05), "0.95");
  EXPECT_EQ(format_tick(200, 100), "200");
  EXPECT_EQ(format_tick(-0.0, 0.5), "0.0");
  EXPECT_EQ(format_tick(3 * 0.1, 0.1), "0.3");
  EXPECT_EQ(format_tick(0, 5e-5), "0");
  EXPECT_EQ(format_tick(3 * 5e-5, 5e-5), "1.5e-4");
  EXPECT_EQ(format_tick(2 * 5e-5, 5e-5), "1e-4");
  EXPECT_EQ(format_tick(9.9999999999e-5, 5e-5), "1e-4");  // rounds up into the next decade
  EXPECT_EQ(format_tick(5e-5, 5e-5), "5e-5");
  EXPECT_EQ(format_tick(2.5e-6, 5e-7), "2.5e-6");
  EXPECT_EQ(format_tick(-2e-4, 1e-4), "-2e-4");
  EXPECT_EQ(format_tick(4e6, 2e6), "4e6");
  EXPECT_EQ(format_tick(0.001, 0.001), "0.001");
  EXPECT_EQ(format_tick(1.5, 0), "1.5");  // degenerate step
}

TEST(TrainingPlot, DrawsBothPanelsWithTicksAndExtremesAtTheEdges) {
  const auto pts = small_run();
  const std::string svg = training_plot_svg(pts, "tiny-qwen2 · dora r=8");
  const Node root = StrictXml::parse(svg);
  EXPECT_EQ(root.name, "svg");
  EXPECT_EQ(root.attr("xmlns"), "http://www.w3.org/2000/svg");
  expect_all_coordinates_finite(root);

  ASSERT_NE(by_id(root, "title"), nullptr);
  EXPECT_EQ(by_id(root, "title")->text, "tiny-qwen2 · dora r=8");
  EXPECT_EQ(by_id(root, "subtitle")->text,
            "step 10 · loss 0.5000 · eval loss 0.9000 (best 0.9000 at step 10) · lr 0");

  // One polyline per series, one vertex per finite value; the eval points also get markers.
  EXPECT_EQ(count_polylines(root), 3u);
  const auto loss = polyline(root, "train-loss");
  const auto eval = polyline(root, "eval-loss");
  const auto lr = polyline(root, "learning-rate");
  ASSERT_EQ(loss.size(), 10u);
  ASSERT_EQ(eval.size(), 2u);
  ASSERT_EQ(lr.size(), 10u);
  EXPECT_EQ(find_all(root, [](const Node& n) { return n.name == "circle"; }).size(), 2u + 1u);  // + legend

  const Node& lp = *by_id(root, "loss-panel");
  const Box a = plot_area(lp);
  EXPECT_DOUBLE_EQ(a.y, 72);
  EXPECT_DOUBLE_EQ(a.h, 268);
  // Loss axis spans exactly the data: 3.2 (step 1) at the top edge, 0.5 (step 10) at the bottom.
  EXPECT_DOUBLE_EQ(loss[0].y, a.y);
  EXPECT_DOUBLE_EQ(loss[9].y, a.y + a.h);
  // Steps 0..10 across the width: step 1 a tenth of the way, step 10 at the right edge.
  EXPECT_NEAR(loss[0].x, a.x + a.w * 0.1, 0.051);
  EXPECT_NEAR(loss[9].x, a.x + a.w, 0.051);
  // eval 1.4 at step 5: (1.4 - 0.5) / 2.7 of the way up.
  EXPECT_NEAR(eval[0].y, a.y + a.h - a.h * (1.4 - 0.5) / 2.7, 0.051);
  EXPECT_NEAR(eval[0].x, a.x + a.w * 0.5, 0.051);

  EXPECT_EQ(labels(lp, "y-ticks"), (std::vector<std::string>{"0.5", "1.0", "1.5", "2.0", "2.5", "3.0"}));
  EXPECT_EQ(labels(lp, "x-ticks"),
            (std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}));
  // Each tick label sits at its value's height.
  for (const Node* g : find_all(lp, [](const Node& n) { return n.attr("class") == "y-ticks"; }))
    for (const Node& t : g->children)
      EXPECT_NEAR(t.num("y"), a.y + a.h - a.h * (std::stod(t.text) - 0.5) / 2.7, 0.051) << t.text;

  // Learning rate from 0: the 2e-4 peak at the top, the final 0 at the bottom.
  const Node& rp = *by_id(root, "lr-panel");
  const Box b = plot_area(rp);
  EXPECT_DOUBLE_EQ(lr[1].y, b.y);
  EXPECT_DOUBLE_EQ(lr[9].y, b.y + b.h);
  EXPECT_EQ(labels(rp, "y-ticks"), (std::vector<std::string>{"0", "5e-5", "1e-4", "1.5e-4", "2e-4"}));

  EXPECT_EQ(labels(lp, "legend"), (std::vector<std::string>{"training loss", "eval loss"}));
}

TEST(TrainingPlot, TotalStepsSetsTheStepAxisAndUnsortedLogsAreDrawnInOrder) {
  auto pts = small_run();
  std::swap(pts[0], pts[7]);
  std::swap(pts[3], pts[9]);
  const Node root = StrictXml::parse(training_plot_svg(pts, "run", {.total_steps = 100}));
  const auto loss = polyline(root, "train-loss");
  ASSERT_EQ(loss.size(), 10u);
  for (size_t i = 1; i < loss.size(); ++i) EXPECT_GT(loss[i].x, loss[i - 1].x);
  const Box a = plot_area(*by_id(root, "loss-panel"));
  EXPECT_NEAR(loss[9].x, a.x + a.w * 0.1, 0.051);  // step 10 of 100
  EXPECT_EQ(labels(*by_id(root, "lr-panel"), "x-ticks"),
            (std::vector<std::string>{"0", "10", "20", "30", "40", "50", "60", "70", "80", "90", "100"}));
  EXPECT_TRUE(by_id(root, "subtitle")->text.starts_with("step 10 of 100 · loss 0.5000 · "));
}

TEST(TrainingPlot, EscapesTextAndRepairsInvalidBytes) {
  const std::string title =
      "Qwen <2.5> & \"friends\" 'x'\x01\ttab\xFF\xC0\xAF"
      " end";
  const std::string svg = training_plot_svg(small_run(), title);
  EXPECT_NE(svg.find("Qwen &lt;2.5&gt; &amp; &quot;friends&quot; &apos;x&apos; tab\xEF\xBF\xBD\xEF\xBF\xBD"
                     "\xEF\xBF\xBD"
                     " end"),
            std::string::npos);
  const Node root = StrictXml::parse(svg);  // would throw on the raw bytes
  const std::string expect =
      "Qwen <2.5> & \"friends\" 'x' tab\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
      " end";
  EXPECT_EQ(by_id(root, "title")->text, expect);
  const auto titles = find_all(root, [](const Node& n) { return n.name == "title"; });
  ASSERT_EQ(titles.size(), 1u);
  EXPECT_EQ(titles[0]->text, expect);
}

TEST(TrainingPlot, SkipsNaNAndInfinity) {
  auto pts = small_run();
  pts[2].loss = kNaN;
  pts[4].loss = kInf;
  pts[3].lr = -kInf;
  pts[9].eval_loss = kNaN;
  const std::string svg = training_plot_svg(pts, "diverged");
  const Node root = StrictXml::parse(svg);
  expect_all_coordinates_finite(root);
  EXPECT_EQ(polyline(root, "train-loss").size(), 8u);
  EXPECT_EQ(polyline(root, "learning-rate").size(), 9u);
  EXPECT_EQ(polyline(root, "eval-loss").size(), 1u);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
  const std::string sub = by_id(root, "subtitle")->text;
  EXPECT_NE(sub.find("4 non-finite values not drawn"), std::string::npos) << sub;
  EXPECT_NE(sub.find("eval loss 1.4000 (best 1.4000 at step 5)"), std::string::npos) << sub;

  // Extreme but finite values must not overflow the axis arithmetic.
  const double big = std::numeric_limits<double>::max();
  std::vector<PlotPoint> extreme{{1, big, 1e-4, -big}, {2, 1.0, big, std::nullopt}, {3, -big, 0, 1e-300}};
  const Node r2 = StrictXml::parse(training_plot_svg(extreme, "extreme"));
  expect_all_coordinates_finite(r2);
  EXPECT_EQ(polyline(r2, "train-loss").size(), 3u);
  // Steps near 2^60, a range tiny against its magnitude, denormal learning rates.
  const int64_t s0 = int64_t{1} << 60;
  std::vector<PlotPoint> odd{{s0, 1e16, 5e-324, std::nullopt}, {s0 + 1, 1e16 + 2, 5e-324, 1e16}};
  const Node r3 = StrictXml::parse(training_plot_svg(odd, "odd"));
  expect_all_coordinates_finite(r3);
}

TEST(TrainingPlot, EmptyLogSaysNoDataYet) {
  const std::string svg = training_plot_svg({}, "waiting");
  const Node root = StrictXml::parse(svg);
  EXPECT_EQ(count_polylines(root), 0u);
  EXPECT_EQ(by_id(root, "subtitle")->text, "no log entries yet");
  const auto msgs = find_all(root, [](const Node& n) { return n.attr("class") == "message"; });
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0]->text, "no data yet");
  EXPECT_TRUE(labels(*by_id(root, "loss-panel"), "y-ticks").empty());
  expect_all_coordinates_finite(root);

  // Entries whose every value is non-finite: still a valid page, with a reason.
  const std::vector<PlotPoint> bad{{1, kNaN, kNaN, std::nullopt}};
  const Node r2 = StrictXml::parse(training_plot_svg(bad, "bad"));
  EXPECT_EQ(count_polylines(r2), 0u);
  const auto m2 = find_all(r2, [](const Node& n) { return n.attr("class") == "message"; });
  ASSERT_EQ(m2.size(), 2u);
  EXPECT_EQ(m2[0]->text, "no finite loss values yet");
  EXPECT_EQ(by_id(r2, "subtitle")->text, "step 1 · 2 non-finite values not drawn");
}

TEST(TrainingPlot, SinglePointIsAMarkerInTheMiddle) {
  const std::vector<PlotPoint> one{{1, 2.0, 1e-4, std::nullopt}};
  const Node root = StrictXml::parse(training_plot_svg(one, "first step"));
  expect_all_coordinates_finite(root);
  const auto loss = polyline(root, "train-loss");
  ASSERT_EQ(loss.size(), 1u);
  const Box a = plot_area(*by_id(root, "loss-panel"));
  EXPECT_DOUBLE_EQ(loss[0].y, a.y + a.h / 2);  // a constant loss sits mid-panel
  EXPECT_DOUBLE_EQ(loss[0].x, a.x + a.w);      // steps 0..1
  const auto marker = find_all(root, [](const Node& n) { return n.attr("class") == "train-loss-marker"; });
  ASSERT_EQ(marker.size(), 1u);
  ASSERT_EQ(marker[0]->children.size(), 1u);
  EXPECT_DOUBLE_EQ(marker[0]->children[0].num("cy"), a.y + a.h / 2);
  EXPECT_EQ(labels(*by_id(root, "loss-panel"), "y-ticks"),
            (std::vector<std::string>{"1.8", "1.9", "2.0", "2.1", "2.2"}));
  EXPECT_EQ(labels(*by_id(root, "loss-panel"), "x-ticks"), (std::vector<std::string>{"0", "1"}));
}

TEST(TrainingPlot, ConstantSeriesDoNotDivideByZero) {
  std::vector<PlotPoint> flat;
  for (int i = 1; i <= 50; ++i) flat.push_back({i, 1.0, 3e-4, std::nullopt});
  Node root = StrictXml::parse(training_plot_svg(flat, "flat"));
  expect_all_coordinates_finite(root);
  const Box a = plot_area(*by_id(root, "loss-panel"));
  for (const Pt& p : polyline(root, "train-loss")) EXPECT_DOUBLE_EQ(p.y, a.y + a.h / 2);
  EXPECT_EQ(labels(*by_id(root, "loss-panel"), "y-ticks"),
            (std::vector<std::string>{"0.90", "0.95", "1.00", "1.05", "1.10"}));
  const Box b = plot_area(*by_id(root, "lr-panel"));
  for (const Pt& p : polyline(root, "learning-rate")) EXPECT_DOUBLE_EQ(p.y, b.y);  // axis 0..3e-4

  for (auto& p : flat) p.loss = 0, p.lr = 0;  // zero everywhere: axes -1..1 and 0..1
  root = StrictXml::parse(training_plot_svg(flat, "zero"));
  expect_all_coordinates_finite(root);
  const Box b0 = plot_area(*by_id(root, "lr-panel"));
  for (const Pt& p : polyline(root, "learning-rate")) EXPECT_DOUBLE_EQ(p.y, b0.y + b0.h);
  EXPECT_EQ(labels(*by_id(root, "loss-panel"), "y-ticks"),
            (std::vector<std::string>{"-1.0", "-0.5", "0.0", "0.5", "1.0"}));
}

TEST(TrainingPlot, LongRunsAreDecimatedKeepingSpikesAndEnds) {
  std::vector<PlotPoint> run;
  for (int i = 1; i <= 20000; ++i)
    run.push_back({i, 2.0 + 0.3 * std::sin(i * 0.37) + 0.2 * std::cos(i * 1.7), 2e-4 * (1 - i / 20000.0),
                   i % 500 == 0 ? std::optional(1.5 + i * 1e-6) : std::nullopt});
  run[12344].loss = 9.0;  // a spike at step 12345
  run[16999].loss = 0.1;  // a dip at step 17000
  const std::string svg = training_plot_svg(run, "long");
  EXPECT_LT(svg.size(), 64u * 1024) << "a 20000-step plot should stay small";
  const Node root = StrictXml::parse(svg);
  const auto loss = polyline(root, "train-loss");
  EXPECT_LE(loss.size(), 2000u);
  EXPECT_GE(loss.size(), 1500u);
  const Box a = plot_area(*by_id(root, "loss-panel"));
  double top = 1e9, bottom = -1e9;
  for (const Pt& p : loss) top = std::min(top, p.y), bottom = std::max(bottom, p.y);
  EXPECT_DOUBLE_EQ(top, a.y);           // the spike survived decimation
  EXPECT_DOUBLE_EQ(bottom, a.y + a.h);  // and so did the dip
  EXPECT_NEAR(loss.front().x, a.x + a.w / 20000, 0.051);
  EXPECT_DOUBLE_EQ(loss.back().x, a.x + a.w);
  EXPECT_LE(polyline(root, "learning-rate").size(), 2000u);
  EXPECT_EQ(polyline(root, "eval-loss").size(), 40u);
  EXPECT_EQ(
      find_all(root, [](const Node& n) { return n.attr("class") == "eval-markers"; })[0]->children.size(),
      40u);

  const Node small = StrictXml::parse(training_plot_svg(run, "long", {.max_points = 100}));
  EXPECT_LE(polyline(small, "train-loss").size(), 100u);
  EXPECT_GE(polyline(small, "train-loss").size(), 50u);
}

TEST(TrainingPlot, PointsFromMetricsJsonl) {
  std::vector<nlohmann::ordered_json> log;
  for (const char* line :
       {R"({"step":1,"epoch":0.1,"loss":2.5,"grad_norm":1.0,"learning_rate":1e-4})",
        R"({"step":2,"loss":null,"learning_rate":2e-4,"eval_loss":1.5,"eval_perplexity":4.48})",
        R"({"step":3,"loss":1.0,"eval_loss":null})"})
    log.push_back(nlohmann::ordered_json::parse(line));
  // What the trainer holds in memory for a NaN loss before writing it (dumped as null).
  log.push_back(nlohmann::ordered_json{{"step", 4}, {"loss", kNaN}, {"learning_rate", 5e-5}});
  EXPECT_EQ(log.back().dump(), R"({"step":4,"loss":null,"learning_rate":5e-05})");

  const auto pts = plot_points_from_json(log);
  ASSERT_EQ(pts.size(), 4u);
  EXPECT_EQ(pts[0].step, 1);
  EXPECT_EQ(pts[0].loss, 2.5);
  EXPECT_EQ(pts[0].lr, 1e-4);
  EXPECT_FALSE(pts[0].eval_loss);
  EXPECT_TRUE(std::isnan(pts[1].loss));
  EXPECT_EQ(pts[1].eval_loss, 1.5);
  EXPECT_TRUE(std::isnan(pts[2].lr));  // missing
  ASSERT_TRUE(pts[2].eval_loss);
  EXPECT_TRUE(std::isnan(*pts[2].eval_loss));  // evaluated, not finite
  EXPECT_TRUE(std::isnan(pts[3].loss));
  EXPECT_EQ(pts[3].lr, 5e-5);

  const Node root = StrictXml::parse(training_plot_svg(pts, "from json"));
  EXPECT_EQ(polyline(root, "train-loss").size(), 2u);
  EXPECT_EQ(polyline(root, "learning-rate").size(), 3u);
  EXPECT_EQ(polyline(root, "eval-loss").size(), 1u);

  log.push_back(nlohmann::ordered_json::parse(R"({"loss":1.0})"));
  try {
    plot_points_from_json(log);
    FAIL() << "an entry without a step was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics entry 5"), std::string::npos) << e.what();
  }
}

TEST(TrainingPlot, TitleNamesModelAndMethod) {
  TrainConfig cfg;
  cfg.model.name_or_path = "/data/examples/tiny-qwen2/";
  cfg.adapter.method = AdapterMethod::DoRA;
  cfg.adapter.r = 8;
  cfg.adapter.alpha = 16;
  cfg.adapter.use_rslora = true;
  EXPECT_EQ(training_plot_title(cfg), "tiny-qwen2 · dora r=8 alpha=16 rsLoRA");
  cfg.model.name_or_path = "Qwen/Qwen2.5-0.5B";
  cfg.adapter.method = AdapterMethod::LoRA;
  cfg.adapter.r = 16;
  cfg.adapter.alpha = 32.5;
  cfg.adapter.use_rslora = false;
  EXPECT_EQ(training_plot_title(cfg), "Qwen2.5-0.5B · lora r=16 alpha=32.5");
}

}  // namespace
}  // namespace bidora::train
