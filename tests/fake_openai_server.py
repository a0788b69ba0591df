"""A stand-in OpenAI-compatible chat server on 127.0.0.1, for backend and pipeline tests.

    python tests/fake_openai_server.py --fail-first 2 --reject-logprobs --log requests.jsonl

Prints its port on the first line of stdout. Answers by what the prompt asks for (score,
verdict, rewrite, description, counterfactuals), with token logprobs when asked. The first
`--fail-first` requests get 503 with Retry-After: 0; `--unreadable` answers every score
request with text no parser can read; `--reject-prefill` answers 400 to a continued
assistant message, as servers without vLLM's chat extensions do. Every request is appended to --log.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCORE_PROBS = {"1": 0.05, "2": 0.1, "3": 0.2, "4": 0.6, "5": 0.05}


def answer_for(prompt: str) -> str:
    if "VERDICT" in prompt:
        # Proposed 1 -> inconsistent (relabel to 2); proposed 4 -> inconsistent, says 5 (drop); else consistent.
        if "Proposed label: 1" in prompt:
            return "VERDICT: INCONSISTENT\nANSWER: 2"
        if "Proposed label: 4" in prompt:
            return "VERDICT: INCONSISTENT\nANSWER: 5"
        return "VERDICT: CONSISTENT\nANSWER: 3"
    if "PARAPHRASE" in prompt:
        return "INSTRUCTION: Put the puck on the goal.\nPARAPHRASE: Move the puck onto the goal.\nPARAPHRASE: Place the puck at the target."
    if "SCORE: <1-4>" in prompt:
        return ("INSTRUCTION: Push the puck off the table | SCORE: 1\n"
                "INSTRUCTION: Stack the puck on a block | SCORE: 4\n"
                "INSTRUCTION: Place the puck at the goal | SCORE: 5")
    if "FINAL STATE" in prompt:
        return "SCENE: a puck on a table.\nACTIONS: the arm grasps the puck and lifts it.\nFINAL STATE: the puck is at the goal."
    return "ANSWER: 4"


def logprobs_for(text: str, prefilled: bool) -> dict:
    digit = text.split(":")[-1].strip()
    tokens = [digit] if prefilled else ["ANSWER", ":", " ", digit]
    content = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in tokens]
    content[-1]["top_logprobs"] = [{"token": k, "logprob": math.log(p)} for k, p in SCORE_PROBS.items()]
    content[-1]["top_logprobs"].append({"token": "ANSWER", "logprob": math.log(0.001)})
    return {"content": content}


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-openai/1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state = self.server.state
        with state["lock"]:
            state["count"] += 1
            count = state["count"]
            if state["log"]:
                with open(state["log"], "a") as log:
                    content = body["messages"][0]["content"]
                    log.write(json.dumps({"n": count, "images": sum(c["type"] == "image_url" for c in content),
                                          "logprobs": bool(body.get("logprobs")),
                                          "prefill": body["messages"][-1]["content"]
                                          if body.get("continue_final_message") else None}) + "\n")
        if count <= state["fail_first"]:
            return self._send(503, {"error": "warming up"}, {"Retry-After": "0"})
        if body.get("logprobs") and state["reject_logprobs"]:
            return self._send(400, {"error": {"message": "logprobs are not supported"}})
        prefilled = bool(body.get("continue_final_message"))
        if prefilled and state["reject_prefill"]:
            return self._send(400, {"error": {"message": "Unrecognized request argument: continue_final_message"}})
        prompt = body["messages"][0]["content"][-1]["text"]
        text = answer_for(prompt)
        if state["unreadable"] and text.startswith("ANSWER"):
            text = "The robot seems to be doing something with the object."
        readable = text.startswith("ANSWER")
        if prefilled:  # the model continues the assistant's "ANSWER: "
            prefix = body["messages"][-1]["content"]
            text = text[len(prefix):] if text.startswith(prefix) else text
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if body.get("logprobs") and readable:
            choice["logprobs"] = logprobs_for(text, prefilled)
        self._send(200, {"id": f"c{count}", "object": "chat.completion", "choices": [choice],
                         "usage": {"prompt_tokens": 100 + len(prompt) // 4, "completion_tokens": 5}})

    def _send(self, status: int, payload: dict, headers: dict | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--reject-logprobs", action="store_true")
    parser.add_argument("--unreadable", action="store_true")
    parser.add_argument("--reject-prefill", action="store_true")
    parser.add_argument("--log")
    parser.add_argument("--max-seconds", type=float, default=300, help="stop by itself after this long")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.state = {"lock": threading.Lock(), "count": 0, "fail_first": args.fail_first,
                    "reject_logprobs": args.reject_logprobs, "log": args.log,
                    "unreadable": args.unreadable, "reject_prefill": args.reject_prefill}
    print(server.server_address[1], flush=True)
    threading.Timer(args.max_seconds, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
