"""`jisu ask` and `jisu chat` as users run them: real processes, pipes, exit codes; in-process
(a model flag such as --model loads the model in the command) and through a running `jisu
serve` with the same model file (--url)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from live_server import running_server
from streams import wait_until_server_idle

JISU = [sys.executable, "-m", "jisu.cli"]
KEY = "integration-key-1234"
# Without --url and a model flag, discovery would probe 127.0.0.1:8080: nothing of the test
# environment (JISU_URL, JISU_API_KEY, a server someone runs there) may decide what answers.
CLEAN_ENV = {name: value for name, value in os.environ.items() if name not in ("JISU_URL", "JISU_API_KEY")}


def jisu(*args, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(JISU + list(args), input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=CLEAN_ENV)


@pytest.fixture(scope="module", autouse=True)
def own_home(tmp_path_factory):
    """Every chat is kept now: the commands and the server keep theirs in a JISU_HOME of their
    own, not in the machine's history (the model file is passed by path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(CLEAN_ENV, "JISU_HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(scope="module")
def server(model_path):
    """`jisu serve` on the same model file the in-process tests load, with a key."""
    with running_server(model_path, "--ctx-size", "4096", "--parallel", "2", "--api-key", KEY,
                        name="cli", env={"JISU_HOME": CLEAN_ENV["JISU_HOME"]}) as url:
        yield url


def through(server: str) -> list[str]:
    return ["--url", server, "--api-key", KEY]


def test_ask_with_piped_stdin_writes_only_the_answer(model_path, tmp_path):
    source = "function add(a, b) {\n  return a + b;\n}\n"
    result = jisu("ask", "Convert this JavaScript to TypeScript. Reply with only the code.",
                  "--model", str(model_path), "--temperature", "0", "--max-tokens", "80", stdin=source)
    assert result.returncode == 0, result.stderr
    assert "number" in result.stdout, result.stdout  # typed parameters
    assert "add" in result.stdout
    assert result.stderr == "", "nothing but the answer when all goes well"


def test_ask_verbose_reports_speed_on_stderr(model_path):
    result = jisu("ask", "Say hi.", "--model", str(model_path), "--temperature", "0",
                  "--max-tokens", "8", "-v")
    assert result.returncode == 0, result.stderr
    assert re.search(r"time to first token [\d.]+ s", result.stderr)
    assert re.search(r"[\d.]+ tokens/s", result.stderr)
    assert "tokens/s" not in result.stdout


def test_ask_too_long_prompt_is_a_clear_error(model_path):
    result = jisu("ask", "Summarise:", "--model", str(model_path), "--ctx-size", "256",
                  stdin="北京 上海 广州 深圳 " * 200)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jisu: error:"), result.stderr
    assert "256" in lines[0] and re.search(r"prompt has \d{3,} tokens", lines[0])


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["ask", "hi", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["ask", "hi", "--model", "/nonexistent/x.gguf"], "x.gguf: no such file"),
        (["ask", "hi", "--temperature", "hot"], "'hot' is not a valid float"),
        (["ask", "hi", "--temperature", "9"], "temperature must be in"),
        (["ask", "hi", "--ctx-size", "99999999"], "--ctx-size"),
        (["chat", "--bogus-flag"], "No such option"),
        (["ask"], "nothing to ask"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, fragment):
    result = jisu(*args, stdin="")
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0] and "Traceback" not in result.stderr


def test_a_non_gguf_file_is_named_in_the_error(tmp_path):
    fake = tmp_path / "notes.gguf"
    fake.write_text("not a model")
    result = jisu("ask", "hi", "--model", str(fake))
    assert result.returncode == 2
    assert "notes.gguf: not a GGUF model file" in result.stderr


def test_chat_through_a_pipe_remembers_turn_one_after_ten_turns(model_path):
    turns = ["Remember this: my lucky number is 4721. Just say OK."]
    turns += [f"Give one word that rhymes with '{w}'." for w in
              ("cat", "day", "light", "blue", "tree", "rain", "book", "star")]
    turns += ["What is my lucky number? Reply with just the number."]
    result = jisu("chat", "--model", str(model_path), "--temperature", "0", "--max-tokens", "24",
                  stdin="\n".join(turns) + "\n", timeout=600)
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(answers) >= 10, result.stdout
    assert "4721" in answers[-1], f"the 10th answer forgot turn 1: {answers[-1]!r}"


def test_chat_commands_reset_forgets_the_conversation(model_path):
    # The same question before and after /reset, greedy: the number is known, then it is not.
    # Without the first answer the test would pass on a chat that never remembered anything.
    question = "What is my lucky number? Reply with just the number."
    turns = ["Remember this: my lucky number is 4721. Just say OK.", question, "/reset", question]
    result = jisu("chat", "--model", str(model_path), "--temperature", "0", "--max-tokens", "24",
                  stdin="\n".join(turns) + "\n")
    assert result.returncode == 0, result.stderr
    assert "(new conversation; conv_" in result.stderr
    answers = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(answers) == 3, f"one line per answer: {result.stdout!r}"
    assert "4721" in answers[1], f"before /reset the chat knows the number: {answers[1]!r}"
    assert "4721" not in answers[2], f"after /reset it does not: {answers[2]!r}"


