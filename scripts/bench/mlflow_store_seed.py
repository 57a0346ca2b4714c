#!/usr/bin/env python3
"""Top up MLflow's gateway secrets to N through MLflow's own store code.

Used by scripts/bench_rest.sh for the MLflow reference.  MLflow's REST create
(`POST /api/3.0/mlflow/gateway/secrets/create`) derives the KEK with
600,000-iteration PBKDF2 on every call (a new KEKManager per create), about
0.1 s of CPU each: 4-8 creates/s on a busy 2-core machine, so 10,000 creates
over REST take 20-40 minutes.
The driver creates the first secrets over REST and this script creates the
rest by calling the same store method the REST handler calls
(SqlAlchemyStore.create_gateway_secret) with the KEK derived once: the rows
are what MLflow itself writes (its envelope encryption, its ids, its masked
values); only the repeated key derivation is skipped.

Creates also share a transaction, --batch at a time (default 500): the
store's own session maker commits each create on its own, and on SQLite
every commit is an fsync (16 ms each here, 10,000 took 3-12 minutes). Each
create still runs MLflow's create_gateway_secret in full (id, encryption,
mask, INSERT and flush); only the commit is shared, by handing it the
session of a batch that the real session maker opened and will commit.

Needs MLFLOW_CRYPTO_KEK_PASSPHRASE (the server's) in the environment.
Appends the new ids to --ids-out.
"""
import argparse
import contextlib
import os
import sys
import time

from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
import mlflow.store.tracking.gateway.sqlalchemy_mixin as gateway_mixin
from mlflow.utils.crypto import KEKManager


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--db-uri", required=True)
    p.add_argument("--artifact-root", required=True)
    p.add_argument("--start", type=int, required=True, help="first index to create")
    p.add_argument("--count", type=int, required=True, help="total wanted")
    p.add_argument("--ids-out", required=True)
    p.add_argument("--batch", type=int, default=500, help="creates per transaction")
    a = p.parse_args()

    kek = KEKManager()  # derived once from MLFLOW_CRYPTO_KEK_PASSPHRASE
    gateway_mixin.KEKManager = lambda *args, **kwargs: kek
    store = SqlAlchemyStore(a.db_uri, a.artifact_root)

    real_sessions = store.ManagedSessionMaker
    t0 = time.monotonic()
    ids = []
    for lo in range(a.start, a.count, a.batch):
        with real_sessions(read_only=False) as batch_session:

            @contextlib.contextmanager
            def shared_session(read_only=True):
                yield batch_session

            store.ManagedSessionMaker = shared_session
            try:
                for i in range(lo, min(lo + a.batch, a.count)):
                    s = store.create_gateway_secret(
                        secret_name=f"bench-{i:05d}",
                        secret_value={"api_key": "sk-" + os.urandom(24).hex()},
                        provider="openai",
                    )
                    ids.append(s.secret_id)
            finally:
                store.ManagedSessionMaker = real_sessions
    dt = time.monotonic() - t0
    with open(a.ids_out, "a") as f:
        f.write("".join(i + "\n" for i in ids))
    print(f"created {len(ids)} more secrets through SqlAlchemyStore.create_gateway_secret "
          f"in {dt:.1f} s ({a.batch} per transaction)", file=sys.stderr)


if __name__ == "__main__":
    main()
