"""A stand-in OpenAI-compatible chat server on 127.0.0.1, for backend and pipeline tests.

    python tests/fake_openai_server.py --fail-first 2 --reject-logprobs --log requests.jsonl

Prints its port on the first line of stdout. Answers by what the prompt asks for (score,
verdict, rewrite, description, counterfactuals), with token logprobs when asked. The first
`--fail-first` requests get 503 with Retry-After: 0; `--unreadable` answers every score
request with text no parser can read; `--reject-prefill` answers 400 to a continued
assistant message, as servers without vLLM's chat extensions do, and
`--reject-max-completion-tokens` to that argument, as older servers do; `--max-images N`
answers 400 to a request with more images, in vLLM's words. `--api-key` answers 401 to
any other key. `--model NAME` (repeatable) serves only those names, answering 404 to others
as vLLM does, and lists them at GET /v1/models with `--root` as the checkpoint behind them
(`--no-model-list`: that endpoint does not exist); without it any name is answered and
/v1/models does not exist. Every chat request is appended to --log.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
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

    def do_GET(self):  # noqa: N802
        state = self.server.state
        if self._refused_key():
            return None
        if self.path != "/v1/models" or not state["models"] or state["no_model_list"]:
            return self._send(404, {"detail": "Not Found"})
        cards = [{"id": name, "object": "model", "created": int(time.time()), "owned_by": "vllm",
                  "root": state["root"], "parent": None, "max_model_len": 4096} for name in state["models"]]
        return self._send(200, {"object": "list", "data": cards})

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        state = self.server.state
        content = body["messages"][0]["content"]
        images = sum(c["type"] == "image_url" for c in content)
        with state["lock"]:
            state["count"] += 1
            count = state["count"]
            if state["log"]:
                with open(state["log"], "a") as log:
                    log.write(json.dumps({"n": count, "images": images, "prompt": content[-1]["text"],
                                          "logprobs": bool(body.get("logprobs")),
                                          "max_completion_tokens": body.get("max_completion_tokens"),
                                          "max_tokens": body.get("max_tokens"),
                                          "prefill": body["messages"][-1]["content"]
                                          if body.get("continue_final_message") else None}) + "\n")
        if count <= state["fail_first"]:
            return self._send(503, {"error": "warming up"}, {"Retry-After": "0"})
        if self._refused_key():
            return None
        if state["models"] and body["model"] not in state["models"]:
            return self._send(404, {"object": "error", "message": f"The model `{body['model']}` does not exist.",
                                    "type": "NotFoundError", "param": None, "code": 404})
        if state["max_images"] is not None and images > state["max_images"]:
            message = f"At most {state['max_images']} image(s) may be provided in one request."
            return self._send(400, {"object": "error", "message": message, "type": "BadRequestError", "param": None,
                                    "code": 400})
        if "max_completion_tokens" in body and state["reject_max_completion_tokens"]:
            message = "Unrecognized request argument supplied: max_completion_tokens"
            return self._send(400, {"error": {"message": message}})
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

    def _refused_key(self) -> bool:
        key = self.server.state["api_key"]
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return False
        self._send(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                   "code": "invalid_api_key"}})
        return True

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
    parser.add_argument("--reject-max-completion-tokens", action="store_true")
    parser.add_argument("--max-images", type=int)
    parser.add_argument("--api-key")
    parser.add_argument("--model", action="append", default=[], help="serve only this name (repeatable)")
    parser.add_argument("--no-model-list", action="store_true")
    parser.add_argument("--root", default="/models/checkpoint-a", help="the checkpoint /v1/models names")
    parser.add_argument("--log")
    parser.add_argument("--max-seconds", type=float, default=300, help="stop by itself after this long")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.state = {"lock": threading.Lock(), "count": 0, "fail_first": args.fail_first,
                    "reject_logprobs": args.reject_logprobs, "log": args.log,
                    "unreadable": args.unreadable, "reject_prefill": args.reject_prefill,
                    "reject_max_completion_tokens": args.reject_max_completion_tokens, "max_images": args.max_images,
                    "api_key": args.api_key, "models": args.model, "root": args.root,
                    "no_model_list": args.no_model_list}
    print(server.server_address[1], flush=True)
    threading.Timer(args.max_seconds, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
