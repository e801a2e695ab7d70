"""The demo's agent, run in each branch after the fork. At its decision
point it picks edits one by one from candidates.json with a policy (by
default softmax sampling over each edit's prior at the branch's
`temperature`, seeded by its `SEED`), applies them, runs the tests, and
prints its score last: tests passed minus edits made.

The policy hook: AGENT_POLICY=/path/to/policy.py whose
`choose(candidates, temperature, rng, history)` returns a candidate id
(policy_http.py asks an HTTP LLM endpoint). Both variables come from the
fork's variant (environment variables in every exec of the branch)."""
import importlib.util
import io
import json
import math
import os
import random
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.join(HERE, "project")
MAX_EDITS = 6


def softmax_choice(candidates, temperature, rng, history):
    weights = [math.exp(c["prior"] / max(temperature, 1e-3)) for c in candidates]
    return rng.choices(candidates, weights=weights)[0]["id"]


def load_policy():
    path = os.environ.get("AGENT_POLICY")
    if not path:
        return softmax_choice
    spec = importlib.util.spec_from_file_location("agent_policy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.choose


def run_tests():
    sys.path.insert(0, PROJECT)
    suite = unittest.defaultTestLoader.discover(PROJECT, pattern="test_*.py")
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    return result.testsRun - len(result.failures) - len(result.errors)


def main():
    temperature = float(os.environ.get("temperature", "1.0"))
    rng = random.Random(int(os.environ.get("SEED", "0")))
    with open(os.path.join(HERE, "candidates.json"), encoding="utf-8") as f:
        remaining = json.load(f)
    choose = load_policy()
    history = []
    source_path = os.path.join(PROJECT, "calc.py")
    with open(source_path, encoding="utf-8") as f:
        source = f.read()
    while len(history) < MAX_EDITS:
        picked = choose(remaining, temperature, rng, history)
        history.append(picked)
        if picked == "stop":
            break
        edit = next(c for c in remaining if c["id"] == picked)
        remaining = [c for c in remaining if c["id"] != picked]
        source = source.replace(edit["find"], edit["replace"], 1)
    with open(source_path, "w", encoding="utf-8") as f:
        f.write(source)
    edits = len([h for h in history if h != "stop"])
    passed = run_tests()
    print(json.dumps({"temperature": temperature, "edits": history, "passed": passed}), file=sys.stderr)
    print(passed - edits)


if __name__ == "__main__":
    main()
