"""100 calls per 60 seconds per token (here fewer), counted across processes: two processes share one
budget through Flask-Limiter's storage (paydesk's database), and the refused get 429 with Retry-After."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT, TEST_ENCRYPTION_KEY

from tests.api.conftest import bearer

CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from admin import create_app
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key", "ENCRYPTION_KEY": sys.argv[2],
                      "DATABASE_URL": sys.argv[3], "API_RATE_LIMIT": "6 per 60 seconds"})
    client = app.test_client()
    out = []
    for _ in range(int(sys.argv[5])):
        resp = client.get("/api/v1/jobs", headers={"Authorization": "Bearer " + sys.argv[4]})
        out.append([resp.status_code, resp.headers.get("Retry-After"), (resp.get_json() or {}).get("error")])
    print(json.dumps(out))
""")


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_the_limit_is_shared_by_two_processes(app, make_token, tmp_path):
    secret = make_token("read")
    url = app.config["DATABASE_URL"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(ROOT), TEST_ENCRYPTION_KEY, url, secret, "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err
        results += json.loads(out.strip().splitlines()[-1])
    statuses = sorted(status for status, _, _ in results)
    assert statuses == [200] * 6 + [429] * 2
    for status, retry_after, error in results:
        if status == 429:
            assert 1 <= int(retry_after) <= 60
            assert error["code"] == "rate_limited"


def test_each_token_has_its_own_budget(app, client, make_token):
    app.config["API_RATE_LIMIT"] = "2 per 60 seconds"
    one, two = bearer(make_token("read")), bearer(make_token("read"))
    assert [client.get("/api/v1/jobs", headers=one).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/api/v1/jobs", headers=two).status_code == 200
    refused = client.get("/api/v1/jobs", headers=one)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
