// Generates tests/fixtures/tokenizer/goldens_<name>.json: reference token ids for the C++
// tokenizer tests, produced by an independent implementation (@lenml/tokenizers, a fork of
// transformers.js, pinned in package.json / package-lock.json).
//
// Regenerate (only when the corpus, the fixtures or the reference version change):
//   scripts/fetch-fixtures.sh
//   cd tests/reference/tokenizer && npm ci && node gen_goldens.js
//
// Inputs: corpus.json (hand-picked cases) plus a seeded random mix of fragments. Inputs on which
// transformers.js is known to differ from Rust `tokenizers` (U+FEFF, which JS \s matches;
// U+180E; single_word / normalized added tokens, which the fixtures do not use) are excluded;
// those behaviours are tested in C++ with hand-checked expectations instead.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { TokenizerLoader } = require('@lenml/tokenizers');

const root = path.resolve(__dirname, '../../..');
const fixtures = path.join(root, 'tests/fixtures/npm');
const outDir = path.join(root, 'tests/fixtures/tokenizer');
const NAMES = ['qwen3', 'llama3_1', 'llama3', 'llama2'];

// Small deterministic PRNG (mulberry32) so that the random cases are reproducible.
function rng(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FRAGMENTS = [
  'the', 'The', ' quick', 'brown', ' fox', 'jumps', 'over', 'lazy', 'dog', "'s", "'ll", "n't", "'RE",
  ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n', '\u00a0', '\u3000',
  '0', '7', '42', '123', '2024', '3.14', '1e-9', '\u0663\u0664', '\u2460',
  '.', ',', '!', '?', '...', '(', ')', '[', ']', '{', '}', '"', '`', '#', '//', '->', '::', '==', '+=', '_',
  '\u4f60\u597d', '\u4e16\u754c', '\u3053\u3093\u306b\u3061\u306f', '\uc548\ub155', '\u0928\u092e\u0938\u094d\u0924\u0947',
  '\u041f\u0440\u0438\u0432\u0435\u0442', '\u05e9\u05dc\u05d5\u05dd', '\u0645\u0631\u062d\u0628\u0627', '\u0e2a\u0e27\u0e31\u0e2a',
  '\u00e9', 'e\u0301', 'A\u030a', '\u212b', '\u1100\u1161', '\ufb01', '\uff21', 'x\u00b2',
  '\ud83d\ude00', '\ud83d\udc4d\ud83c\udffd', '\ud83e\udd99', '\u200d', '\u200b', '\ud835\udd18',
  '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<|begin_of_text|>', '<|eot_id|>', '<s>', '</s>', '<unk>',
  '<think>', '</think>', '[INST]', '[/INST]', '<|im_start', '|>', '<', '>',
  'def', ' return', 'std::vector<int>', 'self.x', '__init__', 'http://a.b/c?d=e',
  'supercalifragilisticexpialidocious', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
];

function randomCases(n, seed) {
  const r = rng(seed);
  const out = [];
  for (let i = 0; i < n; i++) {
    const parts = 1 + Math.floor(r() * 24);
    let s = '';
    for (let k = 0; k < parts; k++) s += FRAGMENTS[Math.floor(r() * FRAGMENTS.length)];
    out.push({ name: `random_${i}`, text: s });
  }
  return out;
}

function main() {
  const corpus = JSON.parse(fs.readFileSync(path.join(__dirname, 'corpus.json'), 'utf8')).cases;
  const cases = corpus.concat(randomCases(400, 20241124));
  for (const c of cases) {
    if (/[\ufeff\u180e]/.test(c.text)) throw new Error(`case ${c.name} contains a character JS and Rust disagree on`);
  }
  const refVersion = JSON.parse(
    fs.readFileSync(path.join(__dirname, 'node_modules/@lenml/tokenizers/package.json'), 'utf8')).version;
  fs.mkdirSync(outDir, { recursive: true });
  for (const name of NAMES) {
    const tjPath = path.join(fixtures, name, 'tokenizer.json');
    const tjText = fs.readFileSync(tjPath);
    const tok = TokenizerLoader.fromPreTrained({
      tokenizerJSON: JSON.parse(tjText),
      tokenizerConfig: JSON.parse(fs.readFileSync(path.join(fixtures, name, 'tokenizer_config.json'))),
    });
    const out = {
      reference: `@lenml/tokenizers@${refVersion}`,
      fixture: `@lenml/tokenizer-${name}@3.7.2`,
      tokenizer_json_sha256: crypto.createHash('sha256').update(tjText).digest('hex'),
      cases: cases.map((c) => ({
        name: c.name,
        text: c.text,
        ids: tok.encode(c.text, { add_special_tokens: false }),
        ids_special: tok.encode(c.text, { add_special_tokens: true }),
      })),
    };
    // One case per line keeps the file diff-friendly and small.
    const lines = out.cases.map((c) => JSON.stringify(c));
    const header = JSON.stringify({ reference: out.reference, fixture: out.fixture,
                                    tokenizer_json_sha256: out.tokenizer_json_sha256 });
    const text = header.slice(0, -1) + ',"cases":[\n' + lines.join(',\n') + '\n]}\n';
    fs.writeFileSync(path.join(outDir, `goldens_${name}.json`), text);
    console.log(`${name}: ${out.cases.length} cases`);
  }
}

main();
