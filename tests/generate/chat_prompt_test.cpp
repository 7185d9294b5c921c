// Generation prompts of every chat format, against the text the families' Hugging Face templates
// render with add_generation_prompt=True (written out by hand from the templates), including
// multi-turn histories (Llama 2's BOS per turn, Qwen3 dropping an earlier turn's reasoning).
// Then generation_config.json parsing and the resolution of the default sampling settings.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "generate/chat_prompt.h"
#include "generate/generation_config.h"
#include "test_support.h"

namespace bidora {
namespace {

using data::Message;
using data::Role;

std::string render(const std::string& preset, const std::vector<Message>& m, const std::string& bos = "",
                   const std::string& eos = "") {
  return render_generation_prompt(data::chat_template_by_name(preset, bos, eos), m);
}

const std::vector<Message> kHi = {{Role::User, "Hi", std::nullopt}};

TEST(ChatPrompt, ChatMLOpensTheAssistantTurnAfterTheDefaultSystem) {
  EXPECT_EQ(
      render("qwen2.5", kHi),
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<Message> sys = {{Role::System, "Be brief.", std::nullopt},
                                    {Role::User, "Hi", std::nullopt}};
  EXPECT_EQ(
      render("chatml", sys),
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatPrompt, Qwen3DropsEarlierReasoningAndOpensTheTurnWithThinkingEnabled) {
  const std::vector<Message> m = {{Role::User, "2+2?", std::nullopt},
                                  {Role::Assistant, "<think>\nadd\n</think>\n\n4", std::nullopt},
                                  {Role::User, "3+3?", std::nullopt}};
  EXPECT_EQ(render("qwen3", m),
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
            "<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatPrompt, Llama3AndLlama31) {
  EXPECT_EQ(render("llama3", kHi, "<|begin_of_text|>", "<|eot_id|>"),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(
      render("llama3.1", kHi, "<|begin_of_text|>", "<|eot_id|>"),
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
      "2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatPrompt, Llama2MultiTurnWithSystemMistralAndZephyr) {
  const std::vector<Message> m = {{Role::System, "Be brief.", std::nullopt},
                                  {Role::User, "Hi", std::nullopt},
                                  {Role::Assistant, "Hello", std::nullopt},
                                  {Role::User, "How are you?", std::nullopt}};
  EXPECT_EQ(render("llama2", m, "<s>", "</s>"),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] How are you? [/INST]");
  EXPECT_EQ(render("mistral", kHi, "<s>", "</s>"), "<s>[INST] Hi [/INST]");
  EXPECT_EQ(render("zephyr", kHi, "<s>", "</s>"), "<|user|>\nHi</s>\n<|assistant|>\n");
}

TEST(ChatPrompt, RefusesConversationsThatDoNotEndWithTheUser) {
  EXPECT_THROW(render("chatml", {}), Error);
  EXPECT_THROW(render("chatml", {{Role::User, "a", std::nullopt}, {Role::Assistant, "b", std::nullopt}}),
               Error);
  EXPECT_THROW(
      render("mistral", {{Role::System, "s", std::nullopt}, {Role::User, "a", std::nullopt}}, "<s>", "</s>"),
      Error);
}

TEST(GenerationConfig, ParsesEosIntOrListAndSamplingValues) {
  const GenerationDefaults g = parse_generation_config(
      R"({"do_sample": true, "temperature": 0.6, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05,
          "eos_token_id": [151645, 151643], "bos_token_id": 1})",
      "gc.json");
  EXPECT_TRUE(g.present);
  EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{151645, 151643}));
  const SamplingParams p = default_sampling(g);
  EXPECT_EQ(p.temperature, 0.6);
  EXPECT_EQ(p.top_p, 0.8);
  EXPECT_EQ(p.top_k, 20);
  EXPECT_EQ(p.repetition_penalty, 1.05);
  EXPECT_EQ(parse_generation_config(R"({"eos_token_id": 2})", "gc.json").eos_token_ids,
            std::vector<int64_t>{2});
}

TEST(GenerationConfig, DoSampleFalseIsGreedyAndAbsentValuesKeepBidorasDefaults) {
  EXPECT_EQ(default_sampling(parse_generation_config(R"({"do_sample": false, "temperature": 0.9})", "g"))
                .temperature,
            0.0);
  const SamplingParams d = default_sampling(parse_generation_config(R"({"eos_token_id": 2})", "g"));
  EXPECT_EQ(d.temperature, 0.7);
  EXPECT_EQ(d.top_k, 50);
  EXPECT_EQ(d.top_p, 0.9);
  EXPECT_EQ(d.repetition_penalty, 1.0);
}

TEST(GenerationConfig, WrongTypesNameTheFileAndKeyAndAMissingFileIsAbsent) {
  try {
    parse_generation_config(R"({"eos_token_id": "x"})", "/m/generation_config.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/m/generation_config.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("eos_token_id"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_generation_config(R"({"temperature": "hot"})", "g"), Error);
  EXPECT_THROW(parse_generation_config(R"({"eos_token_id": [1, "a"]})", "g"), Error);
  const std::string dir = test::make_temp_dir("gencfg");
  EXPECT_FALSE(read_generation_config(dir).present);
  std::ofstream(dir + "/generation_config.json") << R"({"top_k": 5})";
  EXPECT_EQ(read_generation_config(dir).top_k, 5);
}

}  // namespace
}  // namespace bidora
