"""The local stack: the sandbox (CM and SF), the moto emulator (DynamoDB, EventBridge, SQS,
Secrets Manager: started around the run by tests/support/with-moto.sh), the real functions
under `cargo lambda watch`, and a relay that delivers what the EventBridge rules route to each
function's queue, as the deployed rules and Lambda triggers would.

Used by `make demo` (demo.py) and the end-to-end tests (test_e2e.py).
"""

import base64
import datetime
import hashlib
import hmac
from http.client import HTTPConnection
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(TARGET, "debug")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
# What `cargo lambda watch` printed, one file per stack: quoted when the stack fails.
LOG_DIR = os.path.join(TARGET, "e2e-logs")
KEY = os.path.join(ROOT, "tests", "sandbox", "fixtures", "jwt-test-key.pem")
SOURCE = "cm-sf-sync"
# The sandbox org's id, as its identity URLs give it (tests/sandbox/src/sf/http/web_sign_in.rs).
SANDBOX_ORG_ID = "00DSB0000000001AAA"



def load_template():
    from cfnlint.decode import decode

    template, problems = decode(os.path.join(ROOT, "infra", "template.yaml"))
    assert not problems, problems
    return template


def schedule_input(name="Schedule"):
    """The payload EventBridge Scheduler hands scheduled-sync, as the template sets it
    (`HotSchedule`: the hot schedule's)."""
    function = load_template()["Resources"]["ScheduledSyncFunction"]
    return function["Properties"]["Events"][name]["Properties"]["Input"]


def swap_host(url, local):
    """`url` with its scheme and host replaced by the local stand-in's, its path kept."""
    parsed, here = urllib.parse.urlsplit(url), urllib.parse.urlsplit(local)
    return urllib.parse.urlunsplit((here.scheme, here.netloc, parsed.path, parsed.query, parsed.fragment))


def template_environment(local, template=None):
    """The environment every function gets from the template, merged: each variable as the
    function's `Environment` block sets it, `!Ref` of a parameter read from its default, of a
    resource or a deployment-named parameter from `local` (the stack's own table, bus and
    secrets), and URLs with only their host swapped for the local stand-in's (`local["hosts"]`).
    A variable two functions set differently, or a reference the stack cannot resolve, fails."""
    template = template or load_template()
    parameters = template["Parameters"]
    merged = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for variable, value in resource["Properties"]["Environment"]["Variables"].items():
            if isinstance(value, dict) and "Ref" in value:
                ref = value["Ref"]
                if ref in local:
                    value = local[ref]
                elif ref in parameters and "Default" in parameters[ref]:
                    value = str(parameters[ref]["Default"])
                    if value.startswith("https://"):
                        value = swap_host(value, local["hosts"][ref])
                else:
                    raise AssertionError(f"{name}: {variable} refers to {ref}, which the local stack cannot resolve")
            assert merged.get(variable, value) == value, f"{variable} differs between functions"
            merged[variable] = value
    return merged


# Lambda's limits for an asynchronous invocation (AWS Lambda Developer Guide, "Lambda quotas":
# 256 KB invocation payload for asynchronous invocation, 6 MB response) and its retry rule
# ("How Lambda handles errors and retries with asynchronous invocation": any function error is
# retried, MaximumRetryAttempts times, 2 by default, then the record goes to the on-failure
# destination).
ASYNC_PAYLOAD_LIMIT = 256 * 1024
RESPONSE_LIMIT = 6 * 1024 * 1024


def template_invoke_configs():
    """Each function crate's (MaximumRetryAttempts, on-failure destination logical id), as its
    `EventInvokeConfig` in the template sets them (Lambda's defaults: 2 retries, none)."""
    resources = load_template()["Resources"]
    configs = {}
    for resource in resources.values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        crate = resource["Properties"]["CodeUri"].rstrip("/").rsplit("/", 1)[-1]
        config = resource["Properties"].get("EventInvokeConfig", {})
        destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        configs[crate] = (int(config.get("MaximumRetryAttempts", 2)),
                          destination["Fn::GetAtt"][0] if destination else None)
    return configs


