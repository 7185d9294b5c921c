#include "cli/analysis_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "train/metrics_plot.h"
#include "train/svg_text.h"

namespace bidora::cli {
namespace {

using train::format_tick;
using train::nice_ticks;
using train::Ticks;
using train::xml_escape;

// Page layout in SVG user units (= CSS px): the plot area on the left, the legend to its right.
constexpr int kWidth = 900, kHeight = 600;
constexpr double kLeft = 84, kRight = 640, kTop = 72, kBottom = 520;
constexpr double kLegendX = 656;
// Colours by module kind (matplotlib's tab10), fixed so that q_proj has the same colour in every plot.
constexpr std::array<const char*, kNumLinearKinds> kKindColor = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                                                 "#9467bd", "#8c564b", "#e377c2"};
constexpr int kNumShapes = 6;
// Sources listed in the legend; more only repeat shapes and would overflow the page.
constexpr size_t kMaxLegendSources = 12;

const char* kind_color(LinearKind k) {
  return kKindColor[static_cast<size_t>(k)];
}

using train::ValueRange;
using Range = ValueRange;

// The data range plus 5% on each side so no marker sits on the frame; a constant range (one
// point, or all ΔD equal) is padded by 10% of its magnitude, or 1 around zero. Clamped so huge
// values cannot pad to infinity.
Range padded(Range r) {
  if (r.empty()) return {0, 1};
  const double big = std::numeric_limits<double>::max();
  double pad = (r.hi * 0.5 - r.lo * 0.5) * 0.1;  // halved: finite even for a ±1e308 span
  if (!(pad > 1e-200)) pad = std::abs(r.lo) > 1e-200 ? std::abs(r.lo) * 0.1 : 1.0;
  return {std::max(-big, r.lo - pad), std::min(big, r.hi + pad)};
}

// Data → pixels. Fractions on halved values stay finite even when a range spans ±1e308; pixels
// are clamped so that a steep fitted line does not print 300-digit coordinates (the clip path
// cuts it at the frame anyway).
struct Axes {
  Range x, y;
  static double fraction(double v, const Range& r) {
    return (v * 0.5 - r.lo * 0.5) / (r.hi * 0.5 - r.lo * 0.5);
  }
  double px(double v) const { return std::clamp(kLeft + fraction(v, x) * (kRight - kLeft), -1e5, 1e5); }
  double py(double v) const { return std::clamp(kBottom - fraction(v, y) * (kBottom - kTop), -1e5, 1e5); }
};

// A marker of shape `shape` centred at (cx, cy), filled with the enclosing group's colour;
// `tooltip` (escaped) becomes its <title>.
std::string marker(int shape, double cx, double cy, const std::string& tooltip) {
  const std::string title = tooltip.empty() ? "" : "<title>" + xml_escape(tooltip) + "</title>";
  const auto closed = [&](const char* tag, const std::string& attrs) {
    return title.empty() ? fmt::format("<{} {}/>\n", tag, attrs)
                         : fmt::format("<{0} {1}>{2}</{0}>\n", tag, attrs, title);
  };
  switch (shape % kNumShapes) {
    case 0:
      return closed("circle", fmt::format("cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\"", cx, cy));
    case 1:
      return closed(
          "rect", fmt::format("x=\"{:.1f}\" y=\"{:.1f}\" width=\"6.4\" height=\"6.4\"", cx - 3.2, cy - 3.2));
    case 2:
      return closed("path", fmt::format("d=\"M{:.1f} {:.1f}l4 7h-8z\"", cx, cy - 4.5));
    case 3:
      return closed("path", fmt::format("d=\"M{:.1f} {:.1f}l4.2 4.2l-4.2 4.2l-4.2 -4.2z\"", cx, cy - 4.2));
    case 4:
      return closed("path", fmt::format("d=\"M{:.1f} {:.1f}l4 -7h-8z\"", cx, cy + 4.5));
    default:  // a cross, drawn as a filled plus rotated 45°
      return closed("path",
                    fmt::format("d=\"M{:.1f} {:.1f}h3v-3h2v3h3v2h-3v3h-2v-3h-3z\" transform=\"rotate(45 "
                                "{:.1f} {:.1f})\"",
                                cx - 4, cy - 1, cx, cy));
  }
}

std::string fit_text(const LineFit& f) {
  if (!f.slope) return f.points < 2 ? "k undefined (< 2 points)" : "k undefined (ΔD constant)";
  std::string s = fmt::format("k = {:.4g}", *f.slope);
  if (f.correlation) s += fmt::format(", r = {:.2f}", *f.correlation);
  return s;
}

bool utf8_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// Long labels (checkpoint paths) keep their end, where the checkpoint name is, so the legend
// stays inside the page. Byte counts, cut at UTF-8 boundaries only.
std::string keep_tail(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t from = s.size() - (max_bytes - 1);
  while (from < s.size() && utf8_continuation(s[from])) ++from;
  return "…" + s.substr(from);
}

// A long title keeps its start (what and which model) and its end (which adapter).
std::string keep_ends(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t head = max_bytes / 2;
  while (head > 0 && utf8_continuation(s[head])) --head;
  return s.substr(0, head) + keep_tail(s, max_bytes - head);
}

void draw_axes(std::string& svg, const Axes& a, const Ticks& xt, const Ticks& yt) {
  svg += "<g class=\"grid\" stroke=\"#e6e6e6\" stroke-width=\"1\">\n";
  for (double x : xt.values)
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\"/>\n", a.px(x), kTop,
                       kBottom);
  for (double y : yt.values)
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\"/>\n", kLeft,
                       a.py(y), kRight);
  svg += "</g>\n";
  svg += fmt::format(
      "<rect class=\"plot-area\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" "
      "stroke=\"#999\"/>\n",
      kLeft, kTop, kRight - kLeft, kBottom - kTop);
  svg += "<g class=\"y-ticks\" text-anchor=\"end\" fill=\"#333\" font-size=\"11\">\n";
  for (double y : yt.values)
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" dy=\"0.35em\">{}</text>\n", kLeft - 6, a.py(y),
                       format_tick(y, yt.step));
  svg += "</g>\n<g class=\"x-ticks\" text-anchor=\"middle\" fill=\"#333\" font-size=\"11\">\n";
  for (double x : xt.values)
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", a.px(x), kBottom + 15,
                       format_tick(x, xt.step));
  svg += "</g>\n";
  svg += fmt::format(
      "<text class=\"axis-title\" id=\"x-title\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">ΔD: "
      "direction "
      "change, mean of 1 − cos(V, W₀) over rows</text>\n",
      (kLeft + kRight) / 2, kBottom + 40);
  svg += fmt::format(
      "<text class=\"axis-title\" id=\"y-title\" transform=\"translate(22 {:.1f}) rotate(-90)\" "
      "text-anchor=\"middle\">ΔM: magnitude change, mean of |m − ‖W₀‖| over rows</text>\n",
      (kTop + kBottom) / 2);
}

}  // namespace

