#include "data/preview.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace bidora::data {

PreviewResult run_data_preview(const TextCodec& codec, const PreviewOptions& opt) {
  BIDORA_CHECK(opt.max_seq_len > 0, "max_seq_len must be positive, got {}", opt.max_seq_len);
  BIDORA_CHECK(opt.num_examples >= 0, "the number of examples to show cannot be negative");
  PreviewResult r;
  r.chat_template = resolve_chat_template(codec, opt.chat_template);
  r.bos_token = codec.bos_token;
  r.eos_token = codec.eos_token;
  r.eos_id = codec.eos_id;
  r.pad_id = codec.pad_id;
  r.pad_is_eos = codec.pad_is_eos;

  const FormatOptions fmt = format_options(codec, r.chat_template, opt.train_on_prompt);
  LoadedExamples loaded = load_examples(opt.file, fmt, opt.bad_lines, 0);
  r.file = loaded.report;

  const ExampleTokenizer tok(codec.encode);
  const TokenizeOptions topt{opt.max_seq_len, opt.train_on_prompt};
  std::vector<TokenizedExample> all = tok.tokenize_all(loaded.examples, nullptr, topt);
  r.stats = compute_stats(all, opt.max_seq_len, opt.histogram_bins);

  const size_t shown = std::min(static_cast<size_t>(opt.num_examples), all.size());
  for (size_t i = 0; i < shown; ++i) {
    PreviewExample p;
    p.token_runs = decode_runs(codec.decode, all[i]);
    p.tokens = std::move(all[i]);
    p.example = std::move(loaded.examples[i]);
    r.examples.push_back(std::move(p));
  }
  return r;
}

std::vector<Segment> decode_runs(const DecodeFn& decode, const TokenizedExample& ex) {
  std::vector<Segment> runs;
  const std::span<const int32_t> ids(ex.ids);
  std::string prev;  // decode(ids[0, start))
  size_t start = 0;
  while (start < ids.size()) {
    size_t end = start + 1;
    while (end < ids.size() && ex.trained[end] == ex.trained[start]) ++end;
    std::string upto = decode(ids.first(end));
    std::string text =
        upto.starts_with(prev) ? upto.substr(prev.size()) : decode(ids.subspan(start, end - start));
    append_segment(runs, text, ex.trained[start] != 0);
    prev = std::move(upto);
    start = end;
  }
  return runs;
}

namespace {

constexpr const char* kGreen = "\x1b[32m";
constexpr const char* kDim = "\x1b[2m";
constexpr const char* kBold = "\x1b[1m";
constexpr const char* kReset = "\x1b[0m";

// Control characters in user data are shown escaped, so that data cannot drive the terminal.
std::string visible(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7F) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out;
}

std::string token_name(const std::string& s, int32_t id) {
  return s.empty() ? std::string("none") : fmt::format("{} ({})", s, id);
}

std::string percent(int64_t part, int64_t whole) {
  return whole > 0 ? fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) / static_cast<double>(whole))
                   : std::string("-");
}

std::string format_counts(const std::array<int64_t, kNumRecordFormats>& formats) {
  std::string s;
  for (int f = 0; f < kNumRecordFormats; ++f) {
    if (formats[static_cast<size_t>(f)] == 0) continue;
    s += fmt::format("{}{} {}", s.empty() ? "" : ", ", format_name(static_cast<RecordFormat>(f)),
                     formats[static_cast<size_t>(f)]);
  }
  return s;
}

}  // namespace

