// Chat renderers against the real templates: tests/fixtures/data/chat_goldens.json holds every
// conversation of tests/reference/data/conversations.json rendered by the real Hugging Face
// templates with @huggingface/jinja (regenerate: tests/reference/data/README.md).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/files.h"
#include "data/chat_template.h"
#include "data/example.h"
#include "test_support.h"

namespace bidora::data {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json load(const std::string& rel) {
  return json::parse(read_file(test::source_path(rel)));
}

const json& templates() {
  static const json t = load("tests/reference/data/chat_templates.json");
  return t;
}

ChatTemplate preset(const std::string& name) {
  const json& t = templates().at(name);
  return chat_template_by_name(name, t["bos_token"].is_null() ? "" : t["bos_token"].get<std::string>(),
                               t["eos_token"].get<std::string>());
}

std::vector<Message> messages(const json& conv) {
  return parse_record(json{{"messages", conv}}, "golden").messages;
}

std::string joined(const std::vector<Segment>& segs) {
  std::string s;
  for (const auto& seg : segs) s += seg.text;
  return s;
}

// Where bidora deliberately refuses what the Jinja template renders: Llama 2's template drops a
// system message that is not first without a word; we report it instead.
const std::set<std::pair<std::string, std::string>> kDeliberateErrors = {{"llama2", "double_system"}};

TEST(ChatTemplate, RendersEveryGoldenExactly) {
  const json goldens = load("tests/fixtures/data/chat_goldens.json");
  const json convs = load("tests/reference/data/conversations.json");
  ASSERT_GE(goldens.size(), 100u);
  int rendered = 0, refused = 0;
  for (const json& g : goldens) {
    const std::string tname = g["template"], cname = g["conversation"];
    SCOPED_TRACE(tname + " / " + cname);
    const ChatTemplate t = preset(tname);
    const auto msgs = messages(convs.at(cname));
    if (g.contains("error") || kDeliberateErrors.count({tname, cname})) {
      EXPECT_THROW(render_chat(t, msgs), Error);
      ++refused;
      continue;
    }
    const std::vector<Segment> segs = render_chat(t, msgs);
    EXPECT_EQ(joined(segs), g["rendered"].get<std::string>());
    // Invariants of a rendering: no empty segment, flags alternate.
    for (size_t i = 0; i < segs.size(); ++i) {
      EXPECT_FALSE(segs[i].text.empty());
      if (i > 0) {
        EXPECT_NE(segs[i].trained, segs[i - 1].trained);
      }
    }
    ++rendered;
  }
  EXPECT_EQ(rendered + refused, static_cast<int>(goldens.size()));
  EXPECT_GE(rendered, 120);
}

std::vector<Message> single() {
  return {{Role::User, "What is 2+2?", std::nullopt}, {Role::Assistant, "2+2 equals 4.", std::nullopt}};
}

TEST(ChatTemplate, TrainsAssistantOutputAndEndOfTurnOnly) {
  using S = std::vector<Segment>;
  EXPECT_EQ(render_chat(preset("qwen3"), single()),
            (S{{"<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", false},
               {"<think>\n\n</think>\n\n2+2 equals 4.<|im_end|>", true},
               {"\n", false}}));
  EXPECT_EQ(render_chat(preset("qwen2.5"), single()),
            (S{{"<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                "assistant.<|im_end|>\n"
                "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
                false},
               {"2+2 equals 4.<|im_end|>", true},
               {"\n", false}}));
  EXPECT_EQ(render_chat(preset("llama3"), single()),
            (S{{"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
                false},
               {"2+2 equals 4.<|eot_id|>", true}}));
  EXPECT_EQ(render_chat(preset("llama2"), single()),
            (S{{"<s>[INST] What is 2+2? [/INST]", false}, {" 2+2 equals 4. </s>", true}}));
  EXPECT_EQ(render_chat(preset("mistral"), single()),
            (S{{"<s>[INST] What is 2+2? [/INST]", false}, {"2+2 equals 4.</s>", true}}));
  EXPECT_EQ(render_chat(preset("zephyr"), single()),
            (S{{"<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n", false},
               {"2+2 equals 4.</s>", true},
               {"\n", false}}));
}

TEST(ChatTemplate, MultiTurnTrainsEveryAssistantTurn) {
  const std::vector<Message> m = {{Role::System, "S", std::nullopt},
                                  {Role::User, "u1", std::nullopt},
                                  {Role::Assistant, "a1", std::nullopt},
                                  {Role::User, "u2", std::nullopt},
                                  {Role::Assistant, "a2", std::nullopt}};
  std::vector<std::string> trained;
  for (const auto& s : render_chat(preset("llama3.1"), m))
    if (s.trained) trained.push_back(s.text);
  EXPECT_EQ(trained, (std::vector<std::string>{"a1<|eot_id|>", "a2<|eot_id|>"}));
  trained.clear();
  for (const auto& s : render_chat(preset("llama2"), m))
    if (s.trained) trained.push_back(s.text);
  EXPECT_EQ(trained, (std::vector<std::string>{" a1 </s>", " a2 </s>"}));
}

TEST(ChatTemplate, RoleOrderErrorsNameTheMessage) {
  const std::vector<Message> two_users = {
      {Role::User, "a", std::nullopt}, {Role::User, "b", std::nullopt}, {Role::Assistant, "c", std::nullopt}};
  try {
    render_chat(preset("llama2"), two_users);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("the llama2 chat template needs user and assistant messages to alternate, "
                          "starting with user (messages[1] is user)"));
  }
  try {
    render_chat(preset("mistral"), {{Role::System, "s", std::nullopt}, {Role::User, "u", std::nullopt}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("the mistral chat template has no system role (messages[0])"));
  }
  // ChatML-style templates accept any order.
  EXPECT_NO_THROW(render_chat(preset("qwen2.5"), two_users));
  EXPECT_NO_THROW(render_chat(preset("llama3"), two_users));
}

TEST(ChatTemplate, DetectsTheRealTemplates) {
  const json& t = templates();
  for (const auto& [name, entry] : t.items()) {
    SCOPED_TRACE(name);
    std::string src;
    if (entry.contains("template")) {
      src = entry["template"];
    } else {
      src = load("tests/reference/data/" + entry["template_file"].get<std::string>()).at("chat_template");
    }
    auto d = detect_chat_template(src, "<bos>", "<eos>");
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->name, name);
    EXPECT_EQ(d->bos_token, "<bos>");
    EXPECT_EQ(d->eos_token, "<eos>");
  }
}