std::string weight_decomposition_svg(std::span<const DecompositionSample> samples, const std::string& title) {
  // Sources in order of appearance (the caller lists checkpoints by step), and the finite points.
  std::vector<std::string> sources;
  std::vector<int> source_of(samples.size(), 0);
  Range xr, yr;
  int64_t nonfinite = 0;
  std::array<bool, kNumLinearKinds> has_kind{};
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    auto it = std::find(sources.begin(), sources.end(), s.source);
    if (it == sources.end()) it = sources.insert(sources.end(), s.source);
    source_of[i] = static_cast<int>(it - sources.begin());
    if (!std::isfinite(s.point.delta_d) || !std::isfinite(s.point.delta_m)) {
      ++nonfinite;
      continue;
    }
    xr.add(s.point.delta_d);
    yr.add(s.point.delta_m);
    has_kind[static_cast<size_t>(s.point.kind)] = true;
  }
  const int64_t drawn = static_cast<int64_t>(samples.size()) - nonfinite;

  // One least-squares line per module kind, and one over all points for the subtitle.
  std::array<LineFit, kNumLinearKinds> fits{};
  std::array<Range, kNumLinearKinds> kind_x{};
  for (int k = 0; k < kNumLinearKinds; ++k) {
    std::vector<double> x, y;
    for (const auto& s : samples)
      if (static_cast<int>(s.point.kind) == k) {
        x.push_back(s.point.delta_d);
        y.push_back(s.point.delta_m);
        if (std::isfinite(s.point.delta_d) && std::isfinite(s.point.delta_m)) kind_x[k].add(s.point.delta_d);
      }
    fits[k] = fit_line(x, y);
  }
  std::vector<double> all_x, all_y;
  for (const auto& s : samples) {
    all_x.push_back(s.point.delta_d);
    all_y.push_back(s.point.delta_m);
  }
  const LineFit all = fit_line(all_x, all_y);

  const Axes axes{padded(xr), padded(yr)};
  const Ticks xt = nice_ticks(axes.x.lo, axes.x.hi, 6), yt = nice_ticks(axes.y.lo, axes.y.hi, 6);

  std::string subtitle = fmt::format("{} point{}", drawn, drawn == 1 ? "" : "s");
  if (sources.size() > 1) subtitle += fmt::format(" from {} adapters/checkpoints", sources.size());
  subtitle += " · all modules: " + fit_text(all);
  if (nonfinite > 0)
    subtitle += fmt::format(" · {} non-finite point{} not drawn", nonfinite, nonfinite == 1 ? "" : "s");

  std::string svg;
  svg.reserve(8192 + 160 * samples.size());
  const std::string esc_title = xml_escape(title);
  svg += fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
      "<title>{2}</title>\n"
      "<defs><clipPath id=\"plot-clip\"><rect x=\"{3:.1f}\" y=\"{4:.1f}\" width=\"{5:.1f}\" "
      "height=\"{6:.1f}\"/></clipPath></defs>\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n"
      "<text id=\"title\" x=\"{3:.1f}\" y=\"28\" font-size=\"16\" font-weight=\"bold\">{8}</text>\n"
      "<text id=\"subtitle\" x=\"{3:.1f}\" y=\"50\" fill=\"#555\">{7}</text>\n",
      kWidth, kHeight, esc_title, kLeft, kTop, kRight - kLeft, kBottom - kTop, xml_escape(subtitle),
      xml_escape(keep_ends(title, 76)));
  draw_axes(svg, axes, xt, yt);

  if (drawn == 0) {
    svg += fmt::format(
        "<text class=\"message\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#888\" "
        "font-size=\"16\">{}</text>\n",
        (kLeft + kRight) / 2, (kTop + kBottom) / 2, samples.empty() ? "no data" : "no finite values");
  }

  // Fitted lines under the points, across each kind's own ΔD range.
  svg += "<g class=\"fits\" clip-path=\"url(#plot-clip)\" stroke-width=\"1.5\">\n";
  for (int k = 0; k < kNumLinearKinds; ++k) {
    const LineFit& f = fits[k];
    if (!f.slope) continue;
    const double x0 = kind_x[k].lo, x1 = kind_x[k].hi;
    const double y0 = *f.slope * x0 + *f.intercept, y1 = *f.slope * x1 + *f.intercept;
    if (!std::isfinite(y0) || !std::isfinite(y1)) continue;
    svg += fmt::format(
        "<line id=\"fit-{}\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
        "stroke-dasharray=\"6 3\"/>\n",
        linear_name(static_cast<LinearKind>(k)), axes.px(x0), axes.py(y0), axes.px(x1), axes.py(y1),
        kind_color(static_cast<LinearKind>(k)));
  }
  svg += "</g>\n";

  for (int k = 0; k < kNumLinearKinds; ++k) {
    if (!has_kind[k]) continue;
    const auto kind = static_cast<LinearKind>(k);
    svg += fmt::format("<g id=\"points-{}\" class=\"points\" fill=\"{}\" fill-opacity=\"0.85\">\n",
                       linear_name(kind), kind_color(kind));
    for (size_t i = 0; i < samples.size(); ++i) {
      const DecompositionPoint& p = samples[i].point;
      if (p.kind != kind || !std::isfinite(p.delta_d) || !std::isfinite(p.delta_m)) continue;
      const std::string tip =
          fmt::format("layer {} {}{}{}: ΔD = {:.4g}, ΔM = {:.4g}", p.layer, linear_name(kind),
                      samples[i].source.empty() ? "" : " · ", samples[i].source, p.delta_d, p.delta_m);
      svg += marker(source_of[i], axes.px(p.delta_d), axes.py(p.delta_m), tip);
    }
    svg += "</g>\n";
  }

  // Legend: module kinds with their slopes, then the marker of each source (when several).
  svg += "<g class=\"legend\" font-size=\"11\">\n";
  double y = kTop + 10;
  svg += fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" font-weight=\"bold\">module: slope of ΔM on ΔD</text>\n", kLegendX, y);
  y += 20;
  for (int k = 0; k < kNumLinearKinds; ++k) {
    if (!has_kind[k]) continue;
    const auto kind = static_cast<LinearKind>(k);
    svg += fmt::format(
        "<g class=\"legend-kind\" id=\"legend-{0}\"><line x1=\"{1:.1f}\" y1=\"{2:.1f}\" x2=\"{3:.1f}\" "
        "y2=\"{2:.1f}\" stroke=\"{4}\" stroke-width=\"1.5\" stroke-dasharray=\"6 3\"/><circle cx=\"{5:.1f}\" "
        "cy=\"{2:.1f}\" r=\"3.5\" fill=\"{4}\"/><text x=\"{6:.1f}\" y=\"{2:.1f}\" dy=\"0.35em\">{0}: "
        "{7}</text></g>\n",
        linear_name(kind), kLegendX, y, kLegendX + 22, kind_color(kind), kLegendX + 11, kLegendX + 28,
        xml_escape(fit_text(fits[k])));
    y += 18;
  }
  if (sources.size() > 1) {
    y += 8;
    svg += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" font-weight=\"bold\">marker: adapter / checkpoint</text>\n",
        kLegendX, y);
    y += 20;
    svg += "<g class=\"legend-sources\" fill=\"#555\">\n";
    for (size_t i = 0; i < sources.size() && i < kMaxLegendSources; ++i) {
      svg += marker(static_cast<int>(i), kLegendX + 11, y, "");
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" dy=\"0.35em\" fill=\"#000\">{}</text>\n",
                         kLegendX + 28, y, xml_escape(keep_tail(sources[i], 28)));
      y += 18;
    }
    if (sources.size() > kMaxLegendSources)
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" dy=\"0.35em\">… and {} more</text>\n",
                         kLegendX + 28, y, sources.size() - kMaxLegendSources);
    svg += "</g>\n";
  }
  svg += "</g>\n";
  // The paper's reading, so the plot can be read without the terminal output.
  svg += fmt::format(
      "<text class=\"note\" x=\"{:.1f}\" y=\"{}\" fill=\"#555\" font-size=\"11\">DoRA paper: full "
      "fine-tuning shows "
      "a negative slope, LoRA a positive one (BiDoRA reports −8.042, DoRA −1.784).</text>\n",
      kLeft, kHeight - 14);
  svg += "</svg>\n";
  return svg;
}

}  // namespace bidora::cli
