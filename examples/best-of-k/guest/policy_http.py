"""A policy for agent.py that asks a language model: an OpenAI-compatible
chat endpoint at LLM_URL (e.g. a local llama.cpp server), with LLM_MODEL.
Use it with AGENT_POLICY=/work/policy_http.py and an egress policy that
allows the endpoint. Not exercised by forkd's tests: no model is reachable
on the machines they run on."""
import json
import os
import urllib.request


def choose(candidates, temperature, rng, history):
    listing = "\n".join(f"- {c['id']}: replace {c.get('find')!r} with {c.get('replace')!r}" for c in candidates)
    prompt = (
        "You are fixing the bugs in calc.py so that its tests pass, with as few edits as possible.\n"
        f"Edits made so far: {history or 'none'}.\nCandidates:\n{listing}\n"
        "Answer with the id of the next edit only ('stop' when done)."
    )
    body = json.dumps(
        {
            "model": os.environ.get("LLM_MODEL", "local"),
            "temperature": temperature,
            "seed": rng.randrange(2**31),
            "messages": [{"role": "user", "content": prompt}],
        }
    ).encode()
    request = urllib.request.Request(
        os.environ["LLM_URL"].rstrip("/") + "/v1/chat/completions",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)["choices"][0]["message"]["content"].strip()
    ids = {c["id"] for c in candidates}
    return answer if answer in ids else "stop"