def template_routes():
    """Each function's EventBridge rule pattern, read from the deployment template (the same
    rules `make deploy` creates), keyed by the function crate the rule targets."""
    resources = load_template()["Resources"]
    routes = {}
    for resource in resources.values():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        (target,) = resource["Properties"]["Targets"]
        function = resources[target["Arn"]["Fn::GetAtt"][0]]
        crate = function["Properties"]["CodeUri"].rstrip("/").rsplit("/", 1)[-1]
        routes[crate] = json.loads(json.dumps(resource["Properties"]["EventPattern"]))
    return routes


def recent_cm_date(minutes_ago=60):
    """A CM date (`YYYY-MM-DD HH:MM:SS`) `minutes_ago` before the real clock, in UTC: what a
    webhook event posted now carries. The intake refuses dates outside a window around its
    clock (36 hours ahead, 30 days back), so a fixed date would stop working as time passes;
    read in any account zone, UTC text stays well inside that window."""
    at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes_ago)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def person_key(email, keys_secret):
    """The key run records keep for a person instead of the address, as SECURITY.md documents
    it (`mapping::email::person_key`): HMAC-SHA256 under the pepper derived from the
    deployment's keys secret, 128 bits in hex after `p-`."""
    master = hashlib.sha256(keys_secret.encode()).digest()
    pepper = hmac.new(master, b"cm-sf-sync pepper\x00", hashlib.sha256).digest()
    digest = hmac.new(pepper, b"cm-sf-sync person\x00" + email.strip().lower().encode() + b"\x00",
                      hashlib.sha256).hexdigest()
    return "p-" + digest[:32]


# Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