std::string format_preview(const PreviewResult& r, bool color) {
  const auto bold = [&](const std::string& s) { return color ? fmt::format("{}{}{}", kBold, s, kReset) : s; };
  std::string out;
  out += fmt::format("{}\n", bold(fmt::format("data-preview: {}", r.file.path)));
  if (r.chat_template.chat_template) {
    out += fmt::format("  chat template   {}\n", r.chat_template.chat_template->name);
  } else {
    out += fmt::format("  chat template   none ({})\n", r.chat_template.why_none);
  }
  out += fmt::format("  special tokens  bos {}, eos {}, pad {}\n", r.bos_token.empty() ? "none" : r.bos_token,
                     token_name(r.eos_token, r.eos_id),
                     r.pad_is_eos ? fmt::format("= eos ({})", r.pad_id) : fmt::format("id {}", r.pad_id));
  if (color) {
    out += fmt::format("  legend          {}masked (not in the loss){}  {}trained{}\n", kDim, kReset, kGreen,
                       kReset);
  } else {
    out += "  legend          [[trained text]]; everything else is masked (not in the loss)\n";
  }

  for (size_t i = 0; i < r.examples.size(); ++i) {
    const PreviewExample& p = r.examples[i];
    const TokenizedExample& t = p.tokens;
    out += fmt::format(
        "\n{}\n", bold(fmt::format("── example {} (line {}, {}, {} tokens, {} trained{}) ──", i + 1, t.line,
                                   format_name(t.format), t.ids.size(), t.num_trained(),
                                   t.truncated ? fmt::format(", truncated from {}", t.full_length) : "")));
    for (const Segment& run : p.token_runs) {
      if (color) {
        out += fmt::format("{}{}{}", run.trained ? kGreen : kDim, visible(run.text), kReset);
      } else {
        out += run.trained ? fmt::format("[[{}]]", visible(run.text)) : visible(run.text);
      }
    }
    out += "\n";
  }

  const DatasetStats& s = r.stats;
  out += fmt::format("\n{}\n", bold("── statistics ──"));
  out += fmt::format("  lines read        {} ({} blank, {} skipped)\n", r.file.lines, r.file.blank_lines,
                     r.file.skipped.count);
  out += fmt::format("  examples          {}{}\n", s.examples,
                     s.examples ? fmt::format(" ({})", format_counts(s.formats)) : "");
  out += fmt::format("  tokens            {} ({} trained, {})\n", s.tokens, s.trained_tokens,
                     percent(s.trained_tokens, s.tokens));
  out += fmt::format("  truncated         {} (longer than max_seq_len {})\n", s.truncated, s.max_seq_len);
  if (s.untrained > 0)
    out += fmt::format("  nothing trained   {} (no trained token left; training skips them)\n", s.untrained);
  if (s.split_boundaries > 0)
    out += fmt::format("  split boundaries  {} (a prompt/answer boundary inside a token; it is trained)\n",
                       s.split_boundaries);
  if (s.examples > 0) {
    out += fmt::format("  length (tokens)   min {}, median {}, mean {:.1f}, p95 {}, max {}\n", s.min_length,
                       s.median_length, s.mean_length, s.p95_length, s.max_length);
    out += fmt::format("  packed            {} row{} of {} tokens ({} filled)\n", s.packed_rows,
                       s.packed_rows == 1 ? "" : "s", s.max_seq_len,
                       percent(s.tokens, s.packed_rows * s.max_seq_len));
    out += "  length histogram (tokens per example, before truncation):\n";
    out += format_histogram(s.histogram, s.max_seq_len, 40);
  }
  if (r.file.skipped.count > 0) {
    out += fmt::format("\n{}\n", bold(fmt::format("skipped lines ({}):", r.file.skipped.count)));
    for (const BadLine& b : r.file.skipped.first) out += fmt::format("  {}\n", visible(b.reason));
    if (r.file.skipped.count > static_cast<int64_t>(r.file.skipped.first.size()))
      out += fmt::format("  ... and {} more\n",
                         r.file.skipped.count - static_cast<int64_t>(r.file.skipped.first.size()));
  }
  return out;
}

nlohmann::ordered_json preview_json(const PreviewResult& r) {
  using json = nlohmann::ordered_json;
  const DatasetStats& s = r.stats;
  json formats = json::object();
  for (int f = 0; f < kNumRecordFormats; ++f)
    formats[format_name(static_cast<RecordFormat>(f))] = s.formats[static_cast<size_t>(f)];
  json hist = json::array();
  for (size_t k = 0; k < s.histogram.counts.size(); ++k) {
    const int64_t lo = s.histogram.first + static_cast<int64_t>(k) * s.histogram.bin_width;
    hist.push_back({{"from", lo}, {"to", lo + s.histogram.bin_width - 1}, {"count", s.histogram.counts[k]}});
  }
  json skipped = json::array();
  for (const BadLine& b : r.file.skipped.first) skipped.push_back({{"line", b.line}, {"reason", b.reason}});
  json examples = json::array();
  for (const PreviewExample& p : r.examples) {
    json segs = json::array(), runs = json::array();
    for (const Segment& seg : p.example.segments)
      segs.push_back({{"text", seg.text}, {"trained", seg.trained}});
    for (const Segment& seg : p.token_runs) runs.push_back({{"text", seg.text}, {"trained", seg.trained}});
    examples.push_back({{"line", p.tokens.line},
                        {"format", format_name(p.tokens.format)},
                        {"tokens", p.tokens.ids.size()},
                        {"trained_tokens", p.tokens.num_trained()},
                        {"truncated", p.tokens.truncated},
                        {"untruncated_tokens", p.tokens.full_length},
                        {"segments", segs},
                        {"token_runs", runs},
                        {"ids", p.tokens.ids},
                        {"trained", p.tokens.trained}});
  }
  json tmpl = r.chat_template.chat_template ? json(r.chat_template.chat_template->name) : json(nullptr);
  return {
      {"file", r.file.path},
      {"chat_template", tmpl},
      {"special_tokens",
       {{"bos", r.bos_token.empty() ? json(nullptr) : json(r.bos_token)},
        {"eos", r.eos_token},
        {"eos_id", r.eos_id},
        {"pad_id", r.pad_id},
        {"pad_is_eos", r.pad_is_eos}}},
      {"stats",
       {{"lines", r.file.lines},
        {"blank_lines", r.file.blank_lines},
        {"skipped_lines", r.file.skipped.count},
        {"examples", s.examples},
        {"formats", formats},
        {"tokens", s.tokens},
        {"trained_tokens", s.trained_tokens},
        {"truncated", s.truncated},
        {"untrained", s.untrained},
        {"split_boundaries", s.split_boundaries},
        {"max_seq_len", s.max_seq_len},
        {"length",
         {{"min", s.min_length},
          {"median", s.median_length},
          {"mean", s.mean_length},
          {"p95", s.p95_length},
          {"max", s.max_length}}},
        {"packed_rows", s.packed_rows},
        {"histogram", hist}}},
      {"skipped", skipped},
      {"examples", examples},
  };
}

}  // namespace bidora::data
