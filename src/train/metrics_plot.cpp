#include "train/metrics_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include "config/train_config.h"
#include "core/error.h"
#include "train/svg_text.h"

namespace bidora::train {
namespace {

// Page layout in SVG user units (= CSS px). Both panels share the x range [kLeft, kRight].
constexpr int kWidth = 900, kHeight = 600;
constexpr double kLeft = 84, kRight = 876;
constexpr double kLossTop = 72, kLossBottom = 340;
constexpr double kLrTop = 392, kLrBottom = 532;
constexpr const char* kLossColor = "#1f77b4";
constexpr const char* kEvalColor = "#e8710a";
constexpr const char* kLrColor = "#2ca02c";
// More markers than this would only blur into the dashed eval line and bloat the file.
constexpr size_t kMaxEvalMarkers = 200;

using Range = ValueRange;

// A constant series still needs a non-empty axis: pad it symmetrically (by 10% of its magnitude,
// or by 1 around zero) so the line sits in the middle of the panel.
// (Clamped: a constant 1e308 must not pad to infinity. Ranges narrower than 1e-200 count as
// constant: their halves, which Panel divides by, would underflow to 0.)
bool flat(const Range& r) {
  return !(r.hi - r.lo > 1e-200);
}
Range widened(Range r) {
  if (r.empty()) return {0, 1};
  if (!flat(r)) return r;
  const double big = std::numeric_limits<double>::max();
  const double pad = std::abs(r.lo) > 1e-200 ? std::abs(r.lo) * 0.1 : 1.0;
  return {std::max(-big, r.lo - pad), std::min(big, r.hi + pad)};
}

struct Sample {
  int64_t step;
  double value;
};

// At most `max_points` samples: the first and the last, and for each of (max_points - 2) / 2
// equal index buckets in between its minimum and its maximum, in their original order — spikes
// stay visible however long the run.
std::vector<Sample> decimate(const std::vector<Sample>& s, size_t max_points) {
  if (s.size() <= max_points) return s;
  const size_t inner = s.size() - 2, buckets = (max_points - 2) / 2;
  std::vector<Sample> out;
  out.reserve(max_points);
  out.push_back(s.front());
  for (size_t b = 0; b < buckets; ++b) {
    const size_t begin = 1 + b * inner / buckets, end = 1 + (b + 1) * inner / buckets;
    if (begin == end) continue;
    size_t lo = begin, hi = begin;
    for (size_t i = begin; i < end; ++i) {
      if (s[i].value < s[lo].value) lo = i;
      if (s[i].value > s[hi].value) hi = i;
    }
    out.push_back(s[std::min(lo, hi)]);
    if (lo != hi) out.push_back(s[std::max(lo, hi)]);
  }
  out.push_back(s.back());
  return out;
}

// Maps data coordinates onto one panel.
// Fractions are computed on halved values: exact for every normal double (scaling by 2 commutes
// with rounding) and finite even when the range spans -1e308..1e308.
struct Panel {
  double x0, x1;  // step range -> [kLeft, kRight]
  double y0, y1;  // value range -> [bottom, top]
  double top, bottom;
  static double fraction(double v, double lo, double hi) {
    return (v * 0.5 - lo * 0.5) / (hi * 0.5 - lo * 0.5);
  }
  double px(double step) const { return kLeft + fraction(step, x0, x1) * (kRight - kLeft); }
  double py(double v) const { return bottom - fraction(v, y0, y1) * (bottom - top); }
};

std::string polyline_points(const Panel& p, const std::vector<Sample>& s) {
  std::string out, prev;
  for (const Sample& q : s) {
    std::string pt = fmt::format("{:.1f},{:.1f}", p.px(static_cast<double>(q.step)), p.py(q.value));
    if (pt == prev) continue;  // same pixel after rounding: says nothing, costs bytes
    if (!out.empty()) out += ' ';
    out += pt;
    prev = std::move(pt);
  }
  return out;
}

// Integer ticks for the step axis (never 0.5 steps).
Ticks step_ticks(double lo, double hi) {
  Ticks t = nice_ticks(lo, hi, 8);
  if (t.step >= 1) return t;
  t.step = 1;
  t.values.clear();
  for (int k = 0; k < 16 && std::ceil(lo) + k <= hi; ++k) t.values.push_back(std::ceil(lo) + k);
  return t;
}

// Grid, frame, tick labels and axis title of a panel (no y ticks while it has no data).
void draw_axes(std::string& svg, const Panel& p, const Ticks& xt, const Ticks* yt, const char* y_title) {
  svg += "<g class=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n";
  for (double x : xt.values)
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\"/>\n", p.px(x),
                       p.top, p.bottom);
  if (yt)
    for (double y : yt->values)
      svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\"/>\n", kLeft,
                         p.py(y), kRight);
  svg += "</g>\n";
  svg += fmt::format(
      "<rect class=\"plot-area\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" "
      "stroke=\"#999\"/>\n",
      kLeft, p.top, kRight - kLeft, p.bottom - p.top);
  if (yt) {
    svg += "<g class=\"y-ticks\" text-anchor=\"end\" fill=\"#333\" font-size=\"11\">\n";
    for (double y : yt->values)
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" dy=\"0.35em\">{}</text>\n", kLeft - 6, p.py(y),
                         format_tick(y, yt->step));
    svg += "</g>\n";
  }
  svg += "<g class=\"x-ticks\" text-anchor=\"middle\" fill=\"#333\" font-size=\"11\">\n";
  for (double x : xt.values)
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", p.px(x), p.bottom + 15,
                       format_tick(x, xt.step));
  svg += "</g>\n";
  svg += fmt::format(
      "<text class=\"axis-title\" transform=\"translate(20 {:.1f}) rotate(-90)\" "
      "text-anchor=\"middle\">{}</text>\n",
      (p.top + p.bottom) / 2, y_title);
}

