"""How often the model calls tools right: a fixed suite of chats (benchmarks/data/tool_cases.json)
against a real `jisu serve`, through the official openai client, greedy.

Half the cases need a tool call (one or two tools offered, Chinese and English, some after an
earlier call was answered); half must be answered in text: small talk, questions about a tool's
subject that need no call, JSON answers the user asked for, and the answer after a tool's
result (which must use the result, not repeat the call). `auto` runs every case; `required`
only those that need a call (it cannot answer in text). Each case is scored for:

- the decision: a call when one is needed; else a text answer, and not a call written out as
  text (JSON naming an offered tool, which a client shows its user as it is);
- the right tool, and arguments valid against its schema;
- key values, where the case names them: the arguments' (the city, the currency codes); in a
  text answer, the figure from the tool's result (a result echoed back as JSON is no answer),
  or the keys of the JSON object asked for.

A case scores when every check that applies to it passes.

    .venv/bin/python benchmarks/bench_tools.py [--model PATH] [--rounds 1] [--only auto|required]
                                               [--json results.json] [--parallel 1]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import jsonschema
import openai

from servers import jisu_server
from standin import standin_path

SUITE = Path(__file__).resolve().parent / "data" / "tool_cases.json"
MODES = ("auto", "required")
MAX_TOKENS = 100  # enough for every expected answer; a long text answer is a text answer anyway


@dataclass
class Outcome:
    """What came back for one case, and how it scored (None: the check does not apply)."""

    case: str
    mode: str
    content: str | None
    calls: list[tuple[str, str]]  # (name, arguments as sent)
    decision: bool
    right_tool: bool | None
    valid_args: bool | None
    key_values: bool | None

    @property
    def passed(self) -> bool:
        return all(check is not False for check in (self.decision, self.right_tool, self.valid_args, self.key_values))

    def what_came(self) -> str:
        if self.calls:
            return "; ".join(f"{name}({arguments})" for name, arguments in self.calls)
        return "text: " + " ".join((self.content or "").split())[:70]


def load_suite() -> tuple[dict, list[dict]]:
    suite = json.loads(SUITE.read_text())
    return suite["tools"], suite["cases"]


def ask(client: openai.OpenAI, model: str, tools: dict, case: dict, mode: str) -> Outcome:
    response = client.chat.completions.create(
        model=model, messages=case["messages"], tools=[tools[name] for name in case["tools"]],
        tool_choice=mode, temperature=0, max_tokens=MAX_TOKENS)
    message = response.choices[0].message
    calls = [(call.function.name, call.function.arguments) for call in message.tool_calls or []]
    return score(case, tools, mode, message.content, calls)


def score(case: dict, tools: dict, mode: str, content: str | None, calls: list[tuple[str, str]]) -> Outcome:
    wanted, text = case["call"], content or ""
    right_tool = valid_args = key_values = None
    if wanted:
        decision = bool(calls)
        right_tool = decision and all(name == wanted for name, _ in calls)
        schema = tools[wanted]["function"]["parameters"]
        valid_args = right_tool and all(_valid(arguments, schema) for _, arguments in calls)
        if "args" in case:
            key_values = valid_args and _has_values(json.loads(calls[0][1]), case["args"])
    else:
        # A call written out as text is no answer either: the user reads JSON meant for a program.
        decision = not calls and not _writes_a_call(text, case)
        if "answer" in case or "json_keys" in case:
            key_values = decision and _has_answer(text, case)
    return Outcome(case["id"], mode, content, calls, decision, right_tool, valid_args, key_values)


def _writes_a_call(text: str, case: dict) -> bool:
    """Qwen's call markup, JSON naming an offered tool, or JSON shaped as a call to any function
    (`{"name": "hello", "arguments": ...}` for "say hello") unless that shape was asked for."""
    names = "|".join(re.escape(name) for name in case["tools"])
    if "<tool_call>" in text or re.search(rf'"name"\s*:\s*"({names})"', text):
        return True
    asked_for_the_shape = "arguments" in case.get("json_keys", [])
    return not asked_for_the_shape and re.search(r'"name"\s*:\s*"[^"]*"\s*,\s*"arguments"', text) is not None


def _has_answer(text: str, case: dict) -> bool:
    """The text holds one of the expected figures, and is the JSON object asked for if one was,
    else no JSON document at all (a tool's result echoed as JSON is not an answer in words)."""
    if "answer" in case and not any(figure.lower() in text.lower() for figure in case["answer"]):
        return False
    document = _json_document(text)
    if "json_keys" in case:
        return isinstance(document, dict) and all(key in document for key in case["json_keys"])
    return document is None


def _json_document(text: str) -> dict | list | None:
    """The JSON object or array that the text is, or that its first fenced block holds."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    try:
        document = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return None
    return document if isinstance(document, (dict, list)) else None


def _valid(arguments: str, schema: dict) -> bool:
    try:
        jsonschema.validate(json.loads(arguments), schema)
        return True
    except (ValueError, jsonschema.ValidationError):
        return False


def _has_values(arguments: dict, expected: dict[str, list]) -> bool:
    """Each expected argument has one of its accepted values; strings match by containment."""
    def matches(value, accepted) -> bool:
        if isinstance(accepted, str):
            return isinstance(value, str) and accepted.lower() in value.lower()
        return value == accepted

    return all(any(matches(arguments.get(key), accepted) for accepted in values) for key, values in expected.items())


def run_mode(client: openai.OpenAI, model: str, tools: dict, cases: list[dict], mode: str,
             parallel: int) -> list[Outcome]:
    if mode == "required":
        cases = [case for case in cases if case["call"]]
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda case: ask(client, model, tools, case, mode), cases))


def share(outcomes: list[Outcome], check: str) -> str:
    values = [getattr(outcome, check) for outcome in outcomes]
    counted = [value for value in values if value is not None]
    return f"{sum(counted)}/{len(counted)} ({sum(counted) / len(counted):.0%})" if counted else "-"


def print_table(results: dict[str, list[Outcome]], rounds: int) -> None:
    print("| tool_choice | cases | right decision | right tool | valid arguments | key values | score |")
    print("|---|---|---|---|---|---|---|")
    for mode, outcomes in results.items():
        passed = [outcome.passed for outcome in outcomes]
        print(f"| {mode} | {len(outcomes) // rounds} | {share(outcomes, 'decision')} | "
              f"{share(outcomes, 'right_tool')} | {share(outcomes, 'valid_args')} | "
              f"{share(outcomes, 'key_values')} | {sum(passed)}/{len(passed)} ({sum(passed) / len(passed):.0%}) |")
    for mode, outcomes in results.items():
        failed = Counter(outcome.case for outcome in outcomes if not outcome.passed)
        print(f"\n{mode}: {len(failed)} failing case(s)")
        for case, times in failed.items():
            example = next(outcome for outcome in outcomes if outcome.case == case and not outcome.passed)
            print(f"  {case} ({times}/{rounds}): {example.what_came()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="alias or GGUF path (default: the stand-in in jisu's default format)")
    parser.add_argument("--rounds", type=int, default=1, help="times the suite runs in each mode")
    parser.add_argument("--only", choices=MODES, help="one tool_choice mode only")
    parser.add_argument("--json", type=Path, help="write every case's outcome to this file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1,
                        help="answers generated at once (1: the same figures every run; batches change the last bits)")
    options = parser.parse_args()
    model_path = standin_path(options.model)
    tools, cases = load_suite()
    modes = [options.only] if options.only else list(MODES)
    results: dict[str, list[Outcome]] = {mode: [] for mode in modes}
    with jisu_server(model_path, options.threads, options.parallel, 4096) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
        model = client.models.list().data[0].id
        for round_ in range(options.rounds):
            for mode in modes:
                results[mode] += run_mode(client, model, tools, cases, mode, options.parallel)
                print(f"round {round_ + 1} {mode}: done", file=sys.stderr)
    print(f"\n{Path(model_path).name}, temperature 0, {options.rounds} round(s), {len(cases)} cases "
          f"({sum(1 for case in cases if case['call'])} need a tool call)\n")
    print_table(results, options.rounds)
    if options.json:
        options.json.write_text(json.dumps({mode: [{**asdict(o), "passed": o.passed} for o in outcomes]
                                            for mode, outcomes in results.items()}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
