"""`make console`: the admin console on the local stack of `make demo`.

Starts the stand-ins for CM and SF, the emulator and the real functions on the demo's sample
scenario, runs the first scheduled sync (so Runs and the Overview have something to show),
then serves the console (the admin-console function, configured by the template, reached as its
Function URL would be) on 127.0.0.1:CONSOLE_PORT (8080 by default) until Ctrl-C. Sign in with the sandbox's Salesforce: "Allow as Ada Admin" holds the console's
permission; "Allow as Victor Viewer" does not (the 403 page).
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
from stack import Stack, demo_scenario  # noqa: E402


def main():
    port = int(os.environ.get("CONSOLE_PORT", "8080"))
    path, _, settings = demo_scenario()
    print("Starting the local stack (the first start compiles the functions)...", flush=True)
    stack = Stack(path, settings, console_port=port)
    try:
        print("Running the first scheduled sync...", flush=True)
        stack.schedule()
        stack.settle()
        print(f"""
The console: {stack.console_url}/
Sign in with Salesforce (the sandbox's): choose "Allow as Ada Admin" (holds the CM Sync Console
Admin permission set); "Allow as Victor Viewer" shows the page for users without it.
Syncs you start (a retry) run in the local functions. Ctrl-C stops everything.""", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stack.close()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
