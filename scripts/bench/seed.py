#!/usr/bin/env python3
"""Seed N secrets through a REST API with a small concurrent client (stdlib only).

Used by scripts/bench_rest.sh.  Two targets:

  --api mlflow-secrets   POST /api/2.0/mlflow/secrets/create   {"secret_name", "value"}
                         then walks GET .../list?max_results=100 to collect every
                         page token (for the `list` load) and every secret id
  --api mlflow           POST /api/3.0/mlflow/gateway/secrets/create
                         {"secret_name", "secret_value": {"api_key": ...}, "provider"}
                         (MLflow's own server; the ids come from the create responses)

Writes one id per line to --ids-out and, for mlflow-secrets, one page token per
line to --pages-out as a query suffix (`&page_token=...`; an empty line is the
first page).  Values are
random and thrown away; the products encrypt them.
"""
import argparse
import concurrent.futures as cf
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

_local = threading.local()


def conn(host, port):
    c = getattr(_local, "conn", None)
    if c is None:
        c = http.client.HTTPConnection(host, port, timeout=60)
        _local.conn = c
    return c


def call(host, port, method, path, token=None, body=None):
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    for attempt in range(3):
        c = conn(host, port)
        try:
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            raw = r.read()
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {r.status}: {raw[:300]!r}")
            return json.loads(raw) if raw else {}
        except (http.client.HTTPException, ConnectionError, OSError):
            c.close()
            _local.conn = None
            if attempt == 2:
                raise
            time.sleep(0.2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--api", choices=["mlflow-secrets", "mlflow"], required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", default=os.environ.get("BENCH_WRITER_TOKEN"))
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--ids-out", required=True)
    p.add_argument("--pages-out")
    a = p.parse_args()

    if a.api == "mlflow-secrets":
        path = "/api/2.0/mlflow/secrets/create"

        def body(i):
            return {"secret_name": f"bench-{i:05d}",
                    "value": "sk-" + os.urandom(24).hex()}

        def sid(resp):
            return resp["secret"]["secret_id"]
    else:
        path = "/api/3.0/mlflow/gateway/secrets/create"

        def body(i):
            return {"secret_name": f"bench-{i:05d}",
                    "secret_value": {"api_key": "sk-" + os.urandom(24).hex()},
                    "provider": "openai"}

        def sid(resp):
            return resp["secret"]["secret_id"]

    t0 = time.monotonic()
    ids = []
    with cf.ThreadPoolExecutor(a.concurrency) as ex:
        futs = [ex.submit(call, a.host, a.port, "POST", path, a.token, body(i))
                for i in range(a.count)]
        for f in cf.as_completed(futs):
            ids.append(sid(f.result()))
    dt = time.monotonic() - t0
    print(f"seeded {len(ids)} secrets in {dt:.1f} s ({len(ids) / dt:.0f}/s, "
          f"{a.concurrency} client threads)", file=sys.stderr)

    if a.api == "mlflow-secrets":
        # Walk every page: checks the count and collects the page tokens.
        pages, listed, token = [""], [], None  # query suffixes, "" = first page
        while True:
            q = {"max_results": "100"}
            if token:
                q["page_token"] = token
            r = call(a.host, a.port, "GET",
                     "/api/2.0/mlflow/secrets/list?" + urllib.parse.urlencode(q), a.token)
            listed += [s["secret_id"] for s in r.get("secrets", [])]
            token = r.get("next_page_token")
            if not token:
                break
            pages.append("&page_token=" + urllib.parse.quote(token, safe=""))
        if len(listed) != a.count or set(listed) != set(ids):
            sys.exit(f"list returned {len(listed)} secrets, expected the {a.count} created")
        with open(a.pages_out, "w") as f:
            f.write("\n".join(pages) + "\n")
        print(f"listed {len(listed)} secrets in {len(pages)} pages of 100", file=sys.stderr)

    with open(a.ids_out, "w") as f:
        f.write("\n".join(ids) + "\n")


if __name__ == "__main__":
    main()
