"""The S3 server of the tests: moto (moto[s3]==5.2.5 from the repo's .venv) on a free loopback
port, printed on stdout. It runs until its stdin closes (the test process holds the pipe).

S3 evaluates a conditional write (If-None-Match: *, If-Match) atomically with the write; moto
checks, then writes, with no lock in between, so two racing conditional PUTs can both win there
(seen in the conformance suite's 8-writer race). PutObject and DeleteObject are serialised here
so that the server keeps the S3 semantics the tests check.
"""
import sys
import threading

from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer

_lock = threading.Lock()


def _serialised(f):
    def g(self, *args, **kwargs):
        with _lock:
            return f(self, *args, **kwargs)

    return g


S3Response.put_object = _serialised(S3Response.put_object)
S3Response.delete_object = _serialised(S3Response.delete_object)

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
