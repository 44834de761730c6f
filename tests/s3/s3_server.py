"""An S3 server for the tests: moto's, in this process, on a loopback port.

    python3 tests/s3/s3_server.py PORT

Prints `ready` once it answers, and stops when its standard input closes
(the test process that started it ended), so that no server outlives the
tests. Set INITIAL_NO_AUTH_ACTION_COUNT=N in its environment to check
credentials after the first N requests.
"""
import sys

from moto.server import ThreadedMotoServer


def main() -> int:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
