// json_util: every failure to read JSON is a bidora::Error naming the source.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "core/error.h"
#include "io/json_util.h"

namespace bidora {
namespace {

std::string parse_error_of(const std::string& text) {
  try {
    (void)json_util::parse(text, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Fuzzing regression: a number too large for a double is nlohmann out_of_range.406, which escaped
// json_util::parse (config.json, tokenizer.json) as a non-bidora exception.
TEST(JsonUtil, NumberOverflowIsAnErrorNamingTheSource) {
  const std::string msg = parse_error_of("{\"hidden_size\": 1e400}");
  EXPECT_NE(msg.find("cfg.json: invalid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("number overflow"), std::string::npos) << msg;
  EXPECT_NE(parse_error_of("{\"a\": -1e3081}").find("cfg.json"), std::string::npos);
}

std::string int_error_of(const std::string& text) {
  try {
    (void)json_util::get_int(json_util::parse(text, "cfg.json"), "n", "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Fuzzing regression (fuzz_model_config, fuzz_tokenizer): an integer field holding a float outside
// int64's range (4.09644e+51) was converted to int64 before the check, undefined behaviour.
TEST(JsonUtil, IntegerFieldsOutOfRangeAreRefused) {
  EXPECT_NE(
      int_error_of("{\"n\": 4.09644e51}").find("cfg.json: field \"n\" must be an integer, got 4.09644e+51"),
      std::string::npos)
      << int_error_of("{\"n\": 4.09644e51}");
  EXPECT_NE(int_error_of("{\"n\": -1e300}").find("must be an integer"), std::string::npos);
  EXPECT_NE(int_error_of("{\"n\": 9223372036854775808.0}").find("must be an integer"), std::string::npos);
  EXPECT_NE(int_error_of("{\"n\": 2.5}").find("must be an integer"), std::string::npos);
  // An unsigned literal past INT64_MAX would wrap to a negative value.
  EXPECT_NE(int_error_of("{\"n\": 18446744073709551615}").find("out of the 64-bit integer range"),
            std::string::npos);
  const auto get = [](const std::string& text) {
    return json_util::get_int(json_util::parse(text, "cfg.json"), "n", "cfg.json");
  };
  EXPECT_EQ(get("{\"n\": 4.0}"), 4);
  EXPECT_EQ(get("{\"n\": -9223372036854775808.0}"), INT64_MIN);
  EXPECT_EQ(get("{\"n\": 9223372036854775807}"), INT64_MAX);
  EXPECT_EQ(get("{\"n\": 1e15}"), 1000000000000000);
}

TEST(JsonUtil, SyntaxErrorNamesTheByte) {
  const std::string msg = parse_error_of("{\"a\": }");
  EXPECT_NE(msg.find("cfg.json: invalid JSON at byte 7"), std::string::npos) << msg;
}

}  // namespace
}  // namespace bidora
