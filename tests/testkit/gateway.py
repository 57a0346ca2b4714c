#!/usr/bin/env python3
"""MLflow's own code, driven by the mlflow import/push tests and the import
benchmark (run with the pinned venv: scripts/mlflow-env.sh python).

  seed     --db-uri URI [--count N --prefix P] [--no-fsync]
                                                 create gateway secrets through
           SqlAlchemyStore.create_gateway_secret; the specs come as JSON on stdin
           ([{"name", "value": {k: v}, "provider"}]) unless --count is given
           (N random OpenAI keys); prints [{"name", "secret_id"}] as JSON.
           --no-fsync (a throwaway SQLite benchmark database): MLflow's
           connections run with PRAGMA synchronous=OFF, so each of MLflow's
           commits skips its fsync (8 ms here); the rows are the same
  decrypt  --db-uri URI --out FILE                MLflow's decrypt path
           (SqlAlchemyStore._get_decrypted_secret) writes {name: value} of every
           gateway secret as JSON to FILE, so no value reaches a test's output
  list     --db-uri URI                          [{"name", "secret_id", "provider"}]

The KEK comes from MLFLOW_CRYPTO_KEK_PASSPHRASE, as in MLflow's server. It
is derived once per process (the store would derive it on every call, as
scripts/bench/mlflow_store_seed.py explains).
"""
import argparse
import json
import os
import sys
import tempfile

import mlflow.store.tracking.gateway.sqlalchemy_mixin as gateway_mixin
import mlflow.store.tracking.sqlalchemy_store as sqlalchemy_store_mod
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.crypto import KEKManager, _decrypt_secret


def no_fsync():
    """PRAGMA synchronous=OFF on every SQLite connection SQLAlchemy opens."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _unsynced(dbapi_conn, _record):
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA synchronous=OFF")
            cur.close()


def store(db_uri):
    kek = KEKManager()
    gateway_mixin.KEKManager = lambda *a, **k: kek
    sqlalchemy_store_mod.KEKManager = lambda *a, **k: kek
    return SqlAlchemyStore(db_uri, tempfile.mkdtemp(prefix="mlflow-artifacts-"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["seed", "decrypt", "decrypt-workspaces", "list"])
    p.add_argument("--db-uri", required=True)
    p.add_argument("--out")
    p.add_argument("--count", type=int)
    p.add_argument("--prefix", default="bench")
    p.add_argument("--no-fsync", action="store_true")
    a = p.parse_args()
    if a.no_fsync:
        no_fsync()
    if a.command == "decrypt-workspaces":
        # Every row of every workspace (the store's own listing sees only
        # the current one), decrypted by MLflow's own _decrypt_secret, keyed
        # "<workspace>/<name>".
        import sqlalchemy
        engine = sqlalchemy.create_engine(a.db_uri)
        kek = KEKManager()
        with engine.connect() as c:
            rows = c.execute(sqlalchemy.text(
                "SELECT workspace, secret_id, secret_name, encrypted_value, wrapped_dek FROM secrets"
            )).fetchall()
        values = {f"{r.workspace}/{r.secret_name}": _decrypt_secret(
                      encrypted_value=r.encrypted_value, wrapped_dek=r.wrapped_dek,
                      kek_manager=kek, secret_id=r.secret_id, secret_name=r.secret_name)
                  for r in rows}
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(values, f)
        return
    s = store(a.db_uri)
    if a.command == "seed":
        if a.count is not None:
            specs = ({"name": f"{a.prefix}-{i:05d}",
                      "value": {"api_key": "sk-" + os.urandom(24).hex()},
                      "provider": "openai"} for i in range(a.count))
        else:
            specs = json.load(sys.stdin)
        out = []
        for spec in specs:
            info = s.create_gateway_secret(
                secret_name=spec["name"],
                secret_value=spec["value"],
                provider=spec.get("provider"),
            )
            out.append({"name": info.secret_name, "secret_id": info.secret_id})
        json.dump(out, sys.stdout)
    elif a.command == "decrypt":
        values = {i.secret_name: s._get_decrypted_secret(i.secret_id)
                  for i in s.list_secret_infos()}
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(values, f)
    else:
        json.dump([{"name": i.secret_name, "secret_id": i.secret_id, "provider": i.provider}
                   for i in s.list_secret_infos()], sys.stdout)


if __name__ == "__main__":
    main()
