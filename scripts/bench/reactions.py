#!/usr/bin/env python3
"""How fast hookwise reacts, for scripts/bench-reactions.

Starts `hookwise serve` (HOOKWISE_BIN) on DATABASE_URL against a stand-in
GitHub and agent runtime (one threaded HTTP server here) that answers every
call after a fixed latency, sends issue-comment triggers at a steady rate,
and prints p50/p99 of hookwise's own share of the time from a delivery's
`200` to (1) its first GitHub call, (2) the 👀 reaction, (3) the "I'm on it"
comment. Own share: the elapsed time minus the time at least one of the
trigger's calls was outstanding at the stand-in (calls made at once count
once). Each trigger has a repository and an installation of its own, so
every call is attributed to one trigger and no token is shared.

With --hang-trigger K, trigger K's 👀 route answers only after --hang-seconds;
trigger K is left out of the figures (the others must not slow down).
"""

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "bench-reactions-secret"
INSTALLATION_BASE = 500000
COMMENT_BASE = 7000000
KEY = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "test-github-app-key.pem")


class Calls:
    """(arrival, end, kind) of every stand-in call, per trigger."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_trigger = {}
        self.unknown = 0

    def add(self, trigger, arrival, end, kind):
        with self.lock:
            self.by_trigger.setdefault(trigger, []).append((arrival, end, kind))

    def of(self, trigger):
        with self.lock:
            return list(self.by_trigger.get(trigger, []))


ROUTES = [
    ("POST", re.compile(r"^/app/installations/(\d+)/access_tokens$"), "token"),
    ("GET", re.compile(r"^/app/installations/(\d+)$"), "installation"),
    ("GET", re.compile(r"^/repos/bench/r(\d+)/collaborators/[^/]+/permission$"), "permission"),
    ("POST", re.compile(r"^/repos/bench/r(\d+)/issues/comments/\d+/reactions$"), "reaction"),
    ("GET", re.compile(r"^/repos/bench/r(\d+)/issues/1$"), "issue"),
    ("GET", re.compile(r"^/repos/bench/r(\d+)/issues/1/comments$"), "comments"),
    ("POST", re.compile(r"^/repos/bench/r(\d+)/issues/1/comments$"), "comment"),
    ("POST", re.compile(r"^/api/conversations$"), "conversation"),
]


def make_handler(calls, latency, hang_trigger, hang_seconds):
    class StandIn(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle and the
        # client's delayed ACK would add 40 ms to calls.
        disable_nagle_algorithm = True

        def log_message(self, *_):
            pass

        def answer(self, method):
            arrival = time.monotonic()
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            trigger, kind = None, None
            for route_method, pattern, route_kind in ROUTES:
                match = pattern.match(path)
                if method == route_method and match:
                    kind = route_kind
                    if kind == "conversation":
                        repository = json.loads(body or b"{}").get("repository", "")
                        trigger = int(repository.rsplit("r", 1)[-1]) if repository.startswith("bench/r") else None
                    else:
                        trigger = int(match.group(1))
                        if kind in ("token", "installation"):
                            trigger -= INSTALLATION_BASE
                    break
            delay = latency
            if kind == "reaction" and trigger == hang_trigger:
                delay = hang_seconds
            time.sleep(delay)
            status, answer = 200, {}
            if kind == "token":
                status, answer = 201, {"token": "ghs_bench", "expires_at": "2099-01-01T00:00:00Z"}
            elif kind == "installation":
                answer = {"id": trigger + INSTALLATION_BASE, "suspended_at": None}
            elif kind == "permission":
                answer = {"permission": "write"}
            elif kind == "reaction":
                status, answer = 201, {"id": 1, "content": "eyes"}
            elif kind == "issue":
                answer = {"title": "A benchmark issue", "body": "Nothing to see."}
            elif kind == "comments":
                answer = []
            elif kind == "comment":
                status, answer = 201, {"id": 500, "html_url": "https://github.example/c/500"}
            elif kind == "conversation":
                answer = {"status": "ok", "conversation_id": f"conv-{trigger}"}
            else:
                status, answer = 404, {"message": "not a stand-in route"}
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # hookwise gave up on a hung call
            end = time.monotonic()
            if trigger is None:
                with calls.lock:
                    calls.unknown += 1
            else:
                calls.add(trigger, arrival, end, kind)

        def do_GET(self):
            self.answer("GET")

        def do_POST(self):
            self.answer("POST")

    return StandIn


def payload(i):
    return json.dumps(
        {
            "action": "created",
            "repository": {"id": 900000 + i, "full_name": f"bench/r{i}", "name": f"r{i}"},
            "sender": {"id": 4242, "login": "bench-dev", "type": "User"},
            "installation": {"id": INSTALLATION_BASE + i},
            "issue": {"number": 1, "title": "A benchmark issue", "updated_at": "2026-01-01T00:00:00Z"},
            "comment": {"id": COMMENT_BASE + i, "body": "@openhands please have a look"},
        }
    ).encode()


def deliver(host, port, i, answered, failures):
    body = payload(i)
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-github-event": "issue_comment",
        "x-github-delivery": str(uuid.uuid4()),
        "x-github-hook-id": "1",
        "x-hub-signature-256": signature,
    }
    try:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request("POST", "/integration/github/events", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status == 200:
            answered[i] = time.monotonic()
        else:
            failures.append(response.status)
        connection.close()
    except OSError as e:
        failures.append(str(e))


def outstanding(calls, since, until):
    """How long at least one of `calls` was outstanding within [since, until]."""
    spans = sorted((max(a, since), min(e, until)) for a, e, _ in calls if a < until)
    total, reach = 0.0, since
    for start, end in spans:
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def percentile(values, p):
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--label", default="")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--hang-trigger", type=int, default=-1)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--drain-seconds", type=float, default=60.0)
    args = parser.parse_args()

    calls = Calls()
    handler = make_handler(calls, args.latency_ms / 1000, args.hang_trigger, args.hang_seconds)
    stand_in = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    stand_in.daemon_threads = True
    stand_in.request_queue_size = 1024
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    stand_in_url = f"http://127.0.0.1:{stand_in.server_address[1]}"

    binary = os.environ.get("HOOKWISE_BIN", "target/release/hookwise")
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": args.database_url,
            "EVENTSTORE_URL": "",
            "HOOKWISE_BIND": "127.0.0.1:0",
            "GITHUB_APP_WEBHOOK_SECRET": SECRET,
            "GITHUB_APP_ID": "12345",
            "GITHUB_APP_PRIVATE_KEY_PATH": os.path.abspath(KEY),
            "GITHUB_API_URL": stand_in_url,
            "AGENT_RUNTIME": "openhands-v0",
            "AGENT_API_URL": stand_in_url,
            "AGENT_API_KEY": "bench-agent-key",
            "AGENT_CALLBACK_SECRET": "bench-callback",
            "AGENT_CONVERSATION_URL": "https://agent.example/c/{conversation_id}",
            # Nothing to follow within the run: the figures stop at "I'm on it".
            "AGENT_POLL_INTERVAL": "1h",
            "RUST_LOG": env.get("RUST_LOG", "error"),
        }
    )
    server = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    try:
        line = server.stdout.readline()
        match = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if not match:
            sys.exit(f"bench-reactions: the server did not start: {line!r}")
        host, port = match.group(1), int(match.group(2))

        count = int(args.rate * args.seconds)
        answered, failures, senders = {}, [], []
        started = time.monotonic()
        for i in range(count):
            wait = started + i / args.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sender = threading.Thread(target=deliver, args=(host, port, i, answered, failures), daemon=True)
            sender.start()
            senders.append(sender)
        for sender in senders:
            sender.join()

        measured = [i for i in range(count) if i != args.hang_trigger]

        def acknowledged(i):
            return any(kind == "comment" for _, _, kind in calls.of(i))

        deadline = time.monotonic() + args.drain_seconds
        while time.monotonic() < deadline and not all(acknowledged(i) for i in measured if i in answered):
            time.sleep(0.2)

        figures = {"first GitHub call": [], "👀": [], "I'm on it": []}
        for i in measured:
            if i not in answered:
                continue
            t0, own = answered[i], calls.of(i)
            own.sort()
            milestones = {
                "first GitHub call": next((a for a, _, k in own if k != "conversation"), None),
                "👀": next((a for a, _, k in own if k == "reaction"), None),
                "I'm on it": next((a for a, _, k in own if k == "comment"), None),
            }
            for name, at in milestones.items():
                if at is not None:
                    figures[name].append((at - t0 - outstanding(own, t0, at)) * 1000)

        hang = f", trigger {args.hang_trigger}'s 👀 hangs {args.hang_seconds:g} s" if args.hang_trigger >= 0 else ""
        print(
            f"{args.label}: {count} triggers at {args.rate:g}/s, stand-in latency {args.latency_ms:g} ms{hang}; "
            f"hookwise's own share, ms:"
        )
        for name, values in figures.items():
            if values:
                print(
                    f"  delivery → {name:<17} p50 {percentile(values, 50):7.1f}   p99 {percentile(values, 99):7.1f}"
                    f"   ({len(values)}/{len(measured)} reached)"
                )
            else:
                print(f"  delivery → {name:<17} none reached")
        if failures:
            print(f"  {len(failures)} deliveries not answered 200: {failures[:3]}")
        if calls.unknown:
            print(f"  {calls.unknown} calls to routes the stand-in does not know")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        stand_in.shutdown()


if __name__ == "__main__":
    main()