def test_ctrl_c_stops_the_answer_but_not_the_chat(model_path):
    # Ctrl-C as a terminal delivers it: a suite started in the background (`cmd &`) would
    # pass SIGINT down ignored, and the chat would never see it.
    process = subprocess.Popen(JISU + ["chat", "--model", str(model_path), "--temperature", "0",
                                       "--max-tokens", "400"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=CLEAN_ENV, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    process.stdin.write("Write a very long essay about the history of China.\n")
    process.stdin.flush()
    first = process.stdout.read(20)  # the answer has started streaming
    assert first
    process.send_signal(signal.SIGINT)
    out, err = process.communicate("What is 2 + 3? Reply with just the number.\n", timeout=300)
    assert process.returncode == 0, err
    assert "(stopped)" in err
    assert "5" in out.splitlines()[-1], "the chat must go on after Ctrl-C"


# ---- through a running jisu serve ---------------------------------------------------------

JS_SOURCE = "function add(a, b) {\n  return a + b;\n}\n"
CONVERT = "Convert this JavaScript to TypeScript. Reply with only the code."


def test_ask_through_the_server_with_piped_stdin_gives_the_in_process_answer(model_path, server):
    served = jisu("ask", CONVERT, *through(server), "--temperature", "0", "--max-tokens", "80", stdin=JS_SOURCE)
    assert served.returncode == 0, served.stderr
    assert served.stderr == "", "nothing but the answer when all goes well"
    assert "number" in served.stdout and "add" in served.stdout, served.stdout
    local = jisu("ask", CONVERT, "--model", str(model_path), "--temperature", "0", "--max-tokens", "80",
                 stdin=JS_SOURCE)
    assert local.returncode == 0, local.stderr
    assert served.stdout == local.stdout, "the same greedy answer from the same file, whichever answers"


def test_ask_verbose_says_the_server_answered(server):
    result = jisu("ask", "你好", *through(server), "--temperature", "0", "--max-tokens", "8", "-v")
    assert result.returncode == 0, result.stderr
    assert f"[answering through the jisu server at {server}:" in result.stderr
    assert re.search(r"time to first token [\d.]+ s", result.stderr) and "tokens/s" in result.stderr
    assert result.stdout.strip(), "an answer"


def test_ask_x_through_the_server_writes_only_code(server, tmp_path):
    result = jisu("ask", "-x", "Convert this JavaScript to TypeScript.", *through(server), "--temperature", "0",
                  "--max-tokens", "120", stdin=JS_SOURCE)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"a fenced block was found: {result.stderr}"
    assert "```" not in result.stdout and "number" in result.stdout, result.stdout
    assert result.stdout.lstrip().startswith(("function", "const", "export", "let")), result.stdout


def test_a_wrong_key_for_the_real_server_exits_1(server):
    result = jisu("ask", "hi", "--url", server, "--api-key", "not-the-key-123")
    assert result.returncode == 1
    assert result.stderr.strip() == f"jisu: error: the jisu server at {server} refused the API key (--api-key, JISU_API_KEY)"


def test_chat_through_the_server_remembers_shows_and_reads_multiline(server):
    turns = ["Remember this: my lucky number is 4721. Just say OK.",
             '"""', "What is my lucky number?", "Reply with just the number.", '"""',
             "/show", "/set temperature 5", "/unknown"]
    result = jisu("chat", *through(server), "--temperature", "0", "--max-tokens", "24",
                  stdin="\n".join(turns) + "\n")
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(answers) == 2, f"one answer per message, the multi-line one included: {result.stdout!r}"
    assert "4721" in answers[1], answers
    assert re.search(r"context used: \d+ of 4096 tokens", result.stderr), result.stderr
    assert "answered by: the jisu server at" in result.stderr
    assert "temperature must be in [0.0, 2.0], got 5.0" in result.stderr
    assert "unknown command /unknown" in result.stderr


def test_ctrl_c_in_a_chat_through_the_server_stops_the_answer_there(server):
    process = subprocess.Popen(JISU + ["chat", *through(server), "--temperature", "0", "--max-tokens", "400"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=CLEAN_ENV, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    process.stdin.write("Write a very long essay about the history of China.\n")
    process.stdin.flush()
    assert process.stdout.read(20), "the answer has started streaming"
    process.send_signal(signal.SIGINT)
    wait_until_server_idle(server, headers={"Authorization": f"Bearer {KEY}"})  # cancelled there, not finished
    out, err = process.communicate("What is 2 + 3? Reply with just the number.\n", timeout=300)
    assert process.returncode == 0, err
    assert "(stopped)" in err
    assert "5" in out.splitlines()[-1], "the chat goes on after Ctrl-C"