def _function_url_relay(target, function):
    """A request handler that passes every request to `cargo lambda watch`'s function URL of
    `function` and its answer back as it came (several Set-Cookie headers kept; redirects not
    followed)."""

    class Relay(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection = HTTPConnection(target, timeout=300)
            try:
                connection.request(self.command, f"/lambda-url/{function}{self.path}", body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                connection.close()

        do_GET = do_POST = _relay

        def log_message(self, *args):
            pass

    return Relay


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
        return response.status, (json.loads(text) if text.strip() else None)


def generate_scenario(path, recipients=3000, activities=2400, extra_campaigns=3, draft_after_enable=True):
    subprocess.run([os.path.join(BIN, "sandbox"), "generate", "--seed", "21", "--recipients", str(recipients),
                    "--activities", str(activities), "--extra-campaigns", str(extra_campaigns), "--out", path], check=True)
    with open(path) as f:
        scenario = json.load(f)
    if draft_after_enable:
        # A draft created after auto-creation is switched on: it gets an SF Campaign.
        client = scenario["cm"]["clients"][0]["id"]
        scenario["cm"]["campaigns"].append({
            "id": "d" * 32, "client_id": client, "name": "December offers (draft)", "subject": "Offers",
            "state": "draft", "date_created": "2030-01-01 09:00:00", "list_ids": [scenario["cm"]["lists"][0]["id"]],
        })
    with open(path, "w") as f:
        json.dump(scenario, f)
    return scenario


def demo_scenario():
    """The sample account of `make demo` and `make console` (several campaigns, 3,000
    recipients, every activity kind, one campaign linked, one draft to auto-create) and its
    settings: (scenario path, scenario, settings)."""
    path = os.path.join(tempfile.mkdtemp(), "scenario.json")
    scenario = generate_scenario(path)
    settings = {
        "cm_clients": [c["id"] for c in scenario["cm"]["clients"]],
        "cm_lists": [l["id"] for l in scenario["cm"]["lists"]],
        "cm_timezone": scenario["cm"]["timezone"],
        "auto_create_campaigns": True,
    }
    return path, scenario, settings


class Stack:
    def __init__(self, scenario_path, settings, quiet=os.environ.get("STACK_QUIET", "1") == "1", functions=True,
                 log_level=None, oauth=False, realism=False, console_port=None):
        """`functions=False`: only the sandbox, the emulator and the table (for admin checks
        that need no function running). `log_level`: one the template's `LogLevel` allows, in
        place of its default. `oauth`: the CM secret holds the scenario's OAuth tokens and the
        SF secret the refresh-token flow, instead of the API key and the JWT flow. `realism`: the
        sandbox's realism mode (tests/sandbox/README.md) and OAuth on both sides, whose tokens
        rotate; CM shows records up to `late_visibility_minutes` after their date, so
        `set_cm_now` puts CM's clock that much later than the time asked for. `console_port`:
        the admin-console function served on that loopback port as its Function URL would
        serve it, its sign-in app's callback registered in the sandbox org (`console_url`)."""
        assert os.environ.get("AWS_ENDPOINT_URL"), "run under tests/support/with-moto.sh (make test / make demo do)"
        self.quiet = quiet
        self.processes = []
        self.suffix = uuid.uuid4().hex[:8]
        self.table = f"cm-sf-sync-{self.suffix}"
        self.bus = f"cm-sf-sync-{self.suffix}"
        with open(scenario_path) as f:
            self.scenario = json.load(f)
        self.realism = realism
        self.console_url = f"http://127.0.0.1:{console_port}" if console_port else None
        if self.console_url:
            app = self.scenario["sf"].setdefault("console_app", {})
            app.setdefault("client_id", "sandbox-console-app")
            app["callback_urls"] = [f"{self.console_url}/auth/callback"]
        if realism:
            oauth = True
            self.scenario.setdefault("faults", {})["realism"] = True
            if not self.scenario["cm"].get("oauth"):
                self.scenario["cm"]["oauth"] = {"client_id": "sandbox-oauth-client", "client_secret": "sandbox-oauth-secret",
                                                "access_token": "cm-access-start", "refresh_token": "cm-refresh-start"}
        if realism or self.console_url:
            scenario_path = os.path.join(tempfile.mkdtemp(), "scenario-local.json")
            with open(scenario_path, "w") as f:
                json.dump(self.scenario, f)

        sandbox = subprocess.Popen([os.path.join(BIN, "sandbox"), "--scenario", scenario_path], stdout=subprocess.PIPE, text=True)
        self.processes.append(sandbox)
        ready = json.loads(sandbox.stdout.readline())
        self.cm_url, self.sf_url = ready["cm_url"], ready["sf_url"]
        faults = json.loads(urllib.request.urlopen(f"{self.cm_url}/_sandbox/faults").read())
        # CM's clock runs this far after the time a test names: every record (and list change)
        # it names shows by then, in its stream and in the summary's counts.
        self.cm_clock_lag = datetime.timedelta(
            minutes=faults["cm"].get("late_visibility_minutes", 0) + faults["cm"].get("summary_lag_minutes", 0))

        self.sqs = boto3.client("sqs")
        self.events = boto3.client("events")
        self.secrets = secrets = boto3.client("secretsmanager")
        self.events.create_event_bus(Name=self.bus)
        with open(KEY) as f:
            key = f.read()
        if oauth:
            cm_oauth = self.scenario["cm"]["oauth"]
            cm_secret = {"access_token": cm_oauth["access_token"], "refresh_token": cm_oauth["refresh_token"]}
            sf_secret = {"flow": "refresh_token", "token_host": self.sf_url, "client_id": self.scenario["sf"]["client_id"],
                         "refresh_token": self.scenario["sf"]["refresh_token"]}
        else:
            cm_secret = {"api_key": self.scenario["cm"]["api_key"]}
            sf_secret = {"flow": "jwt_bearer", "token_host": self.sf_url, "client_id": self.scenario["sf"]["client_id"],
                         "username": self.scenario["sf"]["username"], "private_key_pem": key,
                         "audience": "https://login.salesforce.com"}
        # The deployment's keys, as the template generates them (a 64-character "key").
        self.keys_secret = uuid.uuid4().hex * 2
        secrets.create_secret(Name=f"keys-{self.suffix}", SecretString=json.dumps({"key": self.keys_secret}))
        secrets.create_secret(Name=f"cm-{self.suffix}", SecretString=json.dumps(cm_secret))
        secrets.create_secret(Name=f"sf-{self.suffix}", SecretString=json.dumps(sf_secret))
        self.webhook_token = uuid.uuid4().hex
        secrets.create_secret(Name=f"hook-{self.suffix}", SecretString=json.dumps({"token": self.webhook_token}))
        # The console's own secret, as infra/README.md has the deployer make it: the sandbox org's
        # console app and a cookie key.
        console_app = self.scenario["sf"].get("console_app", {}).get("client_id", "sandbox-console-app")
        secrets.create_secret(Name=f"console-{self.suffix}", SecretString=json.dumps(
            {"client_id": console_app, "cookie_keys": [base64.b64encode(os.urandom(32)).decode()]}))
        # The functions' configuration is the template's own; only names and hosts are local
        # (the console's origin is the local stand-in for its Function URL).
        self.local = {"StateTable": self.table, "EventBus": self.bus, "KeysSecret": f"keys-{self.suffix}",
                      "CmSecretName": f"cm-{self.suffix}",
                      "SfSecretName": f"sf-{self.suffix}", "WebhookSecretName": f"hook-{self.suffix}",
                      "ConsoleSecretName": f"console-{self.suffix}", "ConsoleOrgId": SANDBOX_ORG_ID,
                      "hosts": {"CmBaseUrl": self.cm_url, "ConsoleSfLoginUrl": self.sf_url}}
        if self.console_url:
            self.local["ConsolePublicOrigin"] = self.console_url
        self.env = dict(os.environ, **template_environment(self.local))
        if log_level:
            allowed = load_template()["Parameters"]["LogLevel"]["AllowedValues"]
            assert log_level in allowed, f"LogLevel {log_level} is not one the template allows ({allowed})"
            self.env["LOG_LEVEL"] = log_level
        # The sandbox speaks plain HTTP: the one flag that allows it (never set by the template).
        self.env["ALLOW_PLAIN_HTTP"] = "1"
        self.admin("init-table")
        settings_path = os.path.join(tempfile.mkdtemp(), "settings.json")
        with open(settings_path, "w") as f:
            json.dump(settings, f)
        self.admin("settings", "apply", settings_path)

        assert functions or not self.console_url, "the console is a function: it needs the functions running"

        self.queues = {}
        self.invoke_port = None
        self._stop = threading.Event()
        self._busy = 0
        if not functions:
            return
        self.invoke_configs = template_invoke_configs()
        self.destinations = {}
        for destination in {d for _, d in self.invoke_configs.values() if d}:
            self.destinations[destination] = self.sqs.create_queue(QueueName=f"{destination}-{self.suffix}")["QueueUrl"]
        # What the admin's `replay` reads: the stack output FailedInvocationsQueueUrl.
        self.env["FAILED_INVOCATIONS_QUEUE_URL"] = self.destinations["FailedInvocationsQueue"]
        for function, pattern in template_routes().items():
            url = self.sqs.create_queue(QueueName=f"{function}-{self.suffix}", Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
            arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            rule = f"{function}-{self.suffix}"
            self.events.put_rule(Name=rule, EventBusName=self.bus,
                                 EventPattern=json.dumps(pattern))
            self.events.put_targets(Rule=rule, EventBusName=self.bus, Targets=[{"Id": "queue", "Arn": arn}])
            self.queues[function] = url

        self.invoke_port = free_port()
        cargo_lambda = shutil.which("cargo-lambda", path=VENV_BIN)
        assert cargo_lambda, "cargo-lambda missing: run `make venv`"
        env = dict(self.env, PATH=VENV_BIN + os.pathsep + os.environ["PATH"])
        os.makedirs(LOG_DIR, exist_ok=True)
        self.watch_log = os.path.join(LOG_DIR, f"watch-{self.suffix}.log")
        out = open(self.watch_log, "w") if quiet else None
        watch = subprocess.Popen(["cargo", "lambda", "watch", "--ignore-changes", "--invoke-address", "127.0.0.1",
                                  "--invoke-port", str(self.invoke_port)], cwd=ROOT, env=env, stdout=out, stderr=out)
        self.processes.append(watch)
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.invoke_port), timeout=1).close()
                break
            except OSError:
                if watch.poll() is not None or time.time() > deadline:
                    self.close()
                    raise RuntimeError(self.diagnostics("`cargo lambda watch` did not start"))
                time.sleep(0.2)
        self.invocations = []
        self.errors = []
        self.relay_failures = []
        self._relay = threading.Thread(target=self._relay_loop, daemon=True)
        self._relay.start()
        if self.console_url:
            self.start_console()

    def start_console(self):
        """The admin-console function under `cargo lambda watch`, reached on `console_url` as
        browsers reach its Function URL (FunctionUrl, the root of its own host): a relay passes
        each request to the emulator's function URL (`/lambda-url/admin-console/...`) unchanged,
        its Host included. Returns once the console answers its health check."""
        target = f"127.0.0.1:{self.invoke_port}"
        listen = urllib.parse.urlsplit(self.console_url)
        server = ThreadingHTTPServer((listen.hostname, listen.port), _function_url_relay(target, "admin-console"))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._console_server = server
        deadline = time.time() + 300  # the first request may build the function
        while True:
            try:
                urllib.request.urlopen(f"{self.console_url}/health", timeout=120).read()
                return
            except OSError as error:
                if time.time() > deadline:
                    raise RuntimeError(self.diagnostics(f"the console did not start: {error}"))
                time.sleep(0.5)

    def admin(self, *args):
        return subprocess.run([os.path.join(BIN, "cm-sf-admin"), *args], env=self.env, check=True, capture_output=True, text=True).stdout

    def admin_run(self, *args):
        """Runs cm-sf-admin without checking its exit status (for refusals)."""
        return subprocess.run([os.path.join(BIN, "cm-sf-admin"), *args], env=self.env, capture_output=True, text=True)

    def invoke(self, function, event):
        """One invocation; a response over Lambda's 6 MB limit is the error Lambda gives."""
        url = f"http://127.0.0.1:{self.invoke_port}/2015-03-31/functions/{function}/invocations"
        request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST",
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            text = error.read().decode()
        except (urllib.error.URLError, TimeoutError) as error:
            raise RuntimeError(self.diagnostics(f"invoking {function} failed: {error}")) from error
        if len(text.encode()) > RESPONSE_LIMIT:
            body = {"errorType": "Function.ResponseSizeTooLarge",
                    "errorMessage": f"Response payload size ({len(text.encode())} bytes) exceeded maximum allowed payload size (6291556 bytes)."}
        else:
            body = json.loads(text) if text.strip() else None
        self.invocations.append((function, event.get("detail-type"), body))
        if isinstance(body, dict) and "errorType" in body:
            self.errors.append((function, body))
        return body

    def _relay_loop(self):
        """Delivers what the rules routed to each function as Lambda runs an asynchronous
        invocation: any function error is retried (the queue's visibility timeout stands in for
        Lambda's back-off) up to the function's MaximumRetryAttempts; then the invocation record
        goes to its on-failure destination. A payload over 256 KB is refused without running."""
        while not self._stop.is_set():
            idle = True
            for function, url in self.queues.items():
                messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                                    AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
                for message in messages:
                    idle = False
                    self._busy += 1
                    try:
                        self._deliver(function, url, message)
                    except Exception as error:  # noqa: BLE001 - kept for settle() to report
                        self.relay_failures.append(f"{function}: {error}")
                    finally:
                        self._busy -= 1
            if idle:
                time.sleep(0.2)

    def _deliver(self, function, url, message):
        event = json.loads(message["Body"])
        attempt = int(message["Attributes"]["ApproximateReceiveCount"])
        retries, destination = self.invoke_configs[function]
        if len(message["Body"].encode()) > ASYNC_PAYLOAD_LIMIT:
            body = {"errorType": "RequestEntityTooLargeException",
                    "errorMessage": f"payload of {len(message['Body'].encode())} bytes exceeds the 256 KB asynchronous limit"}
            self.errors.append((function, body))
            attempt = retries + 1  # refused outright: never retried
        else:
            body = self.invoke(function, event)
        failed = isinstance(body, dict) and "errorType" in body
        if failed and attempt <= retries:
            return  # left on the queue: delivered again after the visibility timeout
        if failed and destination:
            record = {"version": "1.0", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                      "requestContext": {"requestId": message["MessageId"], "functionArn": function,
                                         "condition": "RetriesExhausted", "approximateInvokeCount": attempt},
                      "requestPayload": event,
                      "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                      "responsePayload": body}
            self.sqs.send_message(QueueUrl=self.destinations[destination], MessageBody=json.dumps(record))
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def failed_invocations(self):
        """The records in the failed-invocations queue (the template's on-failure destination)."""
        url = self.destinations["FailedInvocationsQueue"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def settle(self, timeout=300):
        """Waits until every queue is empty and nothing is being invoked."""
        deadline = time.time() + timeout
        quiet_rounds = 0
        while time.time() < deadline:
            pending = sum(int(self.sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"][k])
                          for u in self.queues.values() for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"))
            quiet_rounds = quiet_rounds + 1 if pending == 0 and self._busy == 0 else 0
            if quiet_rounds >= 5:
                return
            if self.relay_failures:
                raise RuntimeError(self.diagnostics("the relay could not deliver: " + "; ".join(self.relay_failures)))
            time.sleep(0.3)
        raise TimeoutError(self.diagnostics("the stack did not settle"))

    def diagnostics(self, what):
        """`what`, with the end of what `cargo lambda watch` printed and the free disk space: the
        two things that tell a broken machine from a broken function."""
        tail = ""
        if getattr(self, "watch_log", None) and os.path.exists(self.watch_log):
            with open(self.watch_log, errors="replace") as f:
                tail = "".join(f.readlines()[-40:])
        free = shutil.disk_usage(ROOT).free / 2**30
        return f"{what}\n--- free disk: {free:.1f} GiB; cargo lambda watch ({getattr(self, 'watch_log', '-')}), last lines:\n{tail}"

    def schedule(self):
        """What the deployed schedule sends: the template's EventBridge Scheduler input."""
        return self.invoke("scheduled-sync", json.loads(schedule_input()))

    def hot_schedule(self):
        """What the deployed hot schedule sends: the template's input for it."""
        return self.invoke("scheduled-sync", json.loads(schedule_input("HotSchedule")))

    def dry_run(self):
        detail = {"idempotency_key": "sync:dry:all", "run_id": "dry", "cm_campaign_id": None, "dry_run": True, "requested_by": "demo"}
        return self.invoke("scheduled-sync", {"source": SOURCE, "detail-type": "campaign-sync-requested.v1", "detail": detail})

    def apply_settings(self, settings):
        path = os.path.join(tempfile.mkdtemp(), "settings.json")
        with open(path, "w") as f:
            json.dump(settings, f)
        self.admin("settings", "apply", path)

    def publish(self, detail_type, detail):
        """Puts an event on the bus, as another function or the admin tool would."""
        result = self.events.put_events(Entries=[{"Source": SOURCE, "DetailType": detail_type, "Detail": json.dumps(detail), "EventBusName": self.bus}])
        assert result["FailedEntryCount"] == 0, result

    def request_sync(self, cm_campaign_id):
        run = uuid.uuid4().hex[:8]
        self.publish("campaign-sync-requested.v1", {"idempotency_key": f"sync:{run}:{cm_campaign_id}", "run_id": run,
                                                    "cm_campaign_id": cm_campaign_id, "dry_run": False, "requested_by": "test"})
        self.settle()
        return [body for _, kind, body in self.invocations if kind == "campaign-sync-requested.v1"][-1]

    def add_activity(self, campaign_id, activity):
        http("POST", f"{self.cm_url}/_sandbox/cm/activity", {"campaign_id": campaign_id, "activity": activity})

    def set_cm_now(self, now):
        """CM's clock at `now`, or, with records shown late, late enough for those dated `now`."""
        at = datetime.datetime.strptime(now, "%Y-%m-%d %H:%M:%S") + self.cm_clock_lag
        http("POST", f"{self.cm_url}/_sandbox/cm/now", {"now": at.strftime("%Y-%m-%d %H:%M:%S")})

    def secret(self, name):
        """A secret of the stack (`cm`, `sf`), as the functions read it now."""
        return json.loads(self.secrets.get_secret_value(SecretId=f"{name}-{self.suffix}")["SecretString"])

    def set_sf_faults(self, faults):
        """Replaces the sandbox's faults (the realism mode stays as the stack started)."""
        http("PUT", f"{self.sf_url}/_sandbox/faults", dict(faults, realism=self.realism))

    def webhook_base_url(self):
        """The intake's Function URL as `cargo lambda watch` serves it: the stack output
        `WebhookUrl` of a deployment, without the token."""
        return f"http://127.0.0.1:{self.invoke_port}/lambda-url/webhook-intake/hooks/"

    def webhook_url(self):
        """The intake URL with the secret token."""
        return self.webhook_base_url() + self.webhook_token

    def register_webhook(self, list_id):
        import base64
        auth = base64.b64encode(f"{self.scenario['cm']['api_key']}:x".encode()).decode()
        request = urllib.request.Request(f"{self.cm_url}/api/v3.3/lists/{list_id}/webhooks.json", method="POST",
                                         data=json.dumps({"Events": ["Subscribe", "Deactivate", "Update"], "Url": self.webhook_url(), "PayloadFormat": "json"}).encode(),
                                         headers={"content-type": "application/json", "authorization": f"Basic {auth}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def warm_intake(self):
        """Starts webhook-intake under `cargo lambda watch` (its first request starts the process,
        and builds it if `make test` did not: longer than the 10 seconds CM's delivery waits): a
        request it refuses, with a long timeout."""
        request = urllib.request.Request(self.webhook_url(), data=b"{}", method="POST",
                                         headers={"content-type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=600).close()
        except urllib.error.HTTPError:
            pass
        except (urllib.error.URLError, TimeoutError) as error:
            raise RuntimeError(self.diagnostics(f"webhook-intake did not start: {error}")) from error

    def deliver_webhook(self, list_id, events):
        """CM posts a batch to every active webhook of the list (the sandbox's control call)."""
        return http("POST", f"{self.cm_url}/_sandbox/webhooks/deliver", {"ListID": list_id, "Events": events}, timeout=600)[1]

    def records(self, sf_object):
        return http("GET", f"{self.sf_url}/_sandbox/sf/records?object={sf_object}")[1].get(sf_object, [])

    def counters(self):
        return http("GET", f"{self.sf_url}/_sandbox/counters")[1]

    def reset_counters(self):
        http("DELETE", f"{self.sf_url}/_sandbox/counters")

    def sf_calls(self):
        calls = {"reads": 0, "writes": 0}
        for route, count in self.counters().items():
            if route.startswith("sf ") and "oauth2" not in route:
                # A Composite request of queries is a read.
                calls["reads" if route.startswith("sf GET") or route.endswith("/composite") else "writes"] += count
        return calls

    def close(self):
        self._stop.set()
        if getattr(self, "_console_server", None):
            self._console_server.shutdown()
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