void draw_message(std::string& svg, const Panel& p, const char* text) {
  svg += fmt::format(
      "<text class=\"message\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#888\" "
      "font-size=\"16\">{}</text>\n",
      (kLeft + kRight) / 2, (p.top + p.bottom) / 2, text);
}

void draw_series(std::string& svg, const Panel& p, const std::vector<Sample>& s, const char* id,
                 const char* color, const char* extra) {
  if (s.empty()) return;
  svg += fmt::format(
      "<polyline id=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" stroke-linejoin=\"round\"{} "
      "points=\"{}\"/>\n",
      id, color, extra, polyline_points(p, s));
}

void draw_markers(std::string& svg, const Panel& p, const std::vector<Sample>& s, const char* cls,
                  const char* color) {
  svg += fmt::format("<g class=\"{}\" fill=\"{}\">\n", cls, color);
  for (const Sample& q : s)
    svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\"/>\n", p.px(static_cast<double>(q.step)),
                       p.py(q.value));
  svg += "</g>\n";
}

std::string format_lr(double lr) {
  if (lr == 0) return "0";
  std::string s = fmt::format("{:.2e}", lr);  // "1.90e-04" -> "1.9e-4"
  const size_t e = s.find('e');
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  while (mant.back() == '0') mant.pop_back();
  if (mant.back() == '.') mant.pop_back();
  const bool neg = exp[0] == '-';
  exp = exp.substr(1);
  while (exp.size() > 1 && exp[0] == '0') exp.erase(0, 1);
  return mant + "e" + (neg ? "-" : "") + exp;
}

}  // namespace

std::vector<PlotPoint> plot_points_from_json(std::span<const nlohmann::ordered_json> entries) {
  auto number = [](const nlohmann::ordered_json& j, const char* key) -> std::optional<double> {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
  };
  std::vector<PlotPoint> out;
  out.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const nlohmann::ordered_json& j = entries[i];
    const auto step = j.is_object() ? j.find("step") : j.end();
    if (step == j.end() || !step->is_number_integer())
      fail("metrics entry {}: no integer \"step\" in {}", i + 1, j.dump());
    PlotPoint p;
    p.step = step->get<int64_t>();
    p.loss = number(j, "loss").value_or(NAN);
    p.lr = number(j, "learning_rate").value_or(NAN);
    p.eval_loss = number(j, "eval_loss");
    if (!p.eval_loss && j.contains("eval_loss")) p.eval_loss = NAN;  // evaluated, but not finite
    out.push_back(p);
  }
  return out;
}

std::string training_plot_title(const TrainConfig& cfg) {
  std::string_view model = cfg.model.name_or_path;
  while (model.size() > 1 && model.back() == '/') model.remove_suffix(1);
  if (const size_t slash = model.rfind('/'); slash != std::string_view::npos && slash + 1 < model.size())
    model.remove_prefix(slash + 1);
  return fmt::format("{} · {} r={} alpha={:g}{}", model, to_string(cfg.adapter.method), cfg.adapter.r,
                     cfg.adapter.alpha, cfg.adapter.use_rslora ? " rsLoRA" : "");
}