TEST(ChatTemplate, DetectsChatMLDefaultSystemAndRejectsUnknownTemplates) {
  // A ChatML template with its own default system prompt, "\n" escaped as in tokenizer_config.json.
  const std::string custom =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
      "'<|im_start|>system\\nYou are Bob.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + "
      "'\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
  auto d = detect_chat_template(custom, "", "<|im_end|>");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->name, "chatml");
  EXPECT_EQ(d->default_system, "You are Bob.");
  EXPECT_EQ(joined(render_chat(*d, single())).substr(0, 42), "<|im_start|>system\nYou are Bob.<|im_end|>\n");
  // No default system prompt at all.
  auto plain =
      detect_chat_template("{{'<|im_start|>' + message['role'] + '\\n' + message['content']}}", "", "");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->default_system, "");

  EXPECT_FALSE(detect_chat_template("{{ '<start_of_turn>user\\n' }}", "", "").has_value());  // Gemma
  EXPECT_FALSE(
      detect_chat_template("{{ ' [INST] ' + message['content'] }}", "", "").has_value());  // newer Mistral
  EXPECT_FALSE(detect_chat_template("", "", "").has_value());
}

TEST(ChatTemplate, ByNameListsValidNames) {
  EXPECT_EQ(chat_template_by_name("qwen2.5", "", "x").default_system,
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_EQ(chat_template_by_name("smollm2", "", "x").default_system,
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  try {
    chat_template_by_name("gemma", "", "");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("unknown chat template \"gemma\"; expected one of: chatml, qwen2, qwen2.5, "
                          "smollm2, qwen3, llama3, llama3.1, llama2, mistral, zephyr"));
  }
}

}  // namespace
}  // namespace bidora::data
