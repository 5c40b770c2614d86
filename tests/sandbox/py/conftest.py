"""Starts the sandbox (the debug build `make test` just made) on a generated scenario.

The official clients are used unchanged. They only speak HTTPS to the real hosts
(createsend pins its own CA bundle; simple-salesforce forces https:// on every URL), so the
tests route their transport to the sandbox on loopback: createsend's connection class is
swapped for a plain HTTP one, and simple-salesforce gets a requests session whose adapter
sends each https:// request to the sandbox. Requests, paths, query strings, headers and bodies
are exactly what the libraries produce.
"""

import json
import os
import subprocess
import tempfile
import urllib.parse

import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SANDBOX = os.path.join(TARGET, "debug", "sandbox")
KEY = os.path.join(ROOT, "tests", "sandbox", "fixtures", "jwt-test-key.pem")


@pytest.fixture(scope="session")
def sandbox():
    assert os.path.exists(SANDBOX), f"{SANDBOX} is missing: build it with `cargo build -p sandbox`"
    with tempfile.TemporaryDirectory() as tmp:
        scenario = os.path.join(tmp, "scenario.json")
        subprocess.run(
            [SANDBOX, "generate", "--seed", "3", "--recipients", "5000", "--activities", "4000",
             "--extra-campaigns", "24", "--out", scenario],
            check=True,
        )
        process = subprocess.Popen([SANDBOX, "--scenario", scenario], stdout=subprocess.PIPE, text=True)
        try:
            ready = json.loads(process.stdout.readline())
            with open(scenario) as f:
                ready["scenario"] = json.load(f)
            yield ready
        finally:
            process.terminate()
            process.wait(timeout=10)


class ToSandbox(requests.adapters.HTTPAdapter):
    """Sends every request to the sandbox, keeping path and query."""

    def __init__(self, base):
        super().__init__()
        self.base = base

    def send(self, request, **kwargs):
        parts = urllib.parse.urlsplit(request.url)
        request.url = self.base + parts.path + (("?" + parts.query) if parts.query else "")
        return super().send(request, **kwargs)


@pytest.fixture
def sf_session(sandbox):
    session = requests.Session()
    session.mount("https://", ToSandbox(sandbox["sf_url"]))
    return session


@pytest.fixture
def createsend_api(sandbox, monkeypatch):
    import http.client

    import createsend.createsend as cs

    monkeypatch.setattr(cs, "VerifiedHTTPSConnection", http.client.HTTPConnection)
    monkeypatch.setattr(cs.CreateSend, "base_uri", sandbox["cm_url"] + "/api/v3.3")
    return cs