Ticks nice_ticks(double lo, double hi, int target) {
  Ticks t;
  if (!(hi > lo)) {
    t.step = lo != 0 ? std::pow(10.0, std::floor(std::log10(std::abs(lo)))) : 1.0;
    t.values = {lo};
    return t;
  }
  // Heckbert's "nice numbers": round range / (target - 1) to the closest of 1, 2, 5 x 10^k.
  const double raw = (hi - lo) / std::max(1, target - 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  t.step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  if (!(t.step > 0) || !std::isfinite(t.step)) {
    // A range that over- or underflows a double (1e308 losses, denormals): label just the ends.
    t.step = 0;
    t.values = {lo, hi};
    return t;
  }
  // Integer multiples of step (no accumulated error); the slack keeps an end that is itself a
  // multiple (0.5 .. 3.0) from being lost to rounding.
  const double eps = t.step * 1e-9;
  const double first = std::ceil((lo - eps) / t.step), last = std::floor((hi + eps) / t.step);
  // A range tiny against its magnitude (1e16 .. 1e16 + 2) leaves first + 1 == first: count with
  // an integer, and give up on more ticks than any sane axis has.
  if (!(last - first >= 0 && last - first <= 100)) {
    t.step = 0;
    t.values = {lo, hi};
    return t;
  }
  for (int64_t k = 0; k <= static_cast<int64_t>(last - first); ++k) {
    double v = (first + static_cast<double>(k)) * t.step;
    if (std::abs(v) < eps) v = 0;  // no "-0" or 1e-17 labels
    t.values.push_back(v);
  }
  return t;
}

std::string format_tick(double value, double step) {
  if (!(step > 0) || !std::isfinite(step) || !std::isfinite(value)) return fmt::format("{:.4g}", value);
  const int k = static_cast<int>(std::floor(std::log10(step) + 1e-9));  // step = {1,2,5} x 10^k
  if (std::abs(value) < step * 1e-6) value = 0;
  value += 0.0;  // -0.0 -> 0.0
  if (k >= -3 && k < 6) return fmt::format("{:.{}f}", value, std::max(0, -k));
  // Short scientific form with as many mantissa digits as the step needs: 1.5e-4, 5e-5, 2e6.
  if (value == 0) return "0";
  int e = static_cast<int>(std::floor(std::log10(std::abs(value))));
  const auto digits = [&] { return std::max(0, e - k); };
  const double scale = std::pow(10.0, digits());
  if (std::round(std::abs(value) / std::pow(10.0, e) * scale) / scale >= 10) ++e;  // 9.99999e-5 -> 1e-4
  std::string mant = fmt::format("{:.{}f}", value / std::pow(10.0, e), digits());
  if (mant.find('.') != std::string::npos) {
    while (mant.back() == '0') mant.pop_back();
    if (mant.back() == '.') mant.pop_back();
  }
  return fmt::format("{}e{}", mant, e);
}

std::string training_plot_svg(std::span<const PlotPoint> points, const std::string& title,
                              const PlotOptions& options) {
  // Logs are in step order; a resumed run appended to an older log may not be, and a line plot
  // must be drawn left to right.
  std::vector<PlotPoint> pts(points.begin(), points.end());
  std::stable_sort(pts.begin(), pts.end(),
                   [](const PlotPoint& a, const PlotPoint& b) { return a.step < b.step; });

  std::vector<Sample> loss, eval, lr;
  Range loss_range, lr_range;
  int64_t nonfinite = 0;
  int64_t min_step = 0, max_step = std::max<int64_t>(0, options.total_steps);
  for (const PlotPoint& p : pts) {
    min_step = std::min(min_step, p.step);
    max_step = std::max(max_step, p.step);
    if (std::isfinite(p.loss)) {
      loss.push_back({p.step, p.loss});
      loss_range.add(p.loss);
    } else {
      ++nonfinite;
    }
    if (p.eval_loss) {
      if (std::isfinite(*p.eval_loss)) {
        eval.push_back({p.step, *p.eval_loss});
        loss_range.add(*p.eval_loss);
      } else {
        ++nonfinite;
      }
    }
    if (std::isfinite(p.lr)) {
      lr.push_back({p.step, p.lr});
      lr_range.add(p.lr);
    } else {
      ++nonfinite;
    }
  }

  // Loss axis: exactly the data range (the highest loss touches the top of the panel). Learning
  // rate axis: from 0, since warmup and decay are read against zero.
  const Range ly = widened(loss_range);
  Range lry = lr_range;
  if (!lry.empty()) lry.add(0);
  lry = lry.empty() || !flat(lry) ? widened(lry) : Range{0, 1};  // all (near) zero: 0..1
  const double x0 = static_cast<double>(min_step);
  // At least one step wide (and wide enough to differ from x0 as a double, for absurd steps).
  const double x1 = std::max(static_cast<double>(max_step), x0 + std::max(1.0, std::abs(x0) * 1e-9));
  const Panel lp{x0, x1, ly.lo, ly.hi, kLossTop, kLossBottom};
  const Panel rp{x0, x1, lry.lo, lry.hi, kLrTop, kLrBottom};
  const Ticks xt = step_ticks(x0, x1);

  std::string subtitle;
  if (pts.empty()) {
    subtitle = "no log entries yet";
  } else {
    subtitle = fmt::format("step {}", pts.back().step);
    if (options.total_steps > 0) subtitle += fmt::format(" of {}", options.total_steps);
    if (!loss.empty()) subtitle += fmt::format(" · loss {:.4f}", loss.back().value);
    if (!eval.empty()) {
      const Sample best = *std::min_element(
          eval.begin(), eval.end(), [](const Sample& a, const Sample& b) { return a.value < b.value; });
      subtitle += fmt::format(" · eval loss {:.4f} (best {:.4f} at step {})", eval.back().value, best.value,
                              best.step);
    }
    if (!lr.empty()) subtitle += fmt::format(" · lr {}", format_lr(lr.back().value));
    if (nonfinite > 0)
      subtitle += fmt::format(" · {} non-finite value{} not drawn", nonfinite, nonfinite == 1 ? "" : "s");
  }

  const size_t max_points = static_cast<size_t>(std::max<int64_t>(4, options.max_points));
  std::string svg;
  svg.reserve(16384 + 40 * (std::min(loss.size(), max_points) + std::min(lr.size(), max_points)));
  const std::string esc_title = xml_escape(title);
  svg += fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
      "<title>{2}</title>\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n"
      "<text id=\"title\" x=\"{3:.1f}\" y=\"28\" font-size=\"16\" font-weight=\"bold\">{2}</text>\n"
      "<text id=\"subtitle\" x=\"{3:.1f}\" y=\"50\" fill=\"#555\">{4}</text>\n",
      kWidth, kHeight, esc_title, kLeft, xml_escape(subtitle));

  // Top panel: losses.
  svg += "<g id=\"loss-panel\">\n";
  const bool have_loss = !loss.empty() || !eval.empty();
  const Ticks lyt = nice_ticks(ly.lo, ly.hi, 6);
  draw_axes(svg, lp, xt, have_loss ? &lyt : nullptr, "loss");
  if (!have_loss) {
    draw_message(svg, lp, pts.empty() ? "no data yet" : "no finite loss values yet");
  } else {
    const auto dl = decimate(loss, max_points);
    draw_series(svg, lp, dl, "train-loss", kLossColor, "");
    if (dl.size() == 1) draw_markers(svg, lp, dl, "train-loss-marker", kLossColor);
    draw_series(svg, lp, decimate(eval, max_points), "eval-loss", kEvalColor, " stroke-dasharray=\"5 3\"");
    if (!eval.empty() && eval.size() <= kMaxEvalMarkers)
      draw_markers(svg, lp, eval, "eval-markers", kEvalColor);
    // Legend in the top-right corner, where a falling loss leaves room.
    const int entries = (loss.empty() ? 0 : 1) + (eval.empty() ? 0 : 1);
    const double lx = kRight - 128, ly0 = kLossTop + 8;
    svg += fmt::format(
        "<g class=\"legend\">\n<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"120\" height=\"{}\" fill=\"#ffffff\" "
        "fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n",
        lx, ly0, 8 + 18 * entries);
    double y = ly0 + 17;
    if (!loss.empty()) {
      svg += fmt::format(
          "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\" "
          "stroke-width=\"2\"/>\n"
          "<text x=\"{4:.1f}\" y=\"{1:.1f}\" dy=\"0.35em\">training loss</text>\n",
          lx + 8, y - 4, lx + 32, kLossColor, lx + 38);
      y += 18;
    }
    if (!eval.empty())
      svg += fmt::format(
          "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\" "
          "stroke-width=\"2\" "
          "stroke-dasharray=\"5 3\"/>\n<circle cx=\"{4:.1f}\" cy=\"{1:.1f}\" r=\"3\" fill=\"{3}\"/>\n"
          "<text x=\"{5:.1f}\" y=\"{1:.1f}\" dy=\"0.35em\">eval loss</text>\n",
          lx + 8, y - 4, lx + 32, kEvalColor, lx + 20, lx + 38);
    svg += "</g>\n";
  }
  svg += "</g>\n";

  // Bottom panel: learning rate.
  svg += "<g id=\"lr-panel\">\n";
  const Ticks ryt = nice_ticks(lry.lo, lry.hi, 4);
  draw_axes(svg, rp, xt, lr.empty() ? nullptr : &ryt, "learning rate");
  if (lr.empty()) {
    draw_message(svg, rp, pts.empty() ? "no data yet" : "no finite learning rates yet");
  } else {
    const auto dr = decimate(lr, max_points);
    draw_series(svg, rp, dr, "learning-rate", kLrColor, "");
    if (dr.size() == 1) draw_markers(svg, rp, dr, "learning-rate-marker", kLrColor);
  }
  svg += "</g>\n";
  svg += fmt::format("<text class=\"axis-title\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">step</text>\n",
                     (kLeft + kRight) / 2, kHeight - 26);
  svg += "</svg>\n";
  return svg;
}

}  // namespace bidora::train
