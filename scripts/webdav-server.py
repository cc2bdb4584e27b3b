"""The WebDAV server of the tests: WsgiDAV 4.4.0 on cheroot 11.1.2 (from the repo's .venv)
sharing a scratch directory, with one user, on the given loopback port, until it is stopped
(the tests run it through scripts/serve-until-eof.sh).

Usage: webdav-server.py ROOT_DIR USER PASSWORD PORT

- Dead properties (PROPPATCH) are kept in memory, locks (LOCK/UNLOCK) too: both are enabled.
- WsgiDAV on cheroot answers some requests (a 404, a 409) without reading a chunked request
  body, which corrupts the next request on that keep-alive connection (the official client
  then gets 400 on its next PROPFIND). The app is wrapped to read chunked bodies up front.
"""
import io
import sys

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

root, user, password, port = sys.argv[1:5]

app = WsgiDAVApp(
    {
        "provider_mapping": {"/": root},
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "property_manager": True,
        "lock_storage": True,
        "verbose": 0,
        "logging": {"enable": False},
    }
)


def read_chunked_bodies(environ, start_response):
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        body = environ["wsgi.input"].read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        del environ["HTTP_TRANSFER_ENCODING"]
    return app(environ, start_response)


server = wsgi.Server(("127.0.0.1", int(port)), read_chunked_bodies, numthreads=16)
try:
    server.start()
except KeyboardInterrupt:
    server.stop()
