"""The oauth2 token store shared by a node's workers: what one process writes, another reads at
once; a code and a refreshed token are taken by exactly one of several takers."""
from __future__ import annotations

import subprocess
import sys
import time

from meshway.plugins.bundled._oauth2_store import TokenStore


def token(access: str, refresh: str | None = None) -> dict:
    return {"id": "t-" + access, "access_token": access, "credential": {"id": "cred"}, "service": {"id": "svc"},
            "authenticated_userid": "u", "scope": "read", "expires_in": 60, "created_at": int(time.time()),
            "refresh_token": refresh}


def test_a_token_written_by_one_worker_is_read_by_another_process(tmp_path):
    path = str(tmp_path / "oauth2.sqlite")
    TokenStore(path).add_token(token("abc", "r1"), None)
    code = ("from meshway.plugins.bundled._oauth2_store import TokenStore; import sys; "
            f"t = TokenStore({path!r}).token('abc'); sys.stdout.write(t['scope'] + ' ' + t['service']['id'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "read svc"


def test_codes_and_tokens_are_taken_once(tmp_path):
    path = str(tmp_path / "oauth2.sqlite")
    first, second = TokenStore(path), TokenStore(path)
    first.add_code({"code": "c1", "credential": {"id": "cred"}, "created_at": int(time.time())}, 300)
    assert second.peek_code("c1")["credential"] == {"id": "cred"}
    assert second.take_code("c1") is not None and first.take_code("c1") is None
    first.add_token(token("t1", "r1"), None)
    assert second.by_refresh_token("r1")["access_token"] == "t1"
    assert second.take_token("t1") and not first.take_token("t1")
    assert first.revoke("cfg", None) and not second.revoke("cfg", None) and first.revoked("cfg")


def test_expired_codes_and_refresh_tokens_are_not_returned(tmp_path):
    store = TokenStore(str(tmp_path / "oauth2.sqlite"))
    store.add_code({"code": "old", "credential": {"id": "cred"}, "created_at": int(time.time()) - 400}, 300)
    assert store.peek_code("old") is None and store.take_code("old") is None
    store.add_token(token("t2", "r2"), int(time.time()) - 1)
    assert store.by_refresh_token("r2") is None
    store.purge(int(time.time()))
    assert store.token("t2") is None
