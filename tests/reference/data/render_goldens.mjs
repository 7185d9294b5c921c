// Generates tests/fixtures/data/chat_goldens.json and record_goldens.json: the reference rendering
// of every conversation in conversations.json with every template in chat_templates.json (real
// Hugging Face chat templates, rendered by @huggingface/jinja exactly as transformers.js renders
// them), plus the token ids of each rendered string from an independent tokenizer implementation
// (@lenml/tokenizers, a transformers.js fork) on the real tokenizer.json fixtures.
// Run: see README.md in this directory. Pinned versions are in package.json / package-lock.json.
import { Template } from "@huggingface/jinja";
import { TokenizerLoader } from "@lenml/tokenizers";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

// @huggingface/jinja 0.5.11 ignores the argument of str.strip/lstrip/rstrip and always strips
// whitespace, unlike Python (transformers renders with Jinja2): Qwen3's content.lstrip('\n')
// would also eat spaces. Give the three methods Python semantics. The classes are not exported,
// so they are reached through the builtins map of a string value.
function patchPythonStrip() {
  let map = null;
  const origGet = Map.prototype.get;
  Map.prototype.get = function (key) {
    if (!map && this.has("lstrip") && this.has("upper")) map = this;
    return origGet.call(this, key);
  };
  new Template("{{ 'a'.upper() }}").render({});
  Map.prototype.get = origGet;
  const FunctionValue = map.get("upper").constructor;
  const StringValue = map.get("upper").value([]).constructor;
  const pySpace = "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005" +
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";
  const strip = (s, chars, left, right) => {
    const set = chars === undefined || chars === null ? pySpace : chars;
    let b = 0, e = s.length;
    if (left) while (b < e && set.includes(s[b])) ++b;
    if (right) while (e > b && set.includes(s[e - 1])) --e;
    return s.slice(b, e);
  };
  const desc = Object.getOwnPropertyDescriptor(StringValue.prototype, "builtins");
  Object.defineProperty(StringValue.prototype, "builtins", {
    get() {
      const m = desc.get.call(this);
      if (!m.pythonStrip) {
        for (const [name, l, r] of [["strip", true, true], ["lstrip", true, false], ["rstrip", false, true]])
          m.set(name, new FunctionValue((args) => new StringValue(strip(this.value, args[0]?.value, l, r))));
        m.pythonStrip = true;
      }
      return m;
    },
  });
}
patchPythonStrip();

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.resolve(here, "../../fixtures");
const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));

const templates = readJson(path.join(here, "chat_templates.json"));
const conversations = readJson(path.join(here, "conversations.json"));
const records = readJson(path.join(here, "records.json"));

// Which real tokenizer file stands in for each template family (see README.md).
const tokenizerFor = {
  "qwen2.5": "qwen3", qwen3: "qwen3", smollm2: "qwen3",
  llama3: "llama3_1", "llama3.1": "llama3_1",
  llama2: "llama2", mistral: "llama2", zephyr: "llama2",
};
const tokenizers = {};
function tokenizer(name) {
  if (!tokenizers[name]) {
    const dir = path.join(fixtures, "npm", name);
    tokenizers[name] = TokenizerLoader.fromPreTrained({
      tokenizerJSON: readJson(path.join(dir, "tokenizer.json")),
      tokenizerConfig: readJson(path.join(dir, "tokenizer_config.json")),
    });
  }
  return tokenizers[name];
}
const encode = (name, text, addSpecial) =>
  Array.from(tokenizer(name).encode(text, { add_special_tokens: addSpecial }));

const chat = [];
for (const [tname, t] of Object.entries(templates)) {
  const source = t.template ?? readJson(path.resolve(here, t.template_file)).chat_template;
  const tmpl = new Template(source);
  for (const [cname, messages] of Object.entries(conversations)) {
    const entry = { template: tname, conversation: cname };
    try {
      entry.rendered = tmpl.render({
        messages,
        bos_token: t.bos_token ?? "",
        eos_token: t.eos_token,
        add_generation_prompt: false,
        // @huggingface/jinja defines strftime_now (today's date); pin the Llama 3.1 date instead.
        date_string: "26 Jul 2024",
      });  // raise_exception is built into @huggingface/jinja
      entry.tokenizer = tokenizerFor[tname];
      entry.ids = encode(entry.tokenizer, entry.rendered, false);
    } catch (e) {
      entry.error = String(e.message ?? e);  // only the templates' own raise_exception is expected here
      console.log(`${tname}/${cname}: ${entry.error}`);
    }
    chat.push(entry);
  }
}

// Non-chat formats, rendered by the rules of src/data (Alpaca prompt, EOS string appended,
// special tokens added by the tokenizer's post-processor).
const alpacaPrompt = (r) =>
  r.input
    ? "Below is an instruction that describes a task, paired with an input that provides further context. " +
      "Write a response that appropriately completes the request.\n\n" +
      `### Instruction:\n${r.instruction}\n\n### Input:\n${r.input}\n\n### Response:\n`
    : "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
      `### Instruction:\n${r.instruction}\n\n### Response:\n`;
function segments(r, eos) {
  if ("instruction" in r) return [[alpacaPrompt(r), false], [r.output + eos, true]];
  if ("prompt" in r) return [[r.prompt, false], [r.completion + eos, true]];
  if ("code" in r) return [[r.code + eos, true]];
  return [[r.text + eos, true]];
}
const recordOut = [];
for (const tk of ["qwen3", "llama3_1", "llama3", "llama2"]) {
  const eos = readJson(path.join(fixtures, "npm", tk, "tokenizer_config.json")).eos_token;
  for (const [rname, r] of Object.entries(records)) {
    const segs = segments(r, eos);
    const text = segs.map((s) => s[0]).join("");
    recordOut.push({ tokenizer: tk, record: rname, segments: segs, ids: encode(tk, text, true) });
  }
}

const outDir = path.join(fixtures, "data");
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, "chat_goldens.json"), JSON.stringify(chat, null, 1) + "\n");
fs.writeFileSync(path.join(outDir, "record_goldens.json"), JSON.stringify(recordOut, null, 1) + "\n");
console.log(`wrote ${chat.length} chat and ${recordOut.length} record goldens to ${outDir}`);
