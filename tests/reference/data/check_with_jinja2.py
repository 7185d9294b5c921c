#!/usr/bin/env python3
"""Cross-checks tests/fixtures/data/chat_goldens.json (rendered by @huggingface/jinja) against
Python Jinja2, the engine transformers uses, configured like transformers' apply_chat_template
(sandboxed, trim_blocks, lstrip_blocks, loopcontrols, raise_exception). Optional: needs the
Debian package python3-jinja2; the C++ tests never run it. Exit code 1 on any difference."""
import json
import pathlib
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

here = pathlib.Path(__file__).resolve().parent
fixtures = here.parent.parent / "fixtures"
templates = json.loads((here / "chat_templates.json").read_text())
conversations = json.loads((here / "conversations.json").read_text())
goldens = json.loads((fixtures / "data" / "chat_goldens.json").read_text())


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
env.filters["tojson"] = lambda x, indent=None: json.dumps(x, indent=indent, ensure_ascii=False)
env.globals["raise_exception"] = raise_exception

bad = 0
for g in goldens:
    t = templates[g["template"]]
    src = t.get("template") or json.loads((here / t["template_file"]).read_text())["chat_template"]
    try:
        out = env.from_string(src).render(messages=conversations[g["conversation"]], bos_token=t["bos_token"] or "",
                                          eos_token=t["eos_token"], add_generation_prompt=False,
                                          date_string="26 Jul 2024")
        err = None
    except jinja2.exceptions.TemplateError as e:
        out, err = None, str(e)
    if (err is None) != ("error" not in g) or (out is not None and out != g["rendered"]):
        bad += 1
        print(f"DIFF {g['template']}/{g['conversation']}: jinja2={out!r} error={err!r} golden={g.get('rendered')!r}")
print(f"jinja2 {jinja2.__version__}: {len(goldens) - bad} of {len(goldens)} goldens agree")
sys.exit(1 if bad else 0)
